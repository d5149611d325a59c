/**
 * The Durable Object's storage driver and configuration, over an in-memory
 * stand-in for `state.storage`, so TestClock drives age retention (the
 * workerd tests cover the real storage, with real time).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as TestClock from "effect/TestClock"
import * as Storage from "../src/DurableObject/Storage.js"
import { SaacmsRealtimeDO } from "../src/index.js"
import * as RealtimeConfig from "../src/RealtimeConfig.js"
import * as ReplayBuffer from "../src/ReplayBuffer.js"
import { key } from "./utils/layers.js"
import { MemoryStorage } from "./utils/storage.js"

const record = key("posts", "1")
const frame = new Uint8Array([101, 10])

/** A buffer over `storage`, built as a woken object builds it (restoring first). */
const withBuffer = <A, E>(
  storage: MemoryStorage,
  options: RealtimeConfig.Options,
  f: (buffer: ReplayBuffer.ReplayBuffer["Type"]) => Effect.Effect<A, E>
) =>
  Effect.flatMap(ReplayBuffer.ReplayBuffer, f).pipe(
    Effect.provide(Storage.layerDurableObjectStorage(storage).pipe(Layer.provide(RealtimeConfig.layer(options))))
  )

const all = { maxBytes: Number.MAX_SAFE_INTEGER, maxFrames: Number.MAX_SAFE_INTEGER }

const append = (b: ReplayBuffer.ReplayBuffer["Type"], ids: ReadonlyArray<string>) =>
  Effect.forEach(ids, (id) => b.append(record, { id, frame }))

describe("ReplayBuffer over Durable Object storage", () => {
  it.effect("persists every event, and a woken object replays from storage and continues the sequence", () =>
    Effect.gen(function*() {
      const storage = new MemoryStorage()
      yield* withBuffer(storage, {}, (b) => append(b, ["e1", "e2", "e3"]))
      assert.deepStrictEqual(storage.ids(), ["e1", "e2", "e3"])
      yield* withBuffer(storage, {}, (b) =>
        Effect.gen(function*() {
          assert.deepStrictEqual(yield* b.since(record, "e1"), { _tag: "Replay", fromSeq: 1, lastSeq: 3 })
          const read = yield* b.read(record, 1, all)
          assert.deepStrictEqual(read._tag === "Entries" && read.entries.map((e) => [e.seq, e.id]), [[2, "e2"], [3, "e3"]])
          assert.deepStrictEqual(read._tag === "Entries" && [...read.entries[0]!.frame], [...frame])
          const next = yield* b.append(record, { id: "e4", frame })
          assert.strictEqual(next.seq, 4)
        }))
    }))

  it.effect("holds at most maxEvents in storage, and resyncs ids that fell out", () =>
    Effect.gen(function*() {
      const storage = new MemoryStorage()
      yield* withBuffer(storage, { retention: { maxEvents: 3 } }, (b) => append(b, ["e1", "e2", "e3", "e4", "e5"]))
      assert.deepStrictEqual(storage.ids(), ["e3", "e4", "e5"])
      const since = yield* withBuffer(storage, { retention: { maxEvents: 3 } }, (b) => b.since(record, "e2"))
      assert.deepStrictEqual(since, { _tag: "Resync", newestId: "e5", lastSeq: 5 })
    }))

  it.effect("a lowered maxEvents, and entries that do not decode, are deleted when the object wakes", () =>
    Effect.gen(function*() {
      const storage = new MemoryStorage()
      yield* withBuffer(storage, {}, (b) => append(b, ["e1", "e2", "e3", "e4"]))
      const [first] = [...storage.data.keys()].filter((k) => k.includes(":event:")).sort()
      storage.data.set(first!, { id: 42, frame: "not bytes" })
      const read = yield* withBuffer(storage, { retention: { maxEvents: 2 } }, (b) => b.read(record, 3, all))
      assert.deepStrictEqual(storage.ids(), ["e3", "e4"])
      assert.deepStrictEqual(read._tag === "Entries" && read.entries.map((e) => e.id), ["e4"])
    }))

  it.effect("holds at most maxHistoryBytes in storage (the newest always), and a lowered budget applies on wake", () =>
    Effect.gen(function*() {
      const storage = new MemoryStorage()
      const big = new Uint8Array(1000)
      yield* withBuffer(storage, { retention: { maxHistoryBytes: 4096 } }, (b) =>
        Effect.forEach(["e1", "e2", "e3", "e4", "e5", "e6"], (id) => b.append(record, { id, frame: big })))
      // 1 000 + 128 bytes each: 3 fit 4 096.
      assert.deepStrictEqual(storage.ids(), ["e4", "e5", "e6"])
      const stats = yield* withBuffer(storage, { retention: { maxHistoryBytes: 2048 } }, (b) => b.stats)
      assert.deepStrictEqual(storage.ids(), ["e6"])
      assert.deepStrictEqual(stats, { records: 1, recordsWithHistory: 1, entries: 1, bytes: 1000 })
    }))

  it.effect("sets an alarm for the oldest event's expiry; trimming then deletes it from storage and sets the next", () =>
    Effect.gen(function*() {
      const storage = new MemoryStorage()
      const options = { retention: { maxAgeMs: 60_000 } }
      yield* withBuffer(storage, options, (b) =>
        Effect.gen(function*() {
          yield* b.append(record, { id: "e1", frame })
          assert.strictEqual(storage.alarm, 60_001)
          yield* TestClock.adjust("30 seconds")
          yield* b.append(record, { id: "e2", frame })
          // The alarm stays on the oldest event.
          assert.strictEqual(storage.alarm, 60_001)
          yield* TestClock.adjust("31 seconds")
          // What the object's alarm handler runs.
          assert.strictEqual(yield* b.size(record), 1)
          assert.deepStrictEqual(storage.ids(), ["e2"])
          assert.strictEqual(storage.alarm, 90_001)
          yield* TestClock.adjust("30 seconds")
          assert.strictEqual(yield* b.size(record), 0)
          assert.deepStrictEqual(storage.ids(), [])
          // The newest id stays known: a client that saw it owes nothing.
          assert.deepStrictEqual(yield* b.since(record, "e2"), { _tag: "Replay", fromSeq: 2, lastSeq: 2 })
          assert.deepStrictEqual(yield* b.since(record, "e1"), { _tag: "Resync", newestId: "e2", lastSeq: 2 })
        }))
      // And after a restart too.
      const since = yield* withBuffer(storage, options, (b) => b.since(record, "e2"))
      assert.deepStrictEqual(since, { _tag: "Replay", fromSeq: 2, lastSeq: 2 })
    }))
})

describe("SaacmsRealtimeDO configuration", () => {
  const state = (storage: MemoryStorage) => ({
    id: { name: "posts:1" },
    storage,
    blockConcurrencyWhile: <T>(f: () => Promise<T>) => f()
  })
  const publishThree = (object: SaacmsRealtimeDO) =>
    Effect.promise(async () => {
      for (let n = 1; n <= 3; n++) {
        const body = JSON.stringify({ type: "changed", slug: "posts", id: "1", record: { n }, etag: `e${n}` })
        const response = await object.fetch(new Request("https://do/publish", { method: "POST", body }))
        assert.strictEqual(response.status, 204)
      }
    })

  it.live("takes retention from configure(options), and REALTIME_* variables over it", () =>
    Effect.gen(function*() {
      const Configured = SaacmsRealtimeDO.configure({ retention: { maxEvents: 1 } })
      const inCode = new MemoryStorage()
      yield* publishThree(new Configured(state(inCode), {}))
      assert.deepStrictEqual(inCode.ids(), ["e3"])
      const overridden = new MemoryStorage()
      yield* publishThree(new Configured(state(overridden), { REALTIME_MAX_EVENTS: "2", OTHER_BINDING: {} }))
      assert.deepStrictEqual(overridden.ids(), ["e2", "e3"])
      const defaults = new MemoryStorage()
      yield* publishThree(new SaacmsRealtimeDO(state(defaults), {}))
      assert.deepStrictEqual(defaults.ids(), ["e1", "e2", "e3"])
    }))

  it("configure rejects invalid options when the Worker starts", () => {
    assert.throws(() => SaacmsRealtimeDO.configure({ retention: { maxEvents: 0 } }))
  })

  it.live("an invalid REALTIME_* variable answers 500 with a bare JSON body", () =>
    Effect.gen(function*() {
      // The reason goes to the object's logger (here, the test's, so that its output stays results).
      const lines: Array<string> = []
      const Logged = SaacmsRealtimeDO.configure({ logger: Logger.make(({ logLevel, message }) => lines.push(`${logLevel.label} ${String(message)}`)) })
      for (const env of [{ REALTIME_MAX_EVENTS: "lots" }, { REALTIME_LOG_LEVEL: "Loud" }]) {
        const object = new Logged(state(new MemoryStorage()), env)
        const response = yield* Effect.promise(() => object.fetch(new Request("https://do/", { headers: { Accept: "text/event-stream" } })))
        assert.strictEqual(response.status, 500)
        assert.deepStrictEqual(yield* Effect.promise(() => response.json()), { error: "internal", message: "internal error" })
      }
      assert.deepStrictEqual(lines.map((line) => line.split(":")[0]), ["ERROR invalid REALTIME_* configuration", "ERROR invalid REALTIME_LOG_LEVEL"])
    }))

  it.live("the log level comes from REALTIME_LOG_LEVEL, over configure's", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => lines.push(`${logLevel.label} ${String(message)}`))
      const Quiet = SaacmsRealtimeDO.configure({ logLevel: "Warning", logger })
      const refuse = (object: SaacmsRealtimeDO) =>
        Effect.promise(() => object.fetch(new Request("https://do/", { method: "POST", body: "not json" })))
      assert.strictEqual((yield* refuse(new Quiet(state(new MemoryStorage()), {}))).status, 400)
      assert.deepStrictEqual(lines, [])
      assert.strictEqual((yield* refuse(new Quiet(state(new MemoryStorage()), { REALTIME_LOG_LEVEL: "Info" }))).status, 400)
      assert.deepStrictEqual(lines, ["INFO binding request refused"])
      assert.throws(() => SaacmsRealtimeDO.configure({ logLevel: "Loud" as "Info" }))
    }))
})
