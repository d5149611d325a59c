/**
 * Ours, as an Effect app mounts it, over a given core (the `effect` and
 * `redis` variants): the bench routes of `effectRoutes.ts`, served by
 * `BunHttpServer`.
 */
import { BunHttpServer, BunRuntime } from "@effect/platform-bun"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as Layer from "effect/Layer"
import type * as Realtime from "../../src/Realtime.js"
import * as RealtimeHttp from "../../src/RealtimeHttp.js"
import * as EffectRoutes from "./effectRoutes.js"
import * as Host from "./host.js"

/** Serve the bench routes over `core` (`Realtime.layerMemory` or `Redis.layer(…)`) until the process ends. */
export const launch = (core: typeof Realtime.layerMemory): void => {
  const app = EffectRoutes.make(core, () => Host.gc(), Host.ready).pipe(
    Layer.provide(BunHttpServer.layer({ port: Host.port, hostname: "127.0.0.1", idleTimeout: 0 })),
    // As the README advises: no request span kept alive for the life of each stream.
    HttpMiddleware.withTracerDisabledWhen(RealtimeHttp.isSubscribeRequest)
  )
  BunRuntime.runMain(Layer.launch(app))
}
