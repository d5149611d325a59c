/**
 * Every byte bounded: the memory attacks of the "every byte bounded" probe
 * (bench/probe), each as a test on the counts the code keeps (bytes queued
 * for clients, records, entries and bytes of history), not on RSS.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Heartbeat from "../src/Heartbeat.js"
import * as Hub from "../src/Hub.js"
import * as Realtime from "../src/Realtime.js"
import * as ReplayBuffer from "../src/ReplayBuffer.js"
import * as Sse from "./utils/sse.js"
import { awaitSubscribers, key, memory, nextTurn } from "./utils/layers.js"

const posts1 = key("posts", "1")
const kib = (n: number) => "x".repeat(n * 1024)
const changed = (n: number, record: unknown, id = "1") =>
  ({ type: "changed", slug: "posts", id, record, etag: `e${n}` }) as const

/** Read a web stream until an event with `untilId`; the ids of its events. */
const readIds = (stream: ReadableStream<Uint8Array>, untilId: string) =>
  Effect.promise(async () => {
    const reader = stream.getReader()
    const chunks: Array<Uint8Array> = []
    for (;;) {
      const chunk = await reader.read()
      if (chunk.done) break
      chunks.push(chunk.value)
      if (Sse.parse(chunks).some((e) => e.id === untilId)) break
    }
    await reader.cancel()
    return Sse.parse(chunks).map((e) => e.id)
  })

describe("bounded memory", () => {
  it.effect("replay: 50 subscribers resuming from the oldest of 100 events of 64 KiB hold 1 MiB each, and get everything as they read", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const hub = yield* Hub.Hub
      for (let n = 1; n <= 100; n++) yield* realtime.publish(changed(n, { body: kib(64) }))
      const streams: Array<ReadableStream<Uint8Array>> = []
      for (let i = 0; i < 50; i++) streams.push((yield* realtime.open(posts1, "e1")).toReadableStream())
      // Nothing read: each holds what fits its 1 MiB (15 frames of 64 KiB), not the 6.3 MiB it is owed.
      yield* Effect.yieldNow()
      const queued = yield* hub.queuedBytes
      assert.isAtMost(queued, 50 * 1024 * 1024)
      assert.isAbove(queued, 50 * 14 * 64 * 1024)
      // A reader gets the whole replay, in order, streamed as it drains.
      assert.deepStrictEqual(yield* readIds(streams[0]!, "e100"), Array.from({ length: 99 }, (_, i) => `e${i + 2}`))
      for (const stream of streams.slice(1)) yield* Effect.promise(() => stream.cancel())
      yield* awaitSubscribers(posts1, 0)
      assert.strictEqual(yield* hub.queuedBytes, 0)
    }).pipe(Effect.provide(memory({ maxFrameBytes: 128 * 1024 }))))

  it.scoped("frames are shared: replayed and live, every subscriber gets the same bytes, not a copy", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      for (let n = 1; n <= 3; n++) yield* realtime.publish(changed(n, { n }))
      const a = yield* Stream.toPull(realtime.subscribe(posts1, "e1"))
      const b = yield* Stream.toPull(realtime.subscribe(posts1, "e1"))
      yield* a
      yield* b
      const replayA = Chunk.toReadonlyArray(yield* a)
      const replayB = Chunk.toReadonlyArray(yield* b)
      assert.strictEqual(replayA.length, 2)
      replayA.forEach((frame, i) => assert.strictEqual(frame, replayB[i]))
      yield* realtime.publish(changed(4, { n: 4 }))
      const [liveA] = Chunk.toReadonlyArray(yield* a)
      const [liveB] = Chunk.toReadonlyArray(yield* b)
      assert.strictEqual(liveA, liveB)
      assert.deepStrictEqual(Sse.parse([liveA!]).map((e) => e.id), ["e4"])
    }).pipe(Effect.provide(memory())))

  it.effect("a client that stops reading holds at most maxQueuedBytes while 1 100 events of 64 KiB go by, and is released at the heartbeat", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const hub = yield* Hub.Hub
      const stalled = (yield* realtime.open(posts1)).toReadableStream()
      for (let n = 1; n <= 1100; n++) {
        yield* realtime.publish(changed(n, { body: kib(64) }))
        if (n % 100 === 0) assert.isAtMost(yield* hub.queuedBytes, 1024 * 1024)
      }
      assert.isAbove(yield* hub.queuedBytes, 1024 * 1024 - 2 * 65 * 1024)
      // Nothing taken over a whole interval while frames waited: ended, and its bytes dropped at once.
      yield* TestClock.adjust("30 seconds")
      yield* TestClock.adjust("30 seconds")
      yield* awaitSubscribers(posts1, 0)
      assert.strictEqual(yield* hub.queuedBytes, 0)
      const failed = yield* Effect.promise(() => new Response(stalled).text().then(() => false, () => true))
      assert.isTrue(failed)
    }).pipe(Effect.provide(memory({ maxFrameBytes: 128 * 1024 }))))

  it.effect("a client under maxQueuedBytes but over queueCapacity frames holds queueCapacity frames", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const hub = yield* Hub.Hub
      const stream = (yield* realtime.open(posts1)).toReadableStream()
      let frameBytes = 0
      const opening = yield* hub.queuedBytes
      for (let n = 1; n <= 100; n++) {
        yield* realtime.publish(changed(n, { n: 1000 + n }))
        if (n === 1) {
          yield* nextTurn
          frameBytes = (yield* hub.queuedBytes) - opening
        }
      }
      yield* nextTurn
      // The opening chunk plus 7 frames.
      const queued = yield* hub.queuedBytes
      assert.isAtMost(queued, opening + 7 * (frameBytes + 2))
      assert.isAtLeast(queued, opening + 7 * (frameBytes - 2))
      assert.deepStrictEqual(yield* readIds(stream, "e100"), Array.from({ length: 100 }, (_, i) => `e${i + 1}`))
    }).pipe(Effect.provide(memory({ queueCapacity: 8 }))))

  it.effect("records published once and never again cost nothing once their history ages out, on an idle server", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const buffer = yield* ReplayBuffer.ReplayBuffer
      for (let r = 0; r < 2000; r++) yield* realtime.publish(changed(1, { r }, `${r}`))
      const held = yield* buffer.stats
      // And the collection's history, which keeps the last 100 (`maxEvents`).
      assert.strictEqual(held.records, 2001)
      assert.strictEqual(held.entries, 2100)
      // No publish, no read: one timer expires them.
      yield* TestClock.adjust("1 hour")
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* buffer.stats, { records: 0, recordsWithHistory: 0, entries: 0, bytes: 0 })
    }).pipe(Effect.provide(memory())))

  it.effect("the history of records nobody watches stays within maxHistoryBytes", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const buffer = yield* ReplayBuffer.ReplayBuffer
      for (let n = 1; n <= 20; n++) {
        for (let r = 0; r < 50; r++) yield* realtime.publish(changed(n, { body: kib(64) }, `${r}`))
      }
      const stats = yield* buffer.stats
      assert.isAtMost(stats.bytes, 4 * 1024 * 1024)
      assert.isAbove(stats.bytes, 4 * 1024 * 1024 - 2 * 65 * 1024)
      // The most recently published record still replays.
      const stream = (yield* realtime.open(key("posts", "49"), "e19")).toReadableStream()
      assert.deepStrictEqual(yield* readIds(stream, "e20"), ["e20"])
    }).pipe(Effect.provide(memory({ maxFrameBytes: 128 * 1024, retention: { maxHistoryBytes: 4 * 1024 * 1024 } }))))

  it.effect("a record far over maxFrameBytes is refused without being encoded, and changes nothing", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const buffer = yield* ReplayBuffer.ReplayBuffer
      const huge = new Array<number>(5_000_000).fill(7)
      const stringify = JSON.stringify
      let calls = 0
      JSON.stringify = ((...args: Parameters<typeof stringify>) => {
        calls++
        return stringify(...args)
      }) as typeof stringify
      const error = yield* Effect.flip(realtime.publish(changed(1, huge))).pipe(
        Effect.ensuring(Effect.sync(() => {
          JSON.stringify = stringify
        }))
      )
      assert.strictEqual(error._tag, "FrameTooLarge")
      assert.strictEqual(calls, 0)
      assert.deepStrictEqual(yield* buffer.stats, { records: 0, recordsWithHistory: 0, entries: 0, bytes: 0 })
    }).pipe(Effect.provide(memory())))

  it.effect("one heartbeat for 1 000 active records: one tick reaches them all, none runs while idle", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const heartbeat = yield* Heartbeat.Heartbeat
      const streams: Array<ReadableStream<Uint8Array>> = []
      for (let r = 0; r < 1000; r++) streams.push((yield* realtime.open(key("posts", `${r}`))).toReadableStream())
      assert.strictEqual(yield* heartbeat.active, 1)
      const readers = streams.map((stream) => stream.getReader())
      // Each has its opening; the tick adds one keepalive to each.
      yield* Effect.promise(() => Promise.all(readers.map((reader) => reader.read())))
      yield* TestClock.adjust("30 seconds")
      const ticks = yield* Effect.promise(() => Promise.all(readers.map((reader) => reader.read())))
      assert.isTrue(ticks.every((chunk) => Sse.text(chunk.value!) === ":keepalive\n\n"))
      yield* Effect.promise(() => Promise.all(readers.map((reader) => reader.cancel())))
      const hub = yield* Hub.Hub
      // The cancellations settle within a bounded number of re-reads; a repeat that
      // runs out of tries returns the last value, so check what it returned.
      const subscribers = yield* Effect.repeat(hub.totalSubscribers, { until: (n) => n === 0, times: 10_000 })
      assert.strictEqual(subscribers, 0, "every cancelled stream unsubscribed")
      const active = yield* Effect.repeat(heartbeat.active, { until: (n) => n === 0, times: 10_000 })
      assert.strictEqual(active, 0, "the heartbeat stopped with its last subscriber")
      // Idle: nothing fires.
      yield* TestClock.adjust("10 minutes")
      assert.strictEqual(yield* heartbeat.active, 0)
    }).pipe(Effect.provide(memory())))

  it.effect("recheck runs on replayed events too: a resumed subscriber is not sent a record it may not see", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      yield* realtime.publish(changed(1, { visibility: "public" }))
      yield* realtime.publish(changed(2, { visibility: "public" }))
      yield* realtime.publish(changed(3, { visibility: "private", secret: "hunter2" }))
      const canSee = (event: { readonly type: string; readonly record?: unknown }) =>
        event.type === "deleted" || (event.record as { visibility?: string }).visibility === "public"
      const subscriber = yield* realtime.open(posts1, "e1", { canSee })
      const text = yield* Effect.promise(() => new Response(subscriber.toReadableStream()).text())
      assert.notInclude(text, "hunter2")
      assert.deepStrictEqual(Sse.parse(text).map((e) => [e.event, e.id]), [["changed", "e2"], ["saacms-revoked", undefined]])
      assert.strictEqual(Sse.parse(text)[1]!.data, "{\"reason\":\"forbidden\"}")
    }).pipe(Effect.provide(memory())))
})
