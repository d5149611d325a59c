import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Heartbeat from "../src/Heartbeat.js"
import * as Hub from "../src/Hub.js"
import * as Realtime from "../src/Realtime.js"
import * as Sse from "./utils/sse.js"
import { awaitSubscribers, key, memory } from "./utils/layers.js"

const posts1 = key("posts", "1")

const collect = (k = posts1) =>
  Effect.gen(function*() {
    const realtime = yield* Realtime.Realtime
    const chunks = yield* Ref.make<Array<Uint8Array>>([])
    const fiber = yield* realtime.subscribe(k).pipe(
      Stream.runForEach((chunk) => Ref.update(chunks, (all) => [...all, chunk])),
      Effect.fork
    )
    yield* awaitSubscribers(k, 1)
    return { fiber, text: Effect.map(Ref.get(chunks), Sse.text) }
  })

describe("Heartbeat", () => {
  it.scoped("beats :keepalive on the configured cadence while a record has subscribers", () =>
    Effect.gen(function*() {
      const { fiber, text } = yield* collect()
      assert.strictEqual(yield* text, ":keepalive\n\n")
      yield* TestClock.adjust("4999 millis")
      assert.strictEqual(yield* text, ":keepalive\n\n")
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* text, ":keepalive\n\n".repeat(2))
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(yield* text, ":keepalive\n\n".repeat(3))
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(memory({ heartbeatMs: 5000, retryMs: 0 }))))

  it.scoped("defaults to 30 seconds", () =>
    Effect.gen(function*() {
      const { text } = yield* collect()
      yield* TestClock.adjust("29 seconds")
      assert.strictEqual(yield* text, ":keepalive\n\n")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* text, ":keepalive\n\n".repeat(2))
    }).pipe(Effect.provide(memory({ retryMs: 0 }))))

  it.scoped("runs one heartbeat for all active records, and none while idle", () =>
    Effect.gen(function*() {
      const heartbeat = yield* Heartbeat.Heartbeat
      const hub = yield* Hub.Hub
      assert.strictEqual(yield* heartbeat.active, 0)
      const a = yield* collect(posts1)
      const b = yield* collect(key("posts", "2"))
      assert.strictEqual(yield* heartbeat.active, 1)
      // One tick writes :keepalive to every active record.
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* a.text, ":keepalive\n\n".repeat(2))
      assert.strictEqual(yield* b.text, ":keepalive\n\n".repeat(2))
      yield* Fiber.interrupt(a.fiber)
      assert.strictEqual(yield* heartbeat.active, 1)
      yield* Fiber.interrupt(b.fiber)
      assert.strictEqual(yield* heartbeat.active, 0)
      assert.strictEqual(yield* hub.activeKeys, 0)
      // Nothing fires for a record nobody watches any more.
      const before = yield* b.text
      yield* TestClock.adjust("10 minutes")
      assert.strictEqual(yield* b.text, before)
    }).pipe(Effect.provide(memory({ heartbeatMs: 1000, retryMs: 0 }))))
})
