/**
 * Cross-origin access to the subscribe route, for browsers on other origins:
 * off unless configured.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"

/**
 * `origins` lists the allowed `Origin`s (exact match) or is `"*"`;
 * `credentials` lets cookies through (`EventSource(url, { withCredentials: true })`;
 * then `"*"` answers with the request's own origin, as the Fetch standard requires).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly origins: ReadonlyArray<string> | "*"
  readonly credentials?: boolean | undefined
}

/**
 * The CORS options in force (none by default).
 *
 * @since 0.1.0
 * @category tags
 */
export class Cors extends Context.Reference<Cors>()("@saacms/realtime/Cors", {
  defaultValue: (): Options | undefined => undefined
}) {}

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Cors> => Layer.succeed(Cors, options)

/**
 * The CORS response headers for a request from `origin` (none when CORS is off
 * or the origin is not allowed).
 *
 * @since 0.1.0
 * @category utils
 */
export const headers = (cors: Options | undefined, origin: string | undefined): Record<string, string> => {
  if (cors === undefined || origin === undefined) return {}
  const allowed = cors.origins === "*" || cors.origins.includes(origin)
  if (!allowed) return {}
  const credentials = cors.credentials === true
  return {
    "Access-Control-Allow-Origin": cors.origins === "*" && !credentials ? "*" : origin,
    ...(credentials ? { "Access-Control-Allow-Credentials": "true" } : {}),
    "Access-Control-Expose-Headers": "Retry-After",
    Vary: "Origin"
  }
}
