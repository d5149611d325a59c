/**
 * Ours, as an Effect app mounts it on Node: the bench routes of
 * `effectRoutes.ts` over `Realtime.layerMemory`, served by
 * `@effect/platform-node`'s `NodeHttpServer` on a `node:http` server without
 * timeouts, run with `NodeRuntime.runMain`.
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as Layer from "effect/Layer"
import * as Realtime from "../../src/Realtime.js"
import * as RealtimeHttp from "../../src/RealtimeHttp.js"
import * as EffectRoutes from "./effectRoutes.js"
import * as NodeHost from "./nodeHost.js"

const app = EffectRoutes.make(Realtime.layerMemory, NodeHost.gc, NodeHost.ready).pipe(
  Layer.provide(NodeHttpServer.layer(() => NodeHost.createServer(), { port: NodeHost.port, host: "127.0.0.1" })),
  HttpMiddleware.withTracerDisabledWhen(RealtimeHttp.isSubscribeRequest)
)
NodeRuntime.runMain(Layer.launch(app))
