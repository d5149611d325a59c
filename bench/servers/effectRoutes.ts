/**
 * Ours, as an Effect app mounts it, without the platform's HTTP server: the
 * bench routes (`RealtimeHttp.layer`, a publish route, a burst route and
 * `POST /bench/gc`) over a given core, served by `HttpLayerRouter`. The Bun
 * variants (`effectApp.ts`) and the Node one (`node-effect.ts`) provide the
 * server.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Realtime from "../../src/Realtime.js"
import * as RealtimeConfig from "../../src/RealtimeConfig.js"
import * as RealtimeHttp from "../../src/RealtimeHttp.js"

const publish = HttpLayerRouter.add(
  "POST",
  "/bench/publish/:collection/:id",
  Effect.gen(function*() {
    const params = yield* HttpLayerRouter.params
    const record = yield* Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => request.json)
    const realtime = yield* Realtime.Realtime
    yield* realtime.publish({ type: "changed", slug: params.collection ?? "", id: params.id ?? "", record })
    return HttpServerResponse.empty({ status: 204 })
  }).pipe(
    Effect.catchAll((error) => Effect.succeed(HttpServerResponse.text(error._tag, { status: 400 })))
  )
)

/** A burst: the body is a JSON array of records, published one after another, each awaited, inside this request. */
const burst = HttpLayerRouter.add(
  "POST",
  "/bench/burst/:collection/:id",
  Effect.gen(function*() {
    const params = yield* HttpLayerRouter.params
    const records = yield* Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => request.json)
    const realtime = yield* Realtime.Realtime
    for (const record of records as ReadonlyArray<unknown>) {
      yield* realtime.publish({ type: "changed", slug: params.collection ?? "", id: params.id ?? "", record })
    }
    return HttpServerResponse.empty({ status: 204 })
  }).pipe(
    Effect.catchAll((error) => Effect.succeed(HttpServerResponse.text(error._tag, { status: 400 })))
  )
)

/**
 * The bench routes over `core` (`Realtime.layerMemory` or `Redis.layer(…)`);
 * `gc` runs a full collection; `ready` is told the port once the server
 * listens.
 */
export const make = (core: typeof Realtime.layerMemory, gc: () => void, ready: (port: number) => void) => {
  const gcRoute = HttpLayerRouter.add(
    "POST",
    "/bench/gc",
    Effect.sync(() => {
      gc()
      return HttpServerResponse.empty({ status: 204 })
    })
  )
  return HttpLayerRouter.serve(Layer.mergeAll(RealtimeHttp.layer, publish, burst, gcRoute), {
    disableLogger: true,
    disableListenLog: true
  }).pipe(
    Layer.provide(core),
    Layer.provide(RealtimeConfig.layer({ heartbeatMs: 3_600_000 })),
    Layer.tap(() =>
      HttpServer.addressWith((address) => Effect.sync(() => ready(address._tag === "TcpAddress" ? address.port : 0)))
    )
  )
}
