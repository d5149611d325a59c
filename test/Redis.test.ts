/**
 * The Redis backend in one process: two cores ("instances") over one Redis,
 * sharing fan-out and history through a key prefix of their own.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import { Hono } from "hono"
import { realtime } from "../src/index.js"
import * as Realtime from "../src/Realtime.js"
import * as RealtimeConfig from "../src/RealtimeConfig.js"
import * as Redis from "../src/Redis.js"
import * as Sse from "./utils/sse.js"
import { key } from "./utils/layers.js"
import * as TestRedis from "./utils/redis.js"

const posts1 = key("posts", "1")
const changed = (n: number) => ({ type: "changed", slug: "posts", id: "1", record: { n }, etag: `e${n}` }) as const

/** Two instances over one Redis under a fresh prefix; the prefix's keys are deleted afterwards. */
const instances = (options: RealtimeConfig.Options = {}) =>
  Effect.gen(function*() {
    const keyPrefix = TestRedis.newPrefix()
    const cleaner = yield* TestRedis.connect()
    yield* Effect.addFinalizer(() => TestRedis.deleteKeys(cleaner, keyPrefix))
    const build = Effect.flatMap(
      Layer.build(Redis.layer({ url: TestRedis.url, keyPrefix }).pipe(Layer.provide(RealtimeConfig.layer(options)))),
      (context) => Effect.succeed(Context.get(context, Realtime.Realtime))
    )
    return { a: yield* build, b: yield* build, keyPrefix }
  })

/** Pull `subscribe` until an event with `untilId`; the parsed events. */
const eventsUntil = (stream: Stream.Stream<Uint8Array, unknown>, untilId: string) => {
  const seen: Array<Uint8Array> = []
  return stream.pipe(
    Stream.takeUntil((chunk) => {
      seen.push(chunk)
      return Sse.parse(seen).some((e) => e.id === untilId)
    }),
    Stream.runCollect,
    Effect.map((chunks) => Sse.parse(Chunk.toReadonlyArray(chunks)).map((e) => [e.event, e.id])),
    Effect.timeout("5 seconds")
  )
}

describe("Redis backend, two instances in one process", () => {
  it.live("a publish on one instance reaches a subscriber on the other, in order", () =>
    Effect.gen(function*() {
      const { a, b } = yield* instances()
      const pull = yield* Stream.toPull(b.subscribe(posts1))
      yield* pull
      for (let n = 1; n <= 5; n++) yield* a.publish(changed(n))
      const received: Array<string> = []
      while (received.length < 5) received.push(...Sse.parse(Chunk.toReadonlyArray(yield* pull)).map((e) => e.id!))
      assert.deepStrictEqual(received, ["e1", "e2", "e3", "e4", "e5"])
    }).pipe(Effect.scoped))

  it.live("replay on one instance of what the other published, then live from both", () =>
    Effect.gen(function*() {
      const { a, b } = yield* instances()
      for (let n = 1; n <= 4; n++) yield* a.publish(changed(n))
      const fiber = yield* Effect.fork(eventsUntil(b.subscribe(posts1, "e2"), "e6"))
      yield* Effect.sleep("100 millis")
      yield* b.publish(changed(5))
      yield* a.publish(changed(6))
      assert.deepStrictEqual(yield* fiber.await.pipe(Effect.flatten), [
        ["changed", "e3"],
        ["changed", "e4"],
        ["changed", "e5"],
        ["changed", "e6"]
      ])
      const unknown = yield* eventsUntil(b.subscribe(posts1, "nope"), "e6")
      assert.deepStrictEqual(unknown, [["saacms-resync", "e6"]])
    }).pipe(Effect.scoped))

  it.live("publishes from both instances interleaved: every subscriber gets the record's sequence, once, in order", () =>
    Effect.gen(function*() {
      const { a, b } = yield* instances({ retention: { maxEvents: 1000 } })
      const subscribers = yield* Effect.forEach([a, b, a, b], (instance) => Effect.fork(eventsUntil(instance.subscribe(posts1), "e200")))
      yield* Effect.sleep("200 millis")
      const published = yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => i + 1), (n) =>
        (n % 2 === 0 ? a : b).publish(changed(n)), { concurrency: 8 })
      const order = [...published].sort((x, y) => x.seq - y.seq).map((p) => p.id)
      assert.deepStrictEqual(published.map((p) => p.seq).sort((x, y) => x - y), Array.from({ length: 200 }, (_, i) => i + 1))
      // Each subscriber reads until e200 (the chunk with it may carry later events too).
      const through = order.indexOf("e200") + 1
      assert.isAbove(through, 0, "e200 was published")
      for (const fiber of subscribers) {
        const events = yield* Effect.flatten(fiber.await)
        // Until the last id: a prefix of the record's order, complete (not cut short by a stream that ended).
        const ids = events.map(([, id]) => id)
        assert.isAtLeast(ids.length, through, `every event up to e200 arrived (the last was ${ids.at(-1)})`)
        assert.deepStrictEqual(ids, order.slice(0, ids.length))
        assert.isTrue(events.every(([event]) => event === "changed"))
      }
    }).pipe(Effect.scoped))
})

describe("realtime({ redis }): the PluginDef over Redis", () => {
  it.live("two plugin instances share fan-out: a publish through one reaches the route of the other", () =>
    Effect.gen(function*() {
      const keyPrefix = TestRedis.newPrefix()
      const cleaner = yield* TestRedis.connect()
      yield* Effect.addFinalizer(() => TestRedis.deleteKeys(cleaner, keyPrefix))
      const plugins = yield* Effect.acquireRelease(
        Effect.sync(() => [1, 2].map(() => realtime({ redis: { url: TestRedis.url, keyPrefix } }))),
        (plugins) => Effect.promise(() => Promise.all(plugins.map((plugin) => plugin.services.realtime.stop())))
      )
      const [a, b] = plugins as [ReturnType<typeof realtime>, ReturnType<typeof realtime>]
      const app = new Hono()
      app.get("/api/saacms/v1/:collection/:id/subscribe", (c) => b.routes["GET /api/saacms/v1/:collection/:id/subscribe"](c))
      const controller = new AbortController()
      yield* Effect.addFinalizer(() => Effect.sync(() => controller.abort()))
      const response = yield* Effect.promise(() =>
        Promise.resolve(app.request("/api/saacms/v1/posts/1/subscribe", { signal: controller.signal })))
      assert.strictEqual(response.status, 200)
      const reader = response.body!.getReader()
      yield* Effect.promise(() => reader.read())
      yield* Effect.promise(() => a.services.realtime.publish(changed(1)))
      let text = ""
      while (!text.includes("\n\n")) {
        const chunk = yield* Effect.promise(() => reader.read())
        text += new TextDecoder().decode(chunk.value)
      }
      assert.deepStrictEqual(Sse.parse(text).map((e) => [e.event, e.id, e.data]), [["changed", "e1", "{\"n\":1}"]])
    }).pipe(Effect.scoped))
})
