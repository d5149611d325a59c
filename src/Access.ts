/**
 * Who may subscribe to which record, and for how long. The host decides: an
 * `authorize` function sees the request (headers, cookies, query) and the
 * resource key and allows, possibly until an expiry, or denies with 401 or
 * 403. An optional `recheck` runs before each live record event goes to a
 * subscriber, so a record that becomes private stops flowing to those who
 * lost access. Without a configuration everything is allowed (the reference's
 * behaviour).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Event from "./Event.js"

/**
 * What `authorize` sees of one subscribe request.
 *
 * @since 0.1.0
 * @category models
 */
export interface AccessRequest {
  /** The record's key; for a whole collection (`topic: "collection"`), `"<collection>:*"`. */
  readonly key: Event.ResourceKey
  readonly collection: string
  /** The record's id; `"*"` for a whole collection. */
  readonly id: string
  /**
   * What is asked for: one record (the per-record route, or a `collection/id`
   * topic), or a whole collection (a `collection/*` topic of the multiplexed
   * route: every event of its records). Absent means a record.
   */
  readonly topic?: "record" | "collection" | undefined
  readonly method: string
  readonly url: URL
  readonly headers: Headers
  readonly cookies: Readonly<Record<string, string>>
}

/**
 * Allowed, until `expiresAt` (ms since the epoch) if set; `subject` is what
 * `recheck` gets for this subscriber (JSON when it must reach a Durable Object).
 *
 * @since 0.1.0
 * @category models
 */
export interface Allow {
  readonly _tag: "Allow"
  readonly expiresAt?: number | undefined
  readonly subject?: unknown
}

/**
 * Denied: 401 (who are you?) or 403 (not you), with a short reason for the client.
 *
 * @since 0.1.0
 * @category models
 */
export interface Deny {
  readonly _tag: "Deny"
  readonly status: 401 | 403
  readonly reason?: string | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export type Decision = Allow | Deny

/**
 * @since 0.1.0
 * @category constructors
 */
export const allow = (options: { readonly expiresAt?: number | Date | undefined; readonly subject?: unknown } = {}): Allow => ({
  _tag: "Allow",
  expiresAt: options.expiresAt instanceof Date ? options.expiresAt.getTime() : options.expiresAt,
  subject: options.subject
})

/**
 * @since 0.1.0
 * @category constructors
 */
export const deny = (status: 401 | 403, reason?: string): Deny => ({ _tag: "Deny", status, reason })

/**
 * A decision as hosts may write it: `true` allows, `false` denies with 403.
 *
 * @since 0.1.0
 * @category models
 */
export type DecisionInput = Decision | boolean

/**
 * The per-event check: may the subscriber with `subject` see `event` of `key`?
 * Synchronous, as it runs inside the fan-out; it must not throw (a throw refuses).
 *
 * @since 0.1.0
 * @category models
 */
export type Recheck = (subject: unknown, event: Event.RealtimeEvent, key: Event.ResourceKey) => boolean

/**
 * @since 0.1.0
 * @category tags
 */
export class Access extends Context.Reference<Access>()("@saacms/realtime/Access", {
  defaultValue: (): {
    /**
     * Decide one subscribe request; none by default (everyone is allowed). A
     * failure or defect answers 500 (logged) and opens nothing.
     */
    readonly authorize: ((request: AccessRequest) => Effect.Effect<Decision>) | undefined
    /** Run before each live record event goes to a subscriber; none by default (no per-subscriber work). */
    readonly recheck: Recheck | undefined
  } => ({ authorize: undefined, recheck: undefined })
}) {}

const normalise = (decision: DecisionInput): Decision =>
  decision === true ? allow() : decision === false ? deny(403) : decision

/**
 * Access for Effect apps: `authorize` as an Effect.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: {
  readonly authorize?: ((request: AccessRequest) => Effect.Effect<DecisionInput>) | undefined
  readonly recheck?: Recheck | undefined
}): Layer.Layer<Access> => {
  const authorize = options.authorize
  return Layer.succeed(Access, {
    authorize: authorize === undefined ? undefined : (request) => Effect.map(authorize(request), normalise),
    recheck: options.recheck
  })
}

/**
 * Access for PluginDef hosts: `authorize` returns a decision or a Promise of one.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPromise = (options: {
  readonly authorize?: ((request: AccessRequest) => DecisionInput | Promise<DecisionInput>) | undefined
  readonly recheck?: Recheck | undefined
}): Layer.Layer<Access> => {
  const authorize = options.authorize
  return layer({
    authorize: authorize === undefined
      ? undefined
      : (request) => Effect.promise(() => Promise.resolve().then(() => authorize(request))),
    recheck: options.recheck
  })
}

/**
 * The cookies of a `Cookie` header (malformed pairs are skipped).
 *
 * @since 0.1.0
 * @category utils
 */
export const parseCookies = (header: string | null | undefined): Record<string, string> => {
  const cookies: Record<string, string> = {}
  if (header === null || header === undefined) return cookies
  for (const pair of header.split(";")) {
    const at = pair.indexOf("=")
    if (at <= 0) continue
    const name = pair.slice(0, at).trim()
    const value = pair.slice(at + 1).trim()
    try {
      cookies[name] = decodeURIComponent(value)
    } catch {
      cookies[name] = value
    }
  }
  return cookies
}
