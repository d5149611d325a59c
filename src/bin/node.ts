/** `npm run start:node`: the demo host on Node (port from `PORT`, default 8787). */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import * as Config from "effect/Config"
import * as Layer from "effect/Layer"
import { createServer } from "node:http"
import * as DemoHost from "./DemoHost.js"

const server = NodeHttpServer.layerConfig(createServer, { port: Config.port("PORT").pipe(Config.withDefault(8787)) })

NodeRuntime.runMain(Layer.launch(DemoHost.layer.pipe(Layer.provide(server))))
