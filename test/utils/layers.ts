import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Event from "../../src/Event.js"
import * as Hub from "../../src/Hub.js"
import * as Realtime from "../../src/Realtime.js"
import * as RealtimeConfig from "../../src/RealtimeConfig.js"

/** The in-memory core with the given options. */
export const memory = (options: RealtimeConfig.Options = {}) =>
  Realtime.layerMemory.pipe(Layer.provide(RealtimeConfig.layer(options)))

/** A resource key from known-good parts. */
export const key = (collection: string, id: string): Event.ResourceKey =>
  Effect.runSync(Event.resourceKey(collection, id))

/** Yield until `key` has `count` subscribers (bounded, no clock involved). */
export const awaitSubscribers = (k: Event.ResourceKey, count: number) =>
  Effect.gen(function*() {
    const hub = yield* Hub.Hub
    for (let i = 0; i < 10_000; i++) {
      if ((yield* hub.subscriberCount(k)) === count) return
      yield* Effect.yieldNow()
    }
    return yield* Effect.dieMessage(`${k} never reached ${count} subscribers`)
  })

/**
 * The next turn of the event loop: the hub hands out what was published in
 * this one at its end (no clock involved, nothing timed).
 */
export const nextTurn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
