import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { Redis, type RedisOptions } from "ioredis"
import type { ChildProcess } from "node:child_process"
import * as RealtimeConfig from "../../src/RealtimeConfig.js"
import * as Store from "../../src/Redis/Store.js"
import * as ReplayBuffer from "../../src/ReplayBuffer.js"

/** The shared test server (never flushed: every test has its own key prefix). */
export const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"

/** A fresh key prefix. */
export const newPrefix = () => `test:${crypto.randomUUID()}:`

/**
 * A client (of the shared server unless `at` names another), quit on release;
 * dies (the test fails, it is not skipped) when Redis is unreachable.
 */
export const connect = (options: RedisOptions = {}, at: string = url) =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const client = new Redis(at, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null, ...options })
      // Errors reach the commands; the event would only be printed.
      client.on("error", () => {})
      return Effect.as(Effect.orDie(Effect.tryPromise(() => client.connect())), client)
    }),
    (client) => Effect.promise(() => client.quit().catch(() => client.disconnect()))
  )

/** Delete every key under `prefix`. */
export const deleteKeys = (client: Redis, prefix: string) =>
  Effect.promise(async () => {
    let cursor = "0"
    do {
      const [next, keys] = await client.scan(cursor, "MATCH", `{${prefix}*`, "COUNT", 1000)
      if (keys.length > 0) await client.unlink(...keys)
      cursor = next
    } while (cursor !== "0")
  })

/** A store under a fresh prefix, its client and prefix; its keys are deleted on release. */
export const store = (options: Partial<Store.Options> = {}) =>
  Effect.gen(function*() {
    const client = yield* connect()
    const keyPrefix = newPrefix()
    yield* Effect.addFinalizer(() => deleteKeys(client, keyPrefix))
    const store = Store.make(client, {
      keyPrefix,
      maxEvents: 100,
      maxAgeMs: 3_600_000,
      maxHistoryBytes: 64 * 1024 * 1024,
      ...options
    })
    return { client, keyPrefix, store }
  })

/** The Redis `ReplayBuffer` (no live source) with the given options, under a fresh prefix. */
export const layer = (
  options: RealtimeConfig.Options = {}
): Layer.Layer<ReplayBuffer.ReplayBuffer, RealtimeConfig.InvalidOptions> =>
  Layer.scoped(
    ReplayBuffer.ReplayBuffer,
    Effect.gen(function*() {
      const config = yield* RealtimeConfig.RealtimeConfig
      const { store: redisStore } = yield* store(ReplayBuffer.retention(config))
      return ReplayBuffer.make(Store.toDriver(redisStore))
    })
  ).pipe(Layer.provide(RealtimeConfig.layer(options)))

/**
 * A `redis-server` of the test's own (no persistence) on a free port, for
 * fault tests that must not disturb the shared server: `kill` SIGKILLs it by
 * its PID, `start` runs it again on the same port, empty. Fails (the test
 * fails, it is not skipped) when no `redis-server` binary is installed. The
 * server is killed when the scope closes.
 */
export interface PrivateServer {
  readonly port: number
  readonly url: string
  /** SIGKILL the running server (by PID); succeeds once it has exited. */
  readonly kill: Effect.Effect<void>
  /** Start the server again on the same port (empty); succeeds once it accepts connections. */
  readonly start: Effect.Effect<void, Error>
}

const redisServerBinary = Effect.async<string, Error>((resume) => {
  void import("node:child_process").then(({ execFile }) =>
    execFile("/bin/sh", ["-c", "command -v redis-server"], (error, stdout) => {
      const path = stdout.trim()
      resume(error === null && path !== "" ? Effect.succeed(path) : Effect.fail(new Error("redis-server is not installed")))
    })
  )
})

/** Start a private `redis-server` on `port` (see `PrivateServer`), killed by its PID when the scope closes. */
export const privateServer = (port: number): Effect.Effect<PrivateServer, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const binary = yield* redisServerBinary
    const { spawn } = yield* Effect.promise(() => import("node:child_process"))
    let current: ChildProcess | undefined

    const stop = Effect.async<void>((resume) => {
      const child = current
      current = undefined
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
      child.once("exit", () => resume(Effect.void))
      if (child.pid !== undefined) process.kill(child.pid, "SIGKILL")
    })

    const start = Effect.async<void, Error>((resume) => {
      const child = spawn(binary, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
        stdio: ["ignore", "pipe", "pipe"]
      })
      current = child
      let output = ""
      let settled = false
      const settle = (result: Effect.Effect<void, Error>) => {
        if (settled) return
        settled = true
        resume(result)
      }
      const onData = (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes("Ready to accept connections")) settle(Effect.void)
      }
      child.stdout?.on("data", onData)
      child.stderr?.on("data", onData)
      child.once("exit", (code) => settle(Effect.fail(new Error(`redis-server exited with ${code}:\n${output}`))))
    }).pipe(
      Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("redis-server did not start") })
    )

    yield* Effect.addFinalizer(() => stop)
    yield* start
    return { port, url: `redis://127.0.0.1:${port}`, kill: stop, start }
  })
