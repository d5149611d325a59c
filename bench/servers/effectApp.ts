/**
 * Ours, as an Effect app mounts it, over a given core (the `effect` and
 * `redis` variants): `RealtimeHttp.layer` plus a publish route on
 * `HttpLayerRouter`, served by `BunHttpServer`.
 */
import { BunHttpServer, BunRuntime } from "@effect/platform-bun"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Realtime from "../../src/Realtime.js"
import * as RealtimeConfig from "../../src/RealtimeConfig.js"
import * as RealtimeHttp from "../../src/RealtimeHttp.js"
import * as Host from "./host.js"

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

const gc = HttpLayerRouter.add("POST", "/bench/gc", Effect.sync(() => HttpServerResponse.raw(Host.gc())))

/** Serve the bench routes over `core` (`Realtime.layerMemory` or `Redis.layer(…)`) until the process ends. */
export const launch = (core: typeof Realtime.layerMemory): void => {
  const app = HttpLayerRouter.serve(Layer.mergeAll(RealtimeHttp.layer, publish, gc), {
    disableLogger: true,
    disableListenLog: true
  }).pipe(
    Layer.provide(core),
    Layer.provide(RealtimeConfig.layer({ heartbeatMs: 3_600_000 })),
    Layer.tap(() =>
      HttpServer.addressWith((address) => Effect.sync(() => Host.ready(address._tag === "TcpAddress" ? address.port : 0)))
    ),
    Layer.provide(BunHttpServer.layer({ port: Host.port, hostname: "127.0.0.1", idleTimeout: 0 })),
    // As the README advises: no request span kept alive for the life of each stream.
    HttpMiddleware.withTracerDisabledWhen(RealtimeHttp.isSubscribeRequest)
  )
  BunRuntime.runMain(Layer.launch(app))
}
