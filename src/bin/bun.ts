/** `npm start`: the demo host on Bun (port from `PORT`, default 8787). */
import { BunHttpServer, BunRuntime } from "@effect/platform-bun"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as DemoHost from "./DemoHost.js"

// Bun.serve closes a connection after `idleTimeout` seconds without traffic
// (default 10), and an SSE stream is silent between heartbeats (default 30 s):
// turn the idle timeout off so Bun does not cut quiet subscribers.
const server = Layer.unwrapEffect(
  Effect.map(
    Config.port("PORT").pipe(Config.withDefault(8787)),
    (port) => BunHttpServer.layer({ port, idleTimeout: 0 })
  )
)

BunRuntime.runMain(Layer.launch(DemoHost.layer.pipe(Layer.provide(server))))
