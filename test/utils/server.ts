/**
 * The HTTP server of the runtime the suite runs in: `BunHttpServer` under
 * `bun --bun vitest`, `NodeHttpServer` under Node, on a random port. Each is
 * imported dynamically, so Node never loads platform-bun and Bun never loads
 * platform-node.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import type * as Scope from "effect/Scope"
import { fileURLToPath } from "node:url"
import * as Realtime from "../../src/Realtime.js"
import * as RealtimeHttp from "../../src/RealtimeHttp.js"

/** `true` under Bun (including `bun --bun vitest`). */
export const isBun: boolean = typeof process.versions.bun === "string"

/** The runtime's name, for test titles. */
export const runtime: "bun" | "node" = isBun ? "bun" : "node"

const bun = Effect.promise(async () => {
  const BunHttpServer = await import("@effect/platform-bun/BunHttpServer")
  return BunHttpServer.layer({ port: 0 })
})

// `NodeHttpServer.layer(createServer, { port: 0 })`, plus a finalizer that runs
// before the server's own (`server.close()`, which waits for every open
// connection): it drops connections a client keeps open without a request in
// flight (seen with Node's fetch after an aborted request: a socket the client
// holds for its 4 s keep-alive), so a test's teardown does not wait for it.
const node = Effect.promise(async () => {
  const [NodeHttpServer, Http] = await Promise.all([
    import("@effect/platform-node/NodeHttpServer"),
    import("node:http")
  ])
  return Layer.unwrapEffect(Effect.sync(() => {
    const server = Http.createServer()
    const closeConnections = Layer.scopedDiscard(
      Effect.addFinalizer(() => Effect.sync(() => server.closeAllConnections()))
    )
    return closeConnections.pipe(Layer.provideMerge(NodeHttpServer.layer(() => server, { port: 0 })))
  }))
})

/** A server of the current runtime on a random port. */
export const layerTest: Layer.Layer<HttpServer.HttpServer, HttpServerError.ServeError> = Layer.unwrapEffect(
  isBun ? bun : node
)

/** The base URL of the running server, e.g. `http://127.0.0.1:54321`. */
export const baseUrl: Effect.Effect<string, never, HttpServer.HttpServer> = HttpServer.addressWith((address) =>
  address._tag === "UnixAddress"
    ? Effect.die(new Error("expected a TCP address"))
    : Effect.succeed(`http://127.0.0.1:${address.port}`)
)

/** A TCP port that was free a moment ago (for a child process that needs a fixed `PORT`). */
export const freePort: Effect.Effect<number> = Effect.async<number>((resume) => {
  void import("node:net").then(({ createServer }) => {
    const probe = createServer()
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      probe.close(() => resume(port > 0 ? Effect.succeed(port) : Effect.die(new Error("no free port"))))
    })
  })
})

// The demo host uses Redis only when a test says so: a REDIS_URL in the
// environment (CI exports none, but a developer's shell may) must not turn
// the in-memory demo into a Redis one that shares state across runs.
const childEnv = (env: Record<string, string>, port: number): Record<string, string | undefined> => {
  const inherited: Record<string, string | undefined> = { ...process.env }
  delete inherited.REDIS_URL
  delete inherited.REDIS_KEY_PREFIX
  return { ...inherited, ...env, PORT: String(port) }
}

/**
 * Run this runtime's entry point of the demo host as a child process on
 * `port` until the scope closes (`src/bin/bun.ts` with Bun; `src/bin/node.ts`
 * with vite-node, which vitest brings, since tsx is not installed); succeeds
 * once it logs that it is listening.
 */
export const entryPoint = (port: number, env: Record<string, string> = {}): Effect.Effect<void, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const { spawn } = yield* Effect.promise(() => import("node:child_process"))
    const [command, script] = isBun
      ? [process.execPath, "src/bin/bun.ts"]
      : ["node_modules/.bin/vite-node", "src/bin/node.ts"]
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(command, [script], {
          cwd: fileURLToPath(new URL("../..", import.meta.url)),
          env: childEnv(env, port),
          stdio: ["ignore", "pipe", "pipe"]
        })
      ),
      (child) =>
        Effect.async<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          child.once("exit", () => resume(Effect.void))
          child.kill("SIGTERM")
        })
    )
    let output = ""
    yield* Effect.async<void, Error>((resume) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes("Listening on")) resume(Effect.void)
      }
      child.stdout.on("data", onData)
      child.stderr.on("data", onData)
      child.once("exit", (code) => resume(Effect.fail(new Error(`${script} exited with ${code}:\n${output}`))))
    }).pipe(
      Effect.timeoutFail({
        duration: "20 seconds",
        onTimeout: () => new Error(`${script} did not start listening:\n${output}`)
      })
    )
  })

/**
 * `routes` (the subscribe routes by default) over the in-memory core on the
 * runtime's server, with `services` (a configuration, `Access`, a tracer) and
 * only logs at `logLevel` or above, so that the refusals a test provokes keep
 * its output to results.
 */
export const layerRealtime = <A = never, E = never>(options: {
  readonly routes?: Layer.Layer<never, never, HttpLayerRouter.HttpRouter | HttpLayerRouter.Request<"Requires", Realtime.Realtime>>
  readonly services?: Layer.Layer<A, E> | undefined
  readonly logLevel?: LogLevel.LogLevel | undefined
} = {}) =>
  HttpLayerRouter.serve(options.routes ?? RealtimeHttp.layer, {
    routerConfig: RealtimeHttp.routerConfig,
    disableLogger: true,
    disableListenLog: true
  }).pipe(
    Layer.provideMerge(Realtime.layerMemory),
    Layer.provideMerge(layerTest),
    Layer.provide(options.services ?? (Layer.empty as unknown as Layer.Layer<A, E>)),
    Layer.provide(Logger.minimumLogLevel(options.logLevel ?? LogLevel.Warning))
  )

/** GET `path` on the test server; the request is aborted when the scope closes. */
export const get = (path: string, headers: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const url = `${yield* baseUrl}${path}`
    const controller = yield* Effect.acquireRelease(
      Effect.sync(() => new AbortController()),
      (controller) => Effect.sync(() => controller.abort())
    )
    return yield* Effect.orDie(Effect.tryPromise(() => fetch(url, { headers, signal: controller.signal })))
  })
