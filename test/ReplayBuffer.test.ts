import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import * as Event from "../src/Event.js"
import * as RealtimeConfig from "../src/RealtimeConfig.js"
import * as ReplayBuffer from "../src/ReplayBuffer.js"

const key = Effect.runSync(Event.resourceKey("posts", "1"))
const other = Effect.runSync(Event.resourceKey("posts", "2"))
const frame = new Uint8Array([1])

const layer = (options: RealtimeConfig.Options = {}) =>
  ReplayBuffer.layerMemory.pipe(Layer.provide(RealtimeConfig.layer(options)))

const appendAll = (ids: ReadonlyArray<string>, k = key) =>
  Effect.flatMap(ReplayBuffer.ReplayBuffer, (buffer) => Effect.forEach(ids, (id) => buffer.append(k, { id, frame })))

const ids = (n: number, from = 1) => Array.from({ length: n }, (_, i) => `e${from + i}`)

describe("ReplayBuffer", () => {
  it.effect("numbers each record's events from 1, independently per record", () =>
    Effect.gen(function*() {
      const first = yield* appendAll(ids(3))
      const second = yield* appendAll(["x"], other)
      assert.deepStrictEqual(first.map((e) => e.seq), [1, 2, 3])
      assert.strictEqual(second[0]!.seq, 1)
    }).pipe(Effect.provide(layer())))

  it.effect("replays what came after the last id, in order", () =>
    Effect.gen(function*() {
      const buffer = yield* ReplayBuffer.ReplayBuffer
      yield* appendAll(ids(5))
      const since = yield* buffer.since(key, "e2")
      assert.strictEqual(since._tag, "Replay")
      assert.deepStrictEqual(since._tag === "Replay" && since.entries.map((e) => e.id), ["e3", "e4", "e5"])
      assert.strictEqual(since.lastSeq, 5)
      const newest = yield* buffer.since(key, "e5")
      assert.deepStrictEqual(newest, { _tag: "Replay", entries: [], lastSeq: 5 })
      assert.deepStrictEqual(yield* buffer.since(key, undefined), { _tag: "Replay", entries: [], lastSeq: 5 })
    }).pipe(Effect.provide(layer())))

  it.effect("a repeated id resolves to its most recent occurrence", () =>
    Effect.gen(function*() {
      const buffer = yield* ReplayBuffer.ReplayBuffer
      yield* appendAll(["a", "b", "a", "c"])
      const since = yield* buffer.since(key, "a")
      assert.deepStrictEqual(since._tag === "Replay" && since.entries.map((e) => e.seq), [4])
    }).pipe(Effect.provide(layer())))

  it.effect("unknown ids resync with the newest id", () =>
    Effect.gen(function*() {
      const buffer = yield* ReplayBuffer.ReplayBuffer
      yield* appendAll(ids(3))
      assert.deepStrictEqual(yield* buffer.since(key, "nope"), { _tag: "Resync", newestId: "e3", lastSeq: 3 })
      // A record nobody published to: the reference's fallback id, the current time.
      yield* TestClock.setTime(Date.UTC(2026, 0, 2, 3, 4, 5))
      assert.deepStrictEqual(yield* buffer.since(other, "nope"), {
        _tag: "Resync",
        newestId: "2026-01-02T03:04:05.000Z",
        lastSeq: 0
      })
    }).pipe(Effect.provide(layer())))

  it.effect("evicts by count (default 100)", () =>
    Effect.gen(function*() {
      const buffer = yield* ReplayBuffer.ReplayBuffer
      yield* appendAll(ids(150))
      assert.strictEqual(yield* buffer.size(key), 100)
      assert.strictEqual((yield* buffer.since(key, "e50"))._tag, "Resync")
      const since = yield* buffer.since(key, "e51")
      assert.deepStrictEqual(since._tag === "Replay" && since.entries.map((e) => e.id), ids(99, 52))
    }).pipe(Effect.provide(layer())))

  it.effect("evicts by count as configured", () =>
    Effect.gen(function*() {
      const buffer = yield* ReplayBuffer.ReplayBuffer
      yield* appendAll(ids(5))
      assert.strictEqual(yield* buffer.size(key), 3)
      assert.strictEqual((yield* buffer.since(key, "e2"))._tag, "Resync")
      const since = yield* buffer.since(key, "e3")
      assert.deepStrictEqual(since._tag === "Replay" && since.entries.map((e) => e.id), ["e4", "e5"])
    }).pipe(Effect.provide(layer({ retention: { maxEvents: 3 } }))))

  it.effect("evicts by age (default 1 hour), measured with the Clock", () =>
    Effect.gen(function*() {
      const buffer = yield* ReplayBuffer.ReplayBuffer
      yield* appendAll(["old"])
      yield* TestClock.adjust("40 minutes")
      yield* appendAll(["mid"])
      yield* TestClock.adjust("20 minutes")
      // "old" is exactly one hour old: still held.
      assert.strictEqual(yield* buffer.size(key), 2)
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* buffer.size(key), 1)
      assert.deepStrictEqual(yield* buffer.since(key, "before-old"), { _tag: "Resync", newestId: "mid", lastSeq: 2 })
      yield* TestClock.adjust("40 minutes")
      assert.strictEqual(yield* buffer.size(key), 0)
      // The newest event aged out, but a client that saw it missed nothing.
      assert.deepStrictEqual(yield* buffer.since(key, "mid"), { _tag: "Replay", entries: [], lastSeq: 2 })
      assert.strictEqual((yield* buffer.since(key, "old"))._tag, "Resync")
      // Sequence numbers carry on after the history emptied.
      const [next] = yield* appendAll(["new"])
      assert.strictEqual(next!.seq, 3)
    }).pipe(Effect.provide(layer())))

  it.effect("evicts by age as configured", () =>
    Effect.gen(function*() {
      const buffer = yield* ReplayBuffer.ReplayBuffer
      yield* appendAll(["a"])
      yield* TestClock.adjust("1001 millis")
      yield* appendAll(["b"])
      assert.strictEqual(yield* buffer.size(key), 1)
    }).pipe(Effect.provide(layer({ retention: { maxAgeMs: 1000 } }))))

  it.effect("records nobody touches age out as others are published (no timer)", () =>
    Effect.gen(function*() {
      const driver = ReplayBuffer.makeMemoryDriver(100)
      const buffer = yield* ReplayBuffer.make(driver)
      yield* buffer.append(key, { id: "a", frame })
      yield* buffer.append(other, { id: "b", frame })
      assert.strictEqual((yield* driver.entries(key)).length, 1)
      yield* TestClock.adjust("61 minutes")
      // Each append sweeps one record in turn: the next two reach both.
      yield* buffer.append(other, { id: "c", frame })
      yield* buffer.append(other, { id: "d", frame })
      assert.deepStrictEqual(yield* driver.entries(key), [])
      assert.deepStrictEqual((yield* driver.entries(other)).map((e) => e.id), ["c", "d"])
      // The record's newest id still resolves: a client that saw it missed nothing.
      assert.deepStrictEqual(yield* buffer.since(key, "a"), { _tag: "Replay", entries: [], lastSeq: 1 })
    }))
})
