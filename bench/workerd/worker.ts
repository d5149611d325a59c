/**
 * The bench Worker: exports the Durable Object classes and routes
 * `/<variant>/<collection>/<id>` to the object named `<collection>:<id>` of
 * that variant's binding (`ours` → `OURS`, `baseline` → `BASELINE`,
 * `baseline-pipe` → `BASELINE_PIPE`), passing the request through unchanged,
 * as a saacms host does:
 * `env.X.get(env.X.idFromName(name)).fetch(request)`.
 *
 * `bundle.mjs` swaps the import of `src/index.ts` for a stub while the package
 * does not export `SaacmsRealtimeDO`.
 */
export { SaacmsRealtimeDO } from "../../src/index.js"
export { BaselineDO, BaselinePipeDO } from "./baseline.js"

/** The part of a `DurableObjectNamespace` the Worker uses. */
interface Namespace {
  idFromName(name: string): unknown
  get(id: unknown): { fetch(request: Request): Promise<Response> }
}

interface Env {
  readonly OURS: Namespace
  readonly BASELINE: Namespace
  readonly BASELINE_PIPE: Namespace
}

export default {
  fetch(request: Request, env: Env): Promise<Response> | Response {
    const [, variant, collection, id, ...rest] = new URL(request.url).pathname.split("/")
    const namespace = variant === "ours"
      ? env.OURS
      : variant === "baseline"
      ? env.BASELINE
      : variant === "baseline-pipe"
      ? env.BASELINE_PIPE
      : undefined
    if (namespace === undefined || !collection || !id || rest.length > 0) {
      return new Response("expected /ours/<collection>/<id>, /baseline/<collection>/<id> or /baseline-pipe/<collection>/<id>", { status: 404 })
    }
    return namespace.get(namespace.idFromName(`${decodeURIComponent(collection)}:${decodeURIComponent(id)}`)).fetch(request)
  }
}
