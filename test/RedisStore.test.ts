/**
 * The Redis store as Redis sees it: the key layout, exact trimming (count, age,
 * bytes), TTLs, the message each append publishes, a lost meta, hand-written
 * garbage, and a Redis that cannot be reached. The ReplayBuffer contract itself
 * runs against Redis in ReplayBuffer.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as TestClock from "effect/TestClock"
import { Redis } from "ioredis"
import * as Event from "../src/Event.js"
import * as Store from "../src/Redis/Store.js"
import * as RedisTest from "./utils/redis.js"

const key = Effect.runSync(Event.resourceKey("posts", "1"))
const other = Effect.runSync(Event.resourceKey("posts", "2"))
const all = { maxBytes: Number.MAX_SAFE_INTEGER, maxFrames: Number.MAX_SAFE_INTEGER }
const hour = 3_600_000

const keysOf = (prefix: string, k: string = key) => {
  const tag = `{${prefix}${k}}`
  return { meta: `${tag}:m`, stream: `${tag}:s`, ids: `${tag}:i`, channel: `${tag}:c` }
}

const call = <A>(f: () => Promise<A>) => Effect.promise(f)

/** The stream's entry ids, oldest first. */
const streamIds = (client: Redis, stream: string) => call(() => client.xrange(stream, "-", "+")).pipe(Effect.map((entries) => entries.map(([id]) => id)))

const appendAll = (store: Store.Store, ids: ReadonlyArray<string>, now: number, frame = new Uint8Array([1])) =>
  Effect.forEach(ids, (id) => store.append(key, id, frame, now))

const seqs = (read: Effect.Effect.Success<ReturnType<Store.Store["read"]>>) =>
  read._tag === "Entries" ? read.entries.map((e) => e.seq) : read._tag

describe("Redis store", () => {
  it.scoped("keeps a record under one hash tag: a Stream numbered <seq>-0, a meta hash, an ids hash, a channel", () =>
    Effect.gen(function*() {
      const { client, keyPrefix, store } = yield* RedisTest.store()
      const k = keysOf(keyPrefix)
      const { entry, epoch } = yield* store.append(key, "e1", new Uint8Array([1, 2, 3]), 5000)
      assert.deepStrictEqual(entry, { seq: 1, id: "e1", frame: new Uint8Array([1, 2, 3]), at: 5000 })
      assert.match(epoch, /^[0-9a-f]{16}$/)
      assert.strictEqual(store.channel(key), k.channel)
      const [, keys] = yield* call(() => client.scan("0", "MATCH", `{${keyPrefix}*`, "COUNT", 1000))
      assert.deepStrictEqual(keys.sort(), [k.ids, k.meta, k.stream])
      assert.deepStrictEqual(yield* call(() => client.hgetall(k.meta)), { epoch, seq: "1", head: "e1", bytes: "3", at: "5000" })
      assert.deepStrictEqual(yield* call(() => client.xrange(k.stream, "-", "+")), [["1-0", ["id", "e1", "frame", "\x01\x02\x03", "at", "5000"]]])
      assert.deepStrictEqual(yield* call(() => client.hgetall(k.ids)), { e1: "1" })
    }))

  it.scoped("trims by count exactly; an id's field goes only with its most recent occurrence; TTLs are set", () =>
    Effect.gen(function*() {
      const { client, keyPrefix, store } = yield* RedisTest.store({ maxEvents: 3, metaTtlMs: 2 * hour })
      const k = keysOf(keyPrefix)
      yield* appendAll(store, ["a", "b", "a", "c", "d"], 1000)
      assert.strictEqual(yield* call(() => client.xlen(k.stream)), 3)
      assert.deepStrictEqual(yield* streamIds(client, k.stream), ["3-0", "4-0", "5-0"])
      // "a" at 1 was trimmed, but its field points at 3, which is held.
      assert.deepStrictEqual(yield* call(() => client.hgetall(k.ids)), { a: "3", c: "4", d: "5" })
      assert.deepStrictEqual(yield* call(() => client.hmget(k.meta, "seq", "head", "bytes")), ["5", "d", "3"])
      for (const stream of [k.stream, k.ids]) {
        const ttl = yield* call(() => client.pttl(stream))
        assert.isTrue(ttl > hour && ttl <= hour + 60_000, `${stream}: ${ttl}`)
      }
      const metaTtl = yield* call(() => client.pttl(k.meta))
      assert.isTrue(metaTtl > 2 * hour - 60_000 && metaTtl <= 2 * hour, `meta: ${metaTtl}`)
    }))

  it.scoped("trims by age exactly, on the caller's clock; what aged out is not held before the next append trims it", () =>
    Effect.gen(function*() {
      const { client, keyPrefix, store } = yield* RedisTest.store({ maxAgeMs: 1000 })
      const k = keysOf(keyPrefix)
      yield* store.append(key, "e1", new Uint8Array([1]), 0)
      yield* store.append(key, "e2", new Uint8Array([2]), 500)
      // e1 is exactly 1000 ms old: still held.
      yield* store.append(key, "e3", new Uint8Array([3]), 1000)
      assert.deepStrictEqual(yield* streamIds(client, k.stream), ["1-0", "2-0", "3-0"])
      yield* store.append(key, "e4", new Uint8Array([4]), 1501)
      assert.deepStrictEqual(yield* streamIds(client, k.stream), ["3-0", "4-0"])
      assert.deepStrictEqual(yield* call(() => client.hgetall(k.ids)), { e3: "3", e4: "4" })
      assert.strictEqual(yield* call(() => client.hget(k.meta, "bytes")), "2")
      // No append at 2001: e3 (1000) is stored but aged out.
      assert.strictEqual(yield* call(() => client.xlen(k.stream)), 2)
      assert.strictEqual(yield* store.size(key, 2001), 1)
      assert.strictEqual(seqs(yield* store.read(key, 2, all, 2001)), "Gone")
      assert.deepStrictEqual(seqs(yield* store.read(key, 3, all, 2001)), [4])
      assert.strictEqual((yield* store.position(key, "e3", 2001)).position._tag, "Unknown")
      assert.deepStrictEqual((yield* store.position(key, "e4", 2001)).position, { _tag: "At", seq: 4 })
      // Past every entry's age, the head still resolves.
      assert.strictEqual(yield* store.size(key, 5000), 0)
      assert.deepStrictEqual((yield* store.position(key, "e4", 5000)).position, { _tag: "At", seq: 4 })
      // Many entries age out in one append.
      yield* appendAll(store, Array.from({ length: 150 }, (_, i) => `m${i}`), 10_000)
      assert.strictEqual(yield* call(() => client.xlen(k.stream)), 100)
      yield* store.append(key, "last", new Uint8Array([9]), 20_000)
      assert.deepStrictEqual(yield* streamIds(client, k.stream), ["155-0"])
      assert.deepStrictEqual(yield* call(() => client.hgetall(k.ids)), { last: "155" })
      assert.strictEqual(yield* call(() => client.hget(k.meta, "bytes")), "1")
    }))

  it.scoped("an entry's time never goes back (another instance's clock may lag)", () =>
    Effect.gen(function*() {
      const { store } = yield* RedisTest.store()
      yield* store.append(key, "e1", new Uint8Array([1]), 2000)
      const { entry } = yield* store.append(key, "e2", new Uint8Array([2]), 1500)
      assert.strictEqual(entry.at, 2000)
    }))

  it.scoped("trims by bytes per record, the newest always kept", () =>
    Effect.gen(function*() {
      const { client, keyPrefix, store } = yield* RedisTest.store({ maxHistoryBytes: 2500 })
      const k = keysOf(keyPrefix)
      yield* appendAll(store, ["e1", "e2", "e3", "e4"], 0, new Uint8Array(1000))
      assert.deepStrictEqual(yield* streamIds(client, k.stream), ["3-0", "4-0"])
      yield* store.append(key, "big", new Uint8Array(5000), 0)
      assert.deepStrictEqual(yield* streamIds(client, k.stream), ["5-0"])
      assert.strictEqual(yield* call(() => client.hget(k.meta, "bytes")), "5000")
      assert.deepStrictEqual(yield* call(() => client.hgetall(k.ids)), { big: "5" })
    }))

  it.scoped("frames come back byte for byte, large ones too", () =>
    Effect.gen(function*() {
      const { store } = yield* RedisTest.store()
      const small = new Uint8Array([0, 10, 13, 255, 0x80, 0x22])
      const large = crypto.getRandomValues(new Uint8Array(60_000))
      const larger = Uint8Array.from({ length: 300_000 }, (_, i) => i % 251)
      yield* store.append(key, "a", small, 0)
      yield* store.append(key, "b", large, 0)
      yield* store.append(key, "c", larger, 0)
      const read = yield* store.read(key, 0, all, 0)
      assert.strictEqual(read._tag, "Entries")
      if (read._tag !== "Entries") return
      assert.deepStrictEqual(read.entries.map((e) => e.frame), [small, large, larger])
      assert.strictEqual(Object.getPrototypeOf(read.entries[0]!.frame), Uint8Array.prototype)
    }))

  it.scoped("each append publishes one message that decodes to its epoch, seq, id and frame", () =>
    Effect.gen(function*() {
      const { store } = yield* RedisTest.store()
      const subscriber = yield* RedisTest.connect()
      const messages = yield* Queue.unbounded<Buffer>()
      subscriber.on("messageBuffer", (_channel: Buffer, message: Buffer) => Queue.unsafeOffer(messages, message))
      yield* call(() => subscriber.subscribe(store.channel(key)))
      const frames = [new Uint8Array([0, 10, 13, 255]), Uint8Array.from({ length: 100_000 }, (_, i) => (i * 7) % 256)]
      const ids = ["é ✓ 1\u{1F600}", ""]
      const sent = yield* Effect.forEach([0, 1], (i) => store.append(key, ids[i]!, frames[i]!, 0))
      for (const { entry, epoch } of sent) {
        const decoded = store.decodeMessage(yield* Queue.take(messages))
        assert.deepStrictEqual(decoded, { epoch, seq: entry.seq, id: entry.id, frame: entry.frame })
      }
      assert.strictEqual(sent[0]!.epoch, sent[1]!.epoch)
    }))

  it("decodeMessage refuses what is not a message", () => {
    const encode = (s: string) => new TextEncoder().encode(s)
    const good = encode("saacms1 0a1b 7 2\nidFRAME")
    assert.deepStrictEqual(Store.decodeMessage(good), { epoch: "0a1b", seq: 7, id: "id", frame: encode("FRAME") })
    assert.deepStrictEqual(Store.decodeMessage(encode("saacms1 0a1b 7 0\n")), { epoch: "0a1b", seq: 7, id: "", frame: new Uint8Array() })
    for (
      const bad of [
        "",
        "saacms1 0a1b 7 2",
        "saacms2 0a1b 7 2\nidFRAME",
        "saacms1 xyz 7 2\nidFRAME",
        "saacms1 0a1b 0 2\nidFRAME",
        "saacms1 0a1b 07 2\nidFRAME",
        "saacms1 0a1b -7 2\nidFRAME",
        "saacms1 0a1b 7 9\nid",
        "saacms1 0a1b 7 2 \nidFRAME",
        "saacms1 0a1b 99999999999999999 2\nidFRAME",
        `saacms1 ${"a".repeat(200)} 7 2\nidFRAME`
      ]
    ) assert.isUndefined(Store.decodeMessage(encode(bad)), bad)
    assert.isUndefined(Store.decodeMessage(Uint8Array.from([...encode("saacms1 aa 1 1\n"), 0xff])))
  })

  it.scoped("a lost meta (a flushed Redis) starts a new epoch at seq 1; a read after the old seq is Gone", () =>
    Effect.gen(function*() {
      const { client, keyPrefix, store } = yield* RedisTest.store()
      const k = keysOf(keyPrefix)
      const [first] = yield* appendAll(store, ["e1", "e2", "e3"], 0)
      yield* call(() => client.del(k.meta, k.stream, k.ids))
      assert.isUndefined(yield* store.head(key))
      assert.strictEqual(yield* store.headSeq(key, 0), 0)
      assert.deepStrictEqual(yield* store.read(key, 3, all, 0), { _tag: "Gone", newestId: "", lastSeq: 0, epoch: undefined })
      const { entry, epoch } = yield* store.append(key, "x1", new Uint8Array([1]), 0)
      assert.strictEqual(entry.seq, 1)
      assert.notStrictEqual(epoch, first!.epoch)
      assert.deepStrictEqual(yield* store.head(key), { epoch, seq: 1, id: "x1" })
      assert.deepStrictEqual(yield* store.read(key, 3, all, 0), { _tag: "Gone", newestId: "x1", lastSeq: 1, epoch })
      assert.deepStrictEqual(yield* store.position(key, "e3", 0), { position: { _tag: "Unknown" }, headSeq: 1, headId: "x1", epoch })
      // Only the meta lost: the stale Stream and ids go with it.
      yield* appendAll(store, ["x2", "x3"], 0)
      yield* call(() => client.del(k.meta))
      const again = yield* store.append(key, "y1", new Uint8Array([1]), 0)
      assert.strictEqual(again.entry.seq, 1)
      assert.notStrictEqual(again.epoch, epoch)
      assert.deepStrictEqual(yield* streamIds(client, k.stream), ["1-0"])
      assert.deepStrictEqual(yield* call(() => client.hgetall(k.ids)), { y1: "1" })
    }))

  it.scoped("entries, ids and metas written by hand that do not parse are not held", () =>
    Effect.gen(function*() {
      const { client, keyPrefix, store } = yield* RedisTest.store()
      const k = keysOf(keyPrefix)
      yield* appendAll(store, ["e1", "e2", "e3"], 0)
      // An entry whose time does not parse: a hole at 4.
      yield* call(() => client.xadd(k.stream, "4-0", "id", "e4", "frame", "x", "at", "soon"))
      yield* call(() => client.hset(k.meta, "seq", "4", "head", "e4"))
      assert.deepStrictEqual(seqs(yield* store.read(key, 0, all, 0)), [1, 2, 3])
      assert.deepStrictEqual(yield* store.read(key, 3, all, 0), { _tag: "Gone", newestId: "e4", lastSeq: 4, epoch: (yield* store.head(key))!.epoch })
      yield* store.append(key, "e5", new Uint8Array([5]), 0)
      assert.deepStrictEqual(seqs(yield* store.read(key, 4, all, 0)), [5])
      // An id that is not UTF-8, and one with a field missing.
      yield* call(() => client.xadd(k.stream, "6-0", "id", Buffer.from([0xff]), "frame", "x", "at", "0"))
      yield* call(() => client.xadd(k.stream, "7-0", "id", "e7", "at", "0"))
      yield* call(() => client.hset(k.meta, "seq", "7", "head", "e7"))
      assert.strictEqual(seqs(yield* store.read(key, 5, all, 0)), "Gone")
      assert.strictEqual(seqs(yield* store.read(key, 6, all, 0)), "Gone")
      assert.deepStrictEqual(seqs(yield* store.read(key, 4, all, 0)), [5])
      // An ids field pointing at another id's entry, or past the head.
      yield* call(() => client.hset(k.ids, "e1", "3", "e2", "999"))
      assert.strictEqual((yield* store.position(key, "e1", 0)).position._tag, "Unknown")
      assert.strictEqual((yield* store.position(key, "e2", 0)).position._tag, "Unknown")
      assert.deepStrictEqual((yield* store.position(key, "e3", 0)).position, { _tag: "At", seq: 3 })
      // A malformed entry at the front goes with the next append's trim.
      yield* call(() => client.xtrim(k.stream, "MINID", 4))
      assert.strictEqual(yield* store.size(key, 0), 3)
      yield* store.append(key, "e8", new Uint8Array([8]), 0)
      assert.deepStrictEqual(yield* streamIds(client, k.stream), ["5-0", "6-0", "7-0", "8-0"])
      // A Stream of the wrong type is not history; the next append replaces it.
      yield* call(() => client.set(k.stream, "garbage"))
      assert.deepStrictEqual(seqs(yield* store.read(key, 0, all, 0)), "Gone")
      assert.strictEqual(yield* store.size(key, 0), 0)
      yield* store.append(key, "e9", new Uint8Array([9]), 0)
      assert.deepStrictEqual(seqs(yield* store.read(key, 8, all, 0)), [9])
      assert.strictEqual(yield* call(() => client.hget(k.meta, "bytes")), "1")
      // A meta that does not parse is missing: a new epoch.
      const { epoch } = (yield* store.head(key))!
      yield* call(() => client.hset(k.meta, "seq", "nine"))
      assert.isUndefined(yield* store.head(key))
      assert.deepStrictEqual(yield* store.read(key, 0, all, 0), { _tag: "Entries", entries: [], lastSeq: 0, epoch: undefined })
      const next = yield* store.append(key, "f1", new Uint8Array([1]), 0)
      assert.strictEqual(next.entry.seq, 1)
      assert.notStrictEqual(next.epoch, epoch)
      assert.deepStrictEqual(yield* streamIds(client, k.stream), ["1-0"])
    }))

  it.scoped("stats sum the records under the prefix, aged on Clock", () =>
    Effect.gen(function*() {
      const { store } = yield* RedisTest.store({ maxAgeMs: 1000 })
      const { store: elsewhere } = yield* RedisTest.store()
      yield* elsewhere.append(key, "z", new Uint8Array(7), 0)
      assert.deepStrictEqual(yield* store.stats, { records: 0, recordsWithHistory: 0, entries: 0, bytes: 0 })
      yield* appendAll(store, ["a", "b"], 0, new Uint8Array(10))
      yield* store.append(other, "x", new Uint8Array(5), 500)
      assert.deepStrictEqual(yield* store.stats, { records: 2, recordsWithHistory: 2, entries: 3, bytes: 25 })
      yield* TestClock.adjust("1001 millis")
      assert.deepStrictEqual(yield* store.stats, { records: 2, recordsWithHistory: 1, entries: 1, bytes: 5 })
      yield* TestClock.adjust("500 millis")
      assert.deepStrictEqual(yield* store.stats, { records: 2, recordsWithHistory: 0, entries: 0, bytes: 0 })
    }))

  it.scoped("falls back to EVAL when Redis does not have the script (NOSCRIPT)", () =>
    Effect.gen(function*() {
      const { client, keyPrefix } = yield* RedisTest.store()
      const sent: Array<string> = []
      const forgetful = new Proxy(client, {
        get: (target, property, receiver) =>
          property === "callBuffer"
            ? (command: string, args: Array<string | Buffer | number>) => {
              sent.push(command)
              return command === "EVALSHA"
                ? Promise.reject(new Error("NOSCRIPT No matching script. Please use EVAL."))
                : target.callBuffer(command, args)
            }
            : Reflect.get(target, property, receiver)
      })
      const store = Store.make(forgetful, { keyPrefix, maxEvents: 10, maxAgeMs: hour, maxHistoryBytes: 1 << 20 })
      assert.strictEqual((yield* store.append(key, "e1", new Uint8Array([1]), 0)).entry.seq, 1)
      assert.deepStrictEqual(seqs(yield* store.read(key, 0, all, 0)), [1])
      assert.deepStrictEqual(sent, ["EVALSHA", "EVAL", "EVALSHA", "EVAL"])
    }))

  const everyOperation = (store: Store.Store) =>
    Effect.all([
      Effect.flip(store.append(key, "e1", new Uint8Array([1]), 0)),
      Effect.flip(store.position(key, "e1", 0)),
      Effect.flip(store.read(key, 0, all, 0)),
      Effect.flip(store.headSeq(key, 0)),
      Effect.flip(store.head(key)),
      Effect.flip(store.size(key, 0)),
      Effect.flip(store.stats)
    ])

  it.scoped("a Redis that cannot be reached fails every operation with Unavailable, at once", () =>
    Effect.gen(function*() {
      const client = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const dead = new Redis({ host: "127.0.0.1", port: 1, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
          dead.on("error", () => {})
          return dead
        }),
        (dead) => Effect.sync(() => dead.disconnect())
      )
      const store = Store.make(client, { keyPrefix: RedisTest.newPrefix(), maxEvents: 10, maxAgeMs: hour, maxHistoryBytes: 1 << 20 })
      const started = performance.now()
      const errors = yield* everyOperation(store)
      assert.isBelow(performance.now() - started, 2000)
      assert.deepStrictEqual(errors.map((e) => e._tag), Array.from({ length: 7 }, () => "Unavailable"))
    }))

  it.scoped("a closed client fails every operation with Unavailable, at once", () =>
    Effect.gen(function*() {
      const client = yield* RedisTest.connect()
      yield* call(() => client.quit())
      const store = Store.make(client, { keyPrefix: RedisTest.newPrefix(), maxEvents: 10, maxAgeMs: hour, maxHistoryBytes: 1 << 20 })
      const started = performance.now()
      const errors = yield* everyOperation(store)
      assert.isBelow(performance.now() - started, 2000)
      assert.deepStrictEqual(errors.map((e) => e._tag), Array.from({ length: 7 }, () => "Unavailable"))
      assert.match(errors[0]!.reason, /Connection is closed/)
    }))
})
