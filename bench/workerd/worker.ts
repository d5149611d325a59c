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
import * as Effect from "effect/Effect"
import * as Namespace from "../../src/DurableObject/Namespace.js"
import * as Event from "../../src/Event.js"
import * as Frame from "../../src/Frame.js"
import type * as Realtime from "../../src/Realtime.js"
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

// `ours-socket`: the Worker holds each subscriber's stream and reads the
// object (the same `OURS` class) over a hibernatable socket; publishes go to
// the object as for `ours`.
let sockets: Realtime.Realtime["Type"] | undefined
const subscribeThroughSocket = (env: Env, collection: string, id: string, request: Request): Promise<Response> => {
  sockets ??= Namespace.make(env.OURS as Namespace.DurableObjectNamespaceLike, {
    mode: "socket",
    heartbeatMs: 30_000,
    maxQueuedBytes: 1024 * 1024,
    now: () => Date.now()
  })
  const realtime = sockets
  const last = request.headers.get("Last-Event-ID") ?? undefined
  return Effect.runPromise(
    Effect.flatMap(Event.resourceKey(collection, id), (key) => realtime.open(key, last)).pipe(
      Effect.map((subscriber) => new Response(subscriber.toReadableStream(), { headers: Frame.headers })),
      Effect.orElseSucceed(() => new Response("unavailable", { status: 503 }))
    )
  )
}

export default {
  fetch(request: Request, env: Env): Promise<Response> | Response {
    const [, variant, collection, id, ...rest] = new URL(request.url).pathname.split("/")
    if (variant === "ours-socket" && request.method === "GET" && collection && id && rest.length === 0) {
      return subscribeThroughSocket(env, decodeURIComponent(collection), decodeURIComponent(id), request)
    }
    const namespace = variant === "ours" || variant === "ours-socket"
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
