import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Redis, type RedisOptions } from "ioredis"
import * as RealtimeConfig from "../../src/RealtimeConfig.js"
import * as Store from "../../src/Redis/Store.js"
import * as ReplayBuffer from "../../src/ReplayBuffer.js"

/** The shared test server (never flushed: every test has its own key prefix). */
export const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"

/** A fresh key prefix. */
export const newPrefix = () => `test:${crypto.randomUUID()}:`

/** A client, quit on release; dies (the test fails, it is not skipped) when Redis is unreachable. */
export const connect = (options: RedisOptions = {}) =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null, ...options })
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
export const layer = (options: RealtimeConfig.Options = {}): Layer.Layer<ReplayBuffer.ReplayBuffer> =>
  Layer.scoped(
    ReplayBuffer.ReplayBuffer,
    Effect.gen(function*() {
      const config = yield* RealtimeConfig.RealtimeConfig
      const { store: redisStore } = yield* store(ReplayBuffer.retention(config))
      return ReplayBuffer.make(Store.toDriver(redisStore))
    })
  ).pipe(Layer.provide(RealtimeConfig.layer(options)))
