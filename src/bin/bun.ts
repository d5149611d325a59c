/** `npm start`: the demo host on Bun (port from `PORT`, default 8787; idle timeout from `IDLE_TIMEOUT_S`, default 10). */
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { BunHttpServer, BunHttpServerRequest, BunRuntime } from "@effect/platform-bun"
import type * as Bun from "bun"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as DemoHost from "./DemoHost.js"

// Bun.serve closes a connection after `idleTimeout` seconds without traffic
// (checked every 4 s; before a first request head, after a fixed ~10 s), and
// an SSE stream is silent between heartbeats (default 30 s): each subscribe
// request lifts the timeout for its own connection with
// `server.timeout(request, 0)`. platform-bun keeps the `Server` that handed it
// the request as `bunServer` on its HttpServerRequest (not in its types).
// `maxRequestBodySize` stays at Bun's 128 MiB: the demo refuses a body past its
// own limit with a JSON 413, which Bun's answer (a bare 413) would replace.
const isServer = (server: unknown): server is Pick<Bun.Server<unknown>, "timeout"> =>
  typeof server === "object" && server !== null && "timeout" in server && typeof server.timeout === "function"

const keepOpen = (request: HttpServerRequest.HttpServerRequest) => {
  const server = "bunServer" in request ? request.bunServer : undefined
  return isServer(server)
    ? Effect.sync(() => server.timeout(BunHttpServerRequest.toRequest(request), 0))
    : Effect.logWarning("no Bun server on the request: the idle timeout will cut this stream")
}

const server = Layer.unwrapEffect(Effect.map(
  Config.all({ port: Config.port("PORT").pipe(Config.withDefault(8787)), idleTimeout: DemoHost.idleTimeoutSeconds }),
  BunHttpServer.layer
))

BunRuntime.runMain(Layer.launch(DemoHost.make(keepOpen).pipe(Layer.provide(server))))
