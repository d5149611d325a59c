/**
 * The ReplayBuffer contract, run against every driver (memory, Durable Object
 * storage over an in-memory stand-in, and Redis), on TestClock; then what only the
 * in-memory buffer of a whole process does (many records, one budget, one timer).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import * as Storage from "../src/DurableObject/Storage.js"
import * as Event from "../src/Event.js"
import * as RealtimeConfig from "../src/RealtimeConfig.js"
import * as ReplayBuffer from "../src/ReplayBuffer.js"
import * as Redis from "./utils/redis.js"
import { MemoryStorage } from "./utils/storage.js"

const key = Effect.runSync(Event.resourceKey("posts", "1"))
const other = Effect.runSync(Event.resourceKey("posts", "2"))
const frame = new Uint8Array([1])
const bytes = (n: number) => new Uint8Array(n)
const all = { maxBytes: Number.MAX_SAFE_INTEGER, maxFrames: Number.MAX_SAFE_INTEGER }
const noLive: ReplayBuffer.Live = { publish: () => {}, reset: () => {}, resume: () => {}, end: () => {} }

const drivers: ReadonlyArray<readonly [string, (options: RealtimeConfig.Options) => Layer.Layer<ReplayBuffer.ReplayBuffer, RealtimeConfig.InvalidOptions>]> = [
  ["memory", (options) => ReplayBuffer.layerMemory.pipe(Layer.provide(RealtimeConfig.layer(options)))],
  ["durable object storage", (options) =>
    Layer.suspend(() => Storage.layerDurableObjectStorage(new MemoryStorage())).pipe(Layer.provide(RealtimeConfig.layer(options)))],
  ["redis", Redis.layer]
]

const appendAll = (ids: ReadonlyArray<string>, f: Uint8Array = frame) =>
  Effect.flatMap(ReplayBuffer.ReplayBuffer, (buffer) => Effect.forEach(ids, (id) => buffer.append(key, { id, frame: f })))

const ids = (n: number, from = 1) => Array.from({ length: n }, (_, i) => `e${from + i}`)

/** The ids a client at `lastEventId` is owed, read in one go (or "resync"). */
const owed = (lastEventId: string) =>
  Effect.gen(function*() {
    const buffer = yield* ReplayBuffer.ReplayBuffer
    const since = yield* buffer.since(key, lastEventId)
    if (since._tag === "Resync") return "resync"
    const read = yield* buffer.read(key, since.fromSeq, all)
    return read._tag === "Gone" ? "gone" : read.entries.map((e) => e.id)
  })

for (const [name, layer] of drivers) {
  describe(`ReplayBuffer driver contract: ${name}`, () => {
    it.effect("numbers a record's events from 1, densely", () =>
      Effect.gen(function*() {
        const first = yield* appendAll(ids(3))
        assert.deepStrictEqual(first.map((e) => e.seq), [1, 2, 3])
      }).pipe(Effect.provide(layer({}))))

    it.effect("a position and what follows it, in order; at the head, nothing", () =>
      Effect.gen(function*() {
        const buffer = yield* ReplayBuffer.ReplayBuffer
        yield* appendAll(ids(5))
        assert.deepStrictEqual(yield* buffer.since(key, "e2"), { _tag: "Replay", fromSeq: 2, lastSeq: 5 })
        assert.deepStrictEqual(yield* owed("e2"), ["e3", "e4", "e5"])
        assert.deepStrictEqual(yield* owed("e5"), [])
        assert.deepStrictEqual(yield* buffer.since(key, undefined), { _tag: "Replay", fromSeq: 5, lastSeq: 5 })
      }).pipe(Effect.provide(layer({}))))

    it.effect("a read returns at most maxBytes and maxFrames, but always one entry", () =>
      Effect.gen(function*() {
        const buffer = yield* ReplayBuffer.ReplayBuffer
        yield* appendAll(ids(10), bytes(100))
        const byBytes = yield* buffer.read(key, 0, { maxBytes: 250, maxFrames: 100 })
        assert.deepStrictEqual(byBytes._tag === "Entries" && byBytes.entries.map((e) => e.seq), [1, 2])
        const byFrames = yield* buffer.read(key, 2, { maxBytes: 10_000, maxFrames: 3 })
        assert.deepStrictEqual(byFrames._tag === "Entries" && byFrames.entries.map((e) => e.seq), [3, 4, 5])
        const tiny = yield* buffer.read(key, 5, { maxBytes: 1, maxFrames: 1 })
        assert.deepStrictEqual(tiny._tag === "Entries" && tiny.entries.map((e) => e.seq), [6])
        assert.strictEqual(tiny.lastSeq, 10)
      }).pipe(Effect.provide(layer({}))))

    it.effect("a repeated id resolves to its most recent occurrence", () =>
      Effect.gen(function*() {
        yield* appendAll(["a", "b", "a", "c"])
        assert.deepStrictEqual(yield* owed("a"), ["c"])
      }).pipe(Effect.provide(layer({}))))

    it.effect("unknown ids resync with the newest id; no history at all, with the current time", () =>
      Effect.gen(function*() {
        const buffer = yield* ReplayBuffer.ReplayBuffer
        yield* TestClock.setTime(Date.UTC(2026, 0, 2, 3, 4, 5))
        assert.deepStrictEqual(yield* buffer.since(key, "nope"), {
          _tag: "Resync",
          newestId: "2026-01-02T03:04:05.000Z",
          lastSeq: 0
        })
        yield* appendAll(ids(3))
        assert.deepStrictEqual(yield* buffer.since(key, "nope"), { _tag: "Resync", newestId: "e3", lastSeq: 3 })
      }).pipe(Effect.provide(layer({}))))

    it.effect("trims by count (default 100) as it appends; a read past the trim is Gone", () =>
      Effect.gen(function*() {
        const buffer = yield* ReplayBuffer.ReplayBuffer
        yield* appendAll(ids(150))
        assert.strictEqual(yield* buffer.size(key), 100)
        assert.strictEqual(yield* owed("e50"), "resync")
        assert.deepStrictEqual(yield* owed("e51"), ids(99, 52))
        assert.deepStrictEqual(yield* buffer.read(key, 10, all), { _tag: "Gone", newestId: "e150", lastSeq: 150 })
        assert.deepStrictEqual((yield* buffer.stats).entries, 100)
      }).pipe(Effect.provide(layer({}))))

    it.effect("trims by count as configured", () =>
      Effect.gen(function*() {
        const buffer = yield* ReplayBuffer.ReplayBuffer
        yield* appendAll(ids(5))
        assert.strictEqual(yield* buffer.size(key), 3)
        assert.deepStrictEqual(yield* owed("e3"), ["e4", "e5"])
      }).pipe(Effect.provide(layer({ retention: { maxEvents: 3 } }))))

    it.effect("trims by age (default 1 hour) on Clock; a followed record's head outlives its entries", () =>
      Effect.gen(function*() {
        const buffer = yield* ReplayBuffer.ReplayBuffer
        yield* buffer.retain(key, noLive)
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
        assert.deepStrictEqual(yield* buffer.since(key, "mid"), { _tag: "Replay", fromSeq: 2, lastSeq: 2 })
        assert.deepStrictEqual(yield* buffer.read(key, 1, all), { _tag: "Gone", newestId: "mid", lastSeq: 2 })
        // Sequence numbers carry on after the history emptied.
        const [next] = yield* appendAll(["new"])
        assert.strictEqual(next!.seq, 3)
        yield* buffer.release(key)
      }).pipe(Effect.provide(layer({}))))

    it.effect("trims by bytes: past maxHistoryBytes (each entry its frame + 128) the oldest go, the newest always stays", () =>
      Effect.gen(function*() {
        const buffer = yield* ReplayBuffer.ReplayBuffer
        yield* appendAll(ids(10), bytes(1000))
        // 3 × 1 128 fits 4 096; 4 × 1 128 does not.
        assert.deepStrictEqual(yield* buffer.stats, { records: 1, recordsWithHistory: 1, entries: 3, bytes: 3000 })
        assert.deepStrictEqual(yield* owed("e8"), ["e9", "e10"])
        assert.strictEqual(yield* owed("e7"), "resync")
        // One event larger than the whole budget is still held, alone.
        yield* appendAll(["big"], bytes(10_000))
        assert.deepStrictEqual(yield* buffer.stats, { records: 1, recordsWithHistory: 1, entries: 1, bytes: 10_000 })
        assert.deepStrictEqual(yield* owed("big"), [])
        assert.strictEqual(yield* owed("e10"), "resync")
      }).pipe(Effect.provide(layer({ retention: { maxHistoryBytes: 4096 } }))))

    it.effect("trims by bytes when many tiny frames would pass the budget by their count", () =>
      Effect.gen(function*() {
        const buffer = yield* ReplayBuffer.ReplayBuffer
        yield* appendAll(ids(100), bytes(1))
        // 1 + 128 bytes each: 31 entries fit 4 096.
        assert.deepStrictEqual(yield* buffer.stats, { records: 1, recordsWithHistory: 1, entries: 31, bytes: 31 })
      }).pipe(Effect.provide(layer({ retention: { maxHistoryBytes: 4096 } }))))

    it.effect("an id that is not valid for the record is still only a position (no other record's data)", () =>
      Effect.gen(function*() {
        yield* appendAll(ids(3))
        assert.strictEqual(yield* owed("e4"), "resync")
      }).pipe(Effect.provide(layer({}))))
  })
}

const memory = (options: RealtimeConfig.Options = {}) =>
  ReplayBuffer.layerMemory.pipe(Layer.provide(RealtimeConfig.layer(options)))

describe("ReplayBuffer in memory: many records, one budget, one timer", () => {
  it.effect("numbers each record's events independently", () =>
    Effect.gen(function*() {
      const buffer = yield* ReplayBuffer.ReplayBuffer
      yield* buffer.append(key, { id: "a", frame })
      yield* buffer.append(key, { id: "b", frame })
      assert.strictEqual((yield* buffer.append(other, { id: "x", frame })).seq, 1)
    }).pipe(Effect.provide(memory())))

  it.effect("an idle process frees history as it ages, with no publish and no read", () =>
    Effect.gen(function*() {
      const buffer = yield* ReplayBuffer.ReplayBuffer
      for (let r = 0; r < 300; r++) {
        const k = Effect.runSync(Event.resourceKey("posts", `${r}`))
        yield* buffer.append(k, { id: "e1", frame: bytes(1024) })
        yield* TestClock.adjust("1 second")
      }
      assert.deepStrictEqual(yield* buffer.stats, { records: 300, recordsWithHistory: 300, entries: 300, bytes: 300 * 1024 })
      // The first 100 records' events are past their hour 200 seconds before the last's.
      yield* TestClock.adjust("3400 seconds")
      assert.deepStrictEqual(yield* buffer.stats, { records: 200, recordsWithHistory: 200, entries: 200, bytes: 200 * 1024 })
      yield* TestClock.adjust("200 seconds")
      assert.deepStrictEqual(yield* buffer.stats, { records: 0, recordsWithHistory: 0, entries: 0, bytes: 0 })
    }).pipe(Effect.provide(memory())))

  it.effect("a record with no history and no subscriber costs nothing; a followed one keeps its sequence", () =>
    Effect.gen(function*() {
      const buffer = yield* ReplayBuffer.ReplayBuffer
      yield* buffer.append(key, { id: "a", frame })
      yield* buffer.retain(other, noLive)
      yield* buffer.append(other, { id: "x", frame })
      yield* TestClock.adjust("61 minutes")
      assert.deepStrictEqual(yield* buffer.stats, { records: 1, recordsWithHistory: 0, entries: 0, bytes: 0 })
      // Forgotten: a client with its last id resyncs, and numbering starts again.
      assert.strictEqual((yield* buffer.since(key, "a"))._tag, "Resync")
      assert.strictEqual((yield* buffer.append(key, { id: "b", frame })).seq, 1)
      // Followed: its subscribers keep counting from where they are.
      assert.strictEqual((yield* buffer.append(other, { id: "y", frame })).seq, 2)
      yield* buffer.release(other)
      yield* TestClock.adjust("61 minutes")
      assert.deepStrictEqual(yield* buffer.stats, { records: 0, recordsWithHistory: 0, entries: 0, bytes: 0 })
    }).pipe(Effect.provide(memory())))

  it.effect("past maxHistoryBytes, the records published least recently lose their history first", () =>
    Effect.gen(function*() {
      const buffer = yield* ReplayBuffer.ReplayBuffer
      const [a, b, c] = ["a", "b", "c"].map((id) => Effect.runSync(Event.resourceKey("posts", id))) as [Event.ResourceKey, Event.ResourceKey, Event.ResourceKey]
      yield* buffer.append(a, { id: "a1", frame: bytes(1000) })
      yield* buffer.append(b, { id: "b1", frame: bytes(1000) })
      yield* buffer.append(c, { id: "c1", frame: bytes(1000) })
      yield* buffer.append(a, { id: "a2", frame: bytes(1000) })
      assert.deepStrictEqual([yield* buffer.size(a), yield* buffer.size(b), yield* buffer.size(c)], [2, 0, 1])
      assert.strictEqual((yield* buffer.since(b, "b1"))._tag, "Resync")
      assert.deepStrictEqual(yield* buffer.stats, { records: 2, recordsWithHistory: 2, entries: 3, bytes: 3000 })
    }).pipe(Effect.provide(memory({ retention: { maxHistoryBytes: 3500 } }))))

  it.effect("200 records x 100 events of 64 KiB stay within maxHistoryBytes", () =>
    Effect.gen(function*() {
      const buffer = yield* ReplayBuffer.ReplayBuffer
      const keys = Array.from({ length: 200 }, (_, r) => Effect.runSync(Event.resourceKey("posts", `${r}`)))
      const frame64k = bytes(64 * 1024)
      for (let round = 0; round < 100; round++) {
        for (const k of keys) yield* buffer.append(k, { id: `e${round}`, frame: frame64k })
      }
      const stats = yield* buffer.stats
      // 64 KiB + 128 bytes each: 127 entries fit 8 MiB, one per record.
      assert.strictEqual(stats.entries, 127)
      assert.strictEqual(stats.bytes, 127 * 64 * 1024)
      assert.strictEqual(stats.records, 127)
    }).pipe(Effect.provide(memory({ retention: { maxHistoryBytes: 8 * 1024 * 1024 } }))))

  it.effect("past maxRecords, the record published least recently loses its history", () =>
    Effect.gen(function*() {
      const buffer = yield* ReplayBuffer.ReplayBuffer
      for (let r = 0; r < 5; r++) {
        yield* buffer.append(Effect.runSync(Event.resourceKey("posts", `${r}`)), { id: "e", frame })
      }
      assert.deepStrictEqual(yield* buffer.stats, { records: 3, recordsWithHistory: 3, entries: 3, bytes: 3 })
      assert.strictEqual(yield* buffer.size(Effect.runSync(Event.resourceKey("posts", "1"))), 0)
      assert.strictEqual(yield* buffer.size(Effect.runSync(Event.resourceKey("posts", "4"))), 1)
    }).pipe(Effect.provide(memory({ retention: { maxRecords: 3 } }))))
})
