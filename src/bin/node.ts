/** `npm run start:node`: the demo host on Node (port from `PORT`, default 8787; idle timeout from `IDLE_TIMEOUT_S`, default 10). */
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { NodeHttpServer, NodeHttpServerRequest, NodeRuntime } from "@effect/platform-node"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { createServer } from "node:http"
import * as DemoHost from "./DemoHost.js"

// Node's own limits stop at the request: `headersTimeout` (its head; 60 s by
// default, here the idle timeout), `requestTimeout` (all of it, body included;
// 300 s, here 30 s), both checked every `connectionsCheckingInterval` (30 s,
// here 1 s), and `keepAliveTimeout` (idle between requests; 5 s, here the idle
// timeout). None applies to a response, so an SSE stream outlives them all.
// The socket timeout (`server.timeout`, off by default) is the one that covers
// a stalled body or a client that stops reading, and the one that would cut a
// quiet stream: each subscribe request lifts it for its own connection (a next
// request on that connection sets it again).
const keepOpen = (request: HttpServerRequest.HttpServerRequest) =>
  Effect.sync(() => NodeHttpServerRequest.toIncomingMessage(request).socket.setTimeout(0))

const server = Layer.unwrapEffect(Effect.map(
  Config.all({ port: Config.port("PORT").pipe(Config.withDefault(8787)), idle: DemoHost.idleTimeoutSeconds }),
  ({ idle, port }) =>
    NodeHttpServer.layer(() =>
      createServer({
        keepAliveTimeout: idle * 1000,
        headersTimeout: idle * 1000,
        requestTimeout: Math.max(idle, 30) * 1000,
        connectionsCheckingInterval: 1000
      }).setTimeout(idle * 1000), { port })
))

NodeRuntime.runMain(Layer.launch(DemoHost.make(keepOpen).pipe(Layer.provide(server))))
