/**
 * The configuration layers: invalid options fail the layer with a typed
 * error (nothing is thrown while it is built), and `layerConfig` reads the
 * options through a `Config` the host chooses.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RealtimeConfig from "../src/RealtimeConfig.js"

const resolved = Effect.flatMap(RealtimeConfig.RealtimeConfig, Effect.succeed)

const withEnv = (vars: Record<string, string>) => Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(vars))))

describe("RealtimeConfig", () => {
  it.effect("layer: options resolve over the defaults; invalid ones fail the layer with InvalidOptions", () =>
    Effect.gen(function*() {
      const config = yield* Effect.provide(resolved, RealtimeConfig.layer({ heartbeatMs: 500, maxTopics: 7 }))
      assert.strictEqual(Duration.toMillis(config.heartbeat), 500)
      assert.strictEqual(config.maxTopics, 7)
      assert.strictEqual(config.maxEvents, RealtimeConfig.defaults.maxEvents)
      // Building the layer does not throw; providing it fails, typed.
      const invalid = RealtimeConfig.layer({ heartbeatMs: -1 })
      const error = yield* Effect.flip(Effect.provide(resolved, invalid))
      assert.strictEqual(error._tag, "InvalidOptions")
      assert.match(error.reason, /heartbeatMs/)
    }))

  it.effect("layerConfig: the REALTIME_* variables by default, over the configuration in force", () =>
    Effect.gen(function*() {
      const config = yield* Effect.provide(
        resolved,
        RealtimeConfig.layerConfig().pipe(
          Layer.provide(Layer.merge(withEnv({ REALTIME_MAX_EVENTS: "7", REALTIME_MAX_TOPICS: "3" }), RealtimeConfig.layer({ retryMs: 10 })))
        )
      )
      assert.deepStrictEqual([config.maxEvents, config.maxTopics, config.retryMs], [7, 3, 10])
      const unreadable = yield* Effect.flip(
        Effect.provide(resolved, RealtimeConfig.layerConfig().pipe(Layer.provide(withEnv({ REALTIME_MAX_EVENTS: "lots" }))))
      )
      assert.strictEqual(unreadable._tag, "ConfigError")
      const invalid = yield* Effect.flip(
        Effect.provide(resolved, RealtimeConfig.layerConfig().pipe(Layer.provide(withEnv({ REALTIME_MAX_EVENTS: "0" }))))
      )
      assert.strictEqual(invalid._tag, "InvalidOptions")
    }))

  it.effect("layerConfig: names of the host's own", () =>
    Effect.gen(function*() {
      const mine: Config.Config<RealtimeConfig.Options> = Config.all({
        heartbeatMs: Config.integer("SSE_PING_MS"),
        retention: Config.all({ maxEvents: Config.integer("SSE_HISTORY") })
      })
      const config = yield* Effect.provide(
        resolved,
        RealtimeConfig.layerConfig(mine).pipe(Layer.provide(withEnv({ SSE_PING_MS: "1234", SSE_HISTORY: "9" })))
      )
      assert.deepStrictEqual([Duration.toMillis(config.heartbeat), config.maxEvents], [1234, 9])
    }))
})
