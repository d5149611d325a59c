/** `npm start`: the demo host on Bun (port from `PORT`, default 8787). */
import { BunHttpServer, BunRuntime } from "@effect/platform-bun"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as DemoHost from "./DemoHost.js"

const server = Layer.unwrapEffect(
  Effect.map(Config.port("PORT").pipe(Config.withDefault(8787)), (port) => BunHttpServer.layer({ port }))
)

BunRuntime.runMain(Layer.launch(DemoHost.layer.pipe(Layer.provide(server))))
