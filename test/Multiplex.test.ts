/**
 * One stream, many topics (`Realtime.openMany`): frames that name their
 * record, the cursor, the handshake, exact resume per topic from any cursor
 * (in memory and over Redis), per-topic resync, forged cursors, and per-topic
 * access (denial, expiry, recheck).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import fc from "fast-check"
import * as Frame from "../src/Frame.js"
import * as Hub from "../src/Hub.js"
import * as Multiplex from "../src/Multiplex.js"
import * as Realtime from "../src/Realtime.js"
import * as RealtimeConfig from "../src/RealtimeConfig.js"
import * as Redis from "../src/Redis.js"
import { memory, nextTurn } from "./utils/layers.js"
import * as RedisTest from "./utils/redis.js"
import * as Sse from "./utils/sse.js"

const decoder = new TextDecoder()

const topicsOf = (...inputs: Array<string>) => Either.getOrThrow(Multiplex.parseTopics(inputs, 100))

const requests = (...inputs: Array<string>): Array<Realtime.TopicRequest> => topicsOf(...inputs).map((topic) => ({ topic }))

interface Collected {
  readonly events: () => Array<Sse.SseEvent>
  readonly ended: () => boolean
  /** The `:keepalive` comments received so far. */
  readonly keepalives: () => number
}

// Read a subscriber's web stream in the background; its events so far on demand.
const collect = (subscriber: Realtime.Subscriber) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const reader = subscriber.toReadableStream().getReader()
      let text = ""
      let ended = false
      void (async () => {
        for (;;) {
          const read = await reader.read().catch(() => ({ done: true as const, value: undefined }))
          if (read.done) {
            ended = true
            return
          }
          text += decoder.decode(read.value)
        }
      })()
      const collected: Collected & { readonly reader: typeof reader } = {
        reader,
        events: () => Sse.parse(text),
        ended: () => ended,
        keepalives: () => text.split(":keepalive\n").length - 1
      }
      return collected
    }),
    (collected) => Effect.promise(() => collected.reader.cancel().catch(() => undefined))
  )

const settle = Effect.zipRight(nextTurn, nextTurn)

// Wait (turns of the event loop, no clock) until `f` holds.
const until = (f: () => boolean, what: string | (() => string)) =>
  Effect.gen(function*() {
    for (let i = 0; i < 2_000; i++) {
      if (f()) return
      yield* nextTurn
    }
    return yield* Effect.dieMessage(`never: ${typeof what === "string" ? what : what()}`)
  })

interface Named {
  readonly topic: string
  readonly collection: string
  readonly id: string
  readonly etag?: string
  readonly record?: unknown
}

const recordEvents = (events: ReadonlyArray<Sse.SseEvent>) =>
  events.filter((event) => event.event === "changed" || event.event === "deleted" || event.event === "snapshot")

const welcomeOf = (events: ReadonlyArray<Sse.SseEvent>) => {
  const welcome = events.find((event) => event.event === "saacms-welcome")
  assert.isDefined(welcome)
  return JSON.parse(welcome!.data) as { topics: Array<{ topic: string; status: string }> }
}

const statuses = (events: ReadonlyArray<Sse.SseEvent>) =>
  Object.fromEntries(welcomeOf(events).topics.map(({ status, topic }) => [topic, status]))

const publish = (slug: string, id: string, etag: string) =>
  Effect.flatMap(Realtime.Realtime, (realtime) =>
    realtime.publish({ type: "changed", slug, id, etag, record: { etag } }))

describe("Multiplex.cursor", () => {
  it("round-trips positions, and is bounded by maxCursorLength", () => {
    fc.assert(fc.property(
      fc.array(fc.record({ seq: fc.integer({ min: 0, max: 2 ** 49 - 1 }), check: fc.integer({ min: 0, max: 0xffffff }) }), {
        minLength: 1,
        maxLength: 100
      }),
      fc.integer({ min: 0, max: 0xffffffff }),
      (positions, hash) => {
        const cursor = Multiplex.encodeCursor(hash, positions)
        assert.isAtMost(cursor.length, Multiplex.maxCursorLength(positions.length))
        assert.match(cursor, /^[A-Za-z0-9_-]+$/)
        const decoded = Either.getOrThrow(Multiplex.decodeCursor(cursor, hash, positions.length))
        assert.deepStrictEqual(decoded, positions.map(({ check, seq }) => ({ seq, check: seq === 0 ? 0 : check })))
      }
    ))
  })

  it("costs 7 characters, and per topic 1 before its first event, 6 up to event 1 023, 7 up to 32 767", () => {
    const length = (topics: number, seq: number) =>
      Multiplex.encodeCursor(7, Array.from({ length: topics }, () => ({ seq, check: 0xabcdef }))).length
    assert.deepStrictEqual([length(1, 0), length(1, 5), length(1, 1023), length(1, 1024), length(1, 32_767)], [8, 12, 13, 14, 14])
    assert.deepStrictEqual([length(20, 0), length(20, 1000), length(100, 1000), length(100, 30_000)], [27, 127, 607, 707])
    assert.strictEqual(length(100, 2 ** 49), Multiplex.maxCursorLength(100))
  })

  it("refuses what no server wrote, and reads another list's cursor as no position", () => {
    const cursor = Multiplex.encodeCursor(42, [{ seq: 3, check: 9 }, { seq: 0, check: 0 }])
    assert.isUndefined(Either.getOrThrow(Multiplex.decodeCursor(cursor, 43, 2)))
    for (const bad of ["", "!!!!", "a", cursor + "A", cursor.slice(0, -1), "AAAAAAAA", "x".repeat(20_000), "€"]) {
      const decoded = Multiplex.decodeCursor(bad, 42, 2)
      assert.isTrue(Either.isLeft(decoded), bad.slice(0, 20))
      assert.strictEqual(Either.isLeft(decoded) && decoded.left._tag, "InvalidLastEventId")
    }
    // Random strings never throw: a position, no position, or a typed refusal.
    fc.assert(fc.property(fc.string({ maxLength: 300 }), (input) => {
      const decoded = Multiplex.decodeCursor(input, 42, 2)
      if (Either.isRight(decoded) && decoded.right !== undefined) assert.strictEqual(decoded.right.length, 2)
    }))
  })
})

describe("Frame.collectionEntry", () => {
  it("names the record around its frame's JSON, byte for byte, whatever the record and etag hold", () => {
    fc.assert(fc.property(
      fc.jsonValue(),
      fc.string({ unit: "grapheme", maxLength: 40 }).filter((etag) => etag !== "" && !/[\r\n\0]/.test(etag)),
      fc.constantFrom("snapshot", "changed", "deleted") as fc.Arbitrary<"snapshot" | "changed" | "deleted">,
      (record, etag, type) => {
        const event = type === "deleted"
          ? { type, slug: "posts", id: "ü-1" }
          : { type, slug: "posts", id: "ü-1", record, etag }
        const frame = Either.getOrThrow(Frame.encode(event as never, etag))
        const entry = new TextDecoder().decode(Frame.collectionEntry(event as never, etag, frame))
        const data = type === "deleted"
          ? { topic: "posts/*", collection: "posts", id: "ü-1" }
          : { topic: "posts/*", collection: "posts", id: "ü-1", etag, record }
        assert.strictEqual(entry, `event: ${type}\nid: ${etag}\ndata: ${JSON.stringify(data)}\n\n`)
      }
    ))
  })
})

describe("Multiplex.parseTopics", () => {
  it("reads records and collections, drops repeats, sorts, and refuses the rest", () => {
    const topics = topicsOf("posts/2", "pages/*", "posts/2", "posts/1")
    assert.deepStrictEqual(topics.map((topic) => [topic.topic, topic.key, topic.id]), [
      ["pages/*", "pages:*", undefined],
      ["posts/1", "posts:1", "1"],
      ["posts/2", "posts:2", "2"]
    ])
    for (const bad of [[], ["posts"], ["posts/"], ["/1"], ["po sts/1"], ["posts/a/b"], ["posts/.."], ["*/*"]]) {
      const parsed = Multiplex.parseTopics(bad, 100)
      assert.isTrue(Either.isLeft(parsed), JSON.stringify(bad))
    }
    const many = Multiplex.parseTopics(["a/1", "a/2", "a/3"], 2)
    assert.isTrue(Either.isLeft(many) && many.left.limit === 2)
  })
})

describe("Realtime.openMany", () => {
  it.scoped("frames name their record and carry the cursor; a collection topic sees records created later", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const stream = yield* collect(yield* realtime.openMany(requests("posts/1", "posts/*")))
      yield* settle
      assert.deepStrictEqual(statuses(stream.events()), { "posts/*": "fresh", "posts/1": "fresh" })
      yield* publish("posts", "1", "a")
      yield* publish("posts", "2", "b")
      yield* realtime.publish({ type: "deleted", slug: "posts", id: "1" })
      yield* until(() => recordEvents(stream.events()).length === 5, "5 record frames")
      const events = recordEvents(stream.events())
      const data = events.map((event) => [event.event, JSON.parse(event.data) as Named])
      // posts/1 (its own topic) and posts/* (every record) each get their
      // frames, and say which topic they are for.
      const of = (topic: string) => data.filter(([, named]) => (named as Named).topic === topic)
      assert.deepStrictEqual(of("posts/1").map(([type, named]) => [type, (named as Named).id]), [["changed", "1"], ["deleted", "1"]])
      assert.deepStrictEqual(of("posts/*").map(([type, named]) => [type, (named as Named).id]), [
        ["changed", "1"],
        ["changed", "2"],
        ["deleted", "1"]
      ])
      assert.deepStrictEqual(of("posts/*")[1], [
        "changed",
        { topic: "posts/*", collection: "posts", id: "2", etag: "b", record: { etag: "b" } }
      ])
      assert.deepStrictEqual(of("posts/1")[1]![1], { topic: "posts/1", collection: "posts", id: "1" })
      // Every frame has its own cursor.
      const ids = stream.events().filter((event) => event.event !== "").map((event) => event.id)
      assert.strictEqual(new Set(ids).size, ids.length)
      assert.isTrue(ids.every((id) => id !== undefined && /^[A-Za-z0-9_-]+$/.test(id)))
    }).pipe(Effect.provide(memory())))

  it.scoped("one topic's history gone: its own saacms-resync naming it, the others resume exactly", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const first = yield* collect(yield* realtime.openMany(requests("a/1", "b/1")))
      yield* settle
      yield* publish("a", "1", "a1")
      yield* publish("b", "1", "b1")
      yield* until(() => recordEvents(first.events()).length === 2, "2 frames")
      const cursor = first.events().at(-1)!.id!
      // While away: a/1 gets more than its history holds, b/1 one event.
      for (let n = 2; n <= 5; n++) yield* publish("a", "1", `a${n}`)
      yield* publish("b", "1", "b2")
      const second = yield* collect(yield* realtime.openMany(requests("a/1", "b/1"), cursor))
      yield* until(() => recordEvents(second.events()).length >= 1, "the replay")
      yield* settle
      const events = second.events()
      assert.deepStrictEqual(statuses(events), { "a/1": "resync", "b/1": "resumed" })
      const resyncs = events.filter((event) => event.event === "saacms-resync").map((event) => JSON.parse(event.data))
      assert.deepStrictEqual(resyncs, [{ topic: "a/1", reason: "buffer-miss" }])
      assert.deepStrictEqual(recordEvents(events).map((event) => (JSON.parse(event.data) as Named).etag), ["b2"])
      // After the resync, a/1 goes on live from its head.
      yield* publish("a", "1", "a6")
      yield* until(() => recordEvents(second.events()).length === 2, "a6")
      assert.strictEqual((JSON.parse(recordEvents(second.events())[1]!.data) as Named).etag, "a6")
    }).pipe(Effect.provide(memory({ retention: { maxEvents: 2 } }))))

  it.scoped("a cursor for another topic list starts every topic fresh; a forged position resyncs only its topic", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      yield* publish("a", "1", "x1")
      yield* publish("b", "1", "y1")
      yield* publish("b", "1", "y2")
      const other = Multiplex.encodeCursor(Multiplex.listHash(topicsOf("a/1")), [{ seq: 1, check: Frame.check("x1") }])
      const fresh = yield* collect(yield* realtime.openMany(requests("a/1", "b/1"), other))
      yield* settle
      assert.deepStrictEqual(statuses(fresh.events()), { "a/1": "fresh", "b/1": "fresh" })
      assert.lengthOf(recordEvents(fresh.events()), 0)

      const hash = Multiplex.listHash(topicsOf("a/1", "b/1"))
      const forged = [
        // Ahead of the head; a wrong check; the right position.
        [{ seq: 9, check: 0 }, { seq: 1, check: Frame.check("y1") }],
        [{ seq: 1, check: Frame.check("x1") ^ 1 }, { seq: 1, check: Frame.check("y1") }]
      ]
      const opened: Array<Collected & { readonly reader: ReadableStreamDefaultReader<Uint8Array> }> = [fresh]
      for (const positions of forged) {
        const stream = yield* collect(yield* realtime.openMany(requests("a/1", "b/1"), Multiplex.encodeCursor(hash, positions)))
        yield* until(() => recordEvents(stream.events()).length === 1, "b/1's replay")
        assert.deepStrictEqual(statuses(stream.events()), { "a/1": "resync", "b/1": "resumed" })
        assert.deepStrictEqual(
          recordEvents(stream.events()).map((event) => JSON.parse(event.data) as Named).map((named) => [named.id, named.etag]),
          [["1", "y2"]]
        )
        opened.push(stream)
      }
      const malformed = yield* Effect.flip(realtime.openMany(requests("a/1", "b/1"), "not a cursor"))
      assert.strictEqual(malformed._tag, "InvalidLastEventId")
      // Refused before anything was registered.
      const hub = yield* Hub.Hub
      yield* Effect.forEach(opened, (stream) => Effect.promise(() => stream.reader.cancel()))
      yield* settle
      assert.strictEqual(yield* hub.totalSubscribers, 0)
    }).pipe(Effect.provide(memory())))

  it.scoped("forged cursors of the right topic list: every topic resumes or resyncs, and nothing of another topic arrives", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      for (let n = 1; n <= 5; n++) {
        yield* publish("a", "1", `a${n}`)
        yield* publish("b", "1", `b${n}`)
        yield* publish("c", "1", `c${n}`)
      }
      const inputs = ["a/1", "b/*"]
      const hash = Multiplex.listHash(topicsOf(...inputs))
      const samples = fc.sample(
        fc.array(fc.record({ seq: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 2 ** 49 - 1 })), check: fc.integer({ min: 0, max: 0xffffff }) }), {
          minLength: 2,
          maxLength: 2
        }),
        { numRuns: 40, seed: 12 }
      )
      // And the exact positions, so that some resume.
      samples.push([{ seq: 3, check: Frame.check("a3") }, { seq: 2, check: Frame.check("b2") }])
      let resumed = 0
      for (const positions of samples) {
        const stream = yield* collect(yield* realtime.openMany(requests(...inputs), Multiplex.encodeCursor(hash, positions)))
        yield* until(() => stream.events().some((event) => event.event === "saacms-welcome"), "the welcome")
        yield* settle
        const events = stream.events()
        const status = statuses(events)
        assert.isTrue(Object.values(status).every((s) => s === "resumed" || s === "resync"), JSON.stringify(status))
        const resyncs = events.filter((event) => event.event === "saacms-resync").map((event) => JSON.parse(event.data).topic)
        assert.deepStrictEqual(resyncs.sort(), Object.keys(status).filter((topic) => status[topic] === "resync").sort())
        for (const event of recordEvents(events)) {
          const named = JSON.parse(event.data) as Named
          assert.include(inputs, named.topic)
          assert.isTrue(named.topic === "a/1" ? named.collection === "a" && named.id === "1" : named.collection === "b")
        }
        if (status["a/1"] === "resumed") {
          resumed++
          // What follows its position, exactly (0: before the first event).
          assert.deepStrictEqual(
            recordEvents(events).map((event) => JSON.parse(event.data) as Named).filter((named) => named.topic === "a/1")
              .map((named) => named.etag),
            ["a1", "a2", "a3", "a4", "a5"].slice(positions[0]!.seq)
          )
        }
        yield* Effect.promise(() => stream.reader.cancel())
      }
      assert.isAtLeast(resumed, 1)
    }).pipe(Effect.provide(memory())))

  it.scoped("without collectionHistory, a collection topic is refused with InvalidTopic and nothing is registered", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const refused = yield* Effect.flip(realtime.openMany(requests("a/1", "a/*")))
      assert.strictEqual(refused._tag, "InvalidTopic")
      assert.strictEqual(yield* Effect.flatMap(Hub.Hub, (hub) => hub.totalSubscribers), 0)
      // Record topics still stream.
      const stream = yield* collect(yield* realtime.openMany(requests("a/1")))
      yield* publish("a", "1", "a1")
      yield* until(() => recordEvents(stream.events()).length === 1, "a1")
    }).pipe(Effect.provide(memory({ collectionHistory: false }))))

  it.scoped("one :keepalive per heartbeat for the whole stream, from its first open topic, before and after that topic is revoked", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
      const [a, b, c, d] = topicsOf("a/1", "b/1", "c/1", "d/1")
      const stream = yield* collect(yield* realtime.openMany([
        { topic: a!, denied: { status: 403, reason: "not yours" } },
        { topic: b!, grant: { expiresAt: now + 45_000 } },
        { topic: c! },
        { topic: d! }
      ]))
      yield* settle
      // The opening's own, then one per heartbeat (30 s by default).
      assert.strictEqual(stream.keepalives(), 1)
      yield* TestClock.adjust(30_000)
      yield* settle
      assert.strictEqual(stream.keepalives(), 2)
      // b/1, the stream's first open topic, expires at this beat; c/1 beats for the stream now.
      yield* TestClock.adjust(30_000)
      yield* settle
      assert.deepStrictEqual(
        stream.events().filter((event) => event.event === "saacms-revoked").map((event) => JSON.parse(event.data)),
        [{ topic: "b/1", reason: "expired" }]
      )
      assert.strictEqual(stream.keepalives(), 3)
      yield* TestClock.adjust(30_000)
      yield* settle
      assert.strictEqual(stream.keepalives(), 4)
      yield* publish("c", "1", "c1")
      yield* publish("d", "1", "d1")
      yield* until(() => recordEvents(stream.events()).length === 2, "c1 and d1")
      assert.isFalse(stream.ended())
    }).pipe(Effect.provide(memory())))

  it.scoped("each topic's access: denied topics get their own frame, an expired grant revokes only its topic", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
      const [a, b, c] = topicsOf("a/1", "b/1", "c/*")
      const stream = yield* collect(yield* realtime.openMany([
        { topic: a!, grant: { expiresAt: now + 1_000 } },
        { topic: b!, denied: { status: 403, reason: "not yours" } },
        { topic: c!, grant: { canSee: (event) => event.id !== "secret" } }
      ]))
      yield* settle
      assert.deepStrictEqual(statuses(stream.events()), { "a/1": "fresh", "b/1": "denied", "c/*": "fresh" })
      assert.deepStrictEqual(
        stream.events().filter((event) => event.event === "saacms-denied").map((event) => JSON.parse(event.data)),
        [{ topic: "b/1", status: 403, reason: "not yours" }]
      )
      yield* publish("a", "1", "a1")
      yield* publish("b", "1", "b1")
      yield* publish("c", "open", "c1")
      yield* until(() => recordEvents(stream.events()).length === 2, "a1 and c1")
      yield* TestClock.adjust(2_000)
      yield* publish("a", "1", "a2")
      yield* publish("c", "open", "c2")
      yield* until(() => stream.events().some((event) => event.event === "saacms-revoked"), "a/1 revoked")
      yield* until(() => recordEvents(stream.events()).length === 3, "c2")
      const revoked = stream.events().filter((event) => event.event === "saacms-revoked").map((event) => JSON.parse(event.data))
      assert.deepStrictEqual(revoked, [{ topic: "a/1", reason: "expired" }])
      // The recheck refuses an event of c/*: that topic ends, and with it the last one.
      yield* publish("c", "secret", "c3")
      yield* until(() => stream.ended(), "the stream ends with its last topic")
      const etags = recordEvents(stream.events()).map((event) => (JSON.parse(event.data) as Named).etag)
      assert.deepStrictEqual(etags, ["a1", "c1", "c2"])
      assert.deepStrictEqual(
        stream.events().filter((event) => event.event === "saacms-revoked").map((event) => JSON.parse(event.data)),
        [{ topic: "a/1", reason: "expired" }, { topic: "c/*", reason: "forbidden" }]
      )
    }).pipe(Effect.provide(memory())))
})

// Concurrent publishers on several records and collections; clients that
// reconnect with random cursors from what they received get, per topic, the
// rest of its events exactly once and in order (or a resync naming it).
const exactResume = (rounds: number) =>
  Effect.gen(function*() {
    const realtime = yield* Realtime.Realtime
    const inputs = ["a/1", "a/2", "a/*", "b/1", "b/*", "c/9"]
    const topics = topicsOf(...inputs)
    const all = yield* collect(yield* realtime.openMany(requests(...inputs)))
    yield* settle
    const records = [["a", "1"], ["a", "2"], ["a", "3"], ["b", "1"], ["b", "2"]] as const
    let n = 0
    const burst = Effect.forEach(
      Array.from({ length: 12 }, () => 0),
      () =>
        Effect.flatMap(Random.nextIntBetween(0, records.length), (r) => {
          const [slug, id] = records[r]!
          return publish(slug, id, `e${++n}`)
        }),
      { concurrency: 4, discard: true }
    )
    const expected = (topic: Multiplex.Topic, events: ReadonlyArray<Sse.SseEvent>) =>
      recordEvents(events).map((event) => JSON.parse(event.data) as Named).filter((named) =>
        named.topic === topic.topic &&
        (topic.id === undefined ? named.collection === topic.collection : named.collection === topic.collection && named.id === topic.id)
      )
    for (let round = 0; round < rounds; round++) {
      yield* burst
      yield* until(() => recordEvents(all.events()).length >= 1, "events")
      yield* settle
      const sofar = all.events()
      const seen = sofar.filter((event) => event.id !== undefined && event.id !== "")
      const at = yield* Random.nextIntBetween(0, seen.length)
      const cursor = seen[at]!.id!
      const before = sofar.slice(0, sofar.indexOf(seen[at]!) + 1)
      yield* burst
      const resumed = yield* collect(yield* realtime.openMany(requests(...inputs), cursor))
      yield* settle
      yield* burst
      yield* settle
      const total = all.events()
      yield* until(() => {
        const got = resumed.events()
        return topics.every((topic) => expected(topic, before).length + expected(topic, got).length === expected(topic, total).length)
      }, () =>
        `every topic caught up: ${
          JSON.stringify(topics.map((topic) => [
            topic.topic,
            expected(topic, before).map((named) => named.etag),
            expected(topic, resumed.events()).map((named) => named.etag),
            expected(topic, total).map((named) => named.etag)
          ]))
        } ${JSON.stringify(resumed.events().filter((event) => !recordEvents([event]).length))}`)
      const got = resumed.events()
      assert.isTrue(Object.values(statuses(got)).every((status) => status === "resumed"))
      assert.isFalse(got.some((event) => event.event === "saacms-resync"))
      for (const topic of topics) {
        // Before the cursor + after it = everything, in the same order (etags are unique).
        assert.deepStrictEqual(
          [...expected(topic, before), ...expected(topic, got)].map((named) => named.etag),
          expected(topic, total).map((named) => named.etag),
          topic.topic
        )
      }
      yield* Effect.promise(() => resumed.reader.cancel())
    }
  })

describe("exact resume per topic", () => {
  it.scoped("in memory: random cursors under concurrent publishers", () => exactResume(8).pipe(Effect.provide(memory({ retention: { maxEvents: 10_000 } }))))

  it.scoped("over Redis: random cursors under concurrent publishers", () =>
    exactResume(4).pipe(
      Effect.provide(
        Redis.layer({ url: RedisTest.url, keyPrefix: RedisTest.newPrefix() }).pipe(Layer.provide(RealtimeConfig.layer({ retention: { maxEvents: 10_000 } })))
      )
    ))
})
