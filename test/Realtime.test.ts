import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Heartbeat from "../src/Heartbeat.js"
import * as Hub from "../src/Hub.js"
import * as Realtime from "../src/Realtime.js"
import * as ReplayBuffer from "../src/ReplayBuffer.js"
import * as Sse from "./utils/sse.js"
import { awaitSubscribers, key, memory, nextTurn } from "./utils/layers.js"

const posts1 = key("posts", "1")

const changed = (n: number, etag?: string) =>
  ({ type: "changed", slug: "posts", id: "1", record: { n }, ...(etag === undefined ? {} : { etag }) }) as const

/** Run a subscription until an event with `untilId` arrives; the parsed items. */
const collectUntil = (lastEventId: string | undefined, untilId: string) =>
  Effect.flatMap(Realtime.Realtime, (realtime) => {
    let text = ""
    const decoder = new TextDecoder()
    return realtime.subscribe(posts1, lastEventId).pipe(
      Stream.takeUntil((chunk) => {
        text += decoder.decode(chunk)
        return Sse.parse(text).some((event) => event.id === untilId)
      }),
      Stream.runCollect,
      Effect.map((chunks) => Sse.items(Chunk.toReadonlyArray(chunks)))
    )
  })

describe("Realtime", () => {
  it.scoped("replays after a last id, then goes live", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      yield* realtime.publish(changed(1, "e1"))
      yield* realtime.publish(changed(2, "e2"))
      const fiber = yield* Effect.fork(collectUntil("e1", "e3"))
      yield* awaitSubscribers(posts1, 1)
      yield* realtime.publish(changed(3, "e3"))
      const items = yield* Fiber.join(fiber)
      assert.deepStrictEqual(items, [
        { _tag: "comment", text: "keepalive" },
        { _tag: "event", message: { event: "changed", id: "e2", data: "{\"n\":2}" } },
        { _tag: "event", message: { event: "changed", id: "e3", data: "{\"n\":3}" } }
      ])
    }).pipe(Effect.provide(memory())))

  it.scoped("an unknown or evicted id gets one saacms-resync frame with the newest id, then live", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      for (let n = 1; n <= 5; n++) yield* realtime.publish(changed(n, `e${n}`))
      const fiber = yield* Effect.fork(collectUntil("e1", "e6"))
      yield* awaitSubscribers(posts1, 1)
      yield* realtime.publish(changed(6, "e6"))
      const items = yield* Fiber.join(fiber)
      assert.deepStrictEqual(items.slice(1).map((i) => i._tag === "event" && [i.message.event, i.message.id]), [
        ["saacms-resync", "e5"],
        ["changed", "e6"]
      ])
    }).pipe(Effect.provide(memory({ retention: { maxEvents: 3 } }))))

  it.scoped("generates unique ids for events without an etag", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const published = yield* Effect.forEach([1, 2, 3], (n) => realtime.publish(changed(n)))
      assert.strictEqual(new Set(published.map((p) => p.id)).size, 3)
      assert.deepStrictEqual(published.map((p) => p.seq), [1, 2, 3])
    }).pipe(Effect.provide(memory())))

  it.scoped("gapless handoff: concurrent publishers, subscribers joining with random last ids", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const published = yield* Ref.make<Array<string>>([]) // ids in sequence order
      const publisher = (p: number) =>
        Effect.forEach(Array.from({ length: 100 }, (_, i) => i), (i) =>
          Effect.zipRight(
            Effect.flatMap(Random.nextIntBetween(0, 3), (n) => Effect.repeatN(Effect.yieldNow(), n)),
            Effect.flatMap(realtime.publish(changed(p * 1000 + i)), (r) =>
              Ref.update(published, (ids) => {
                const next = [...ids]
                next[r.seq - 1] = r.id
                return next
              }))
          ), { discard: true })
      const subscriber = Effect.gen(function*() {
        yield* Effect.flatMap(Random.nextIntBetween(0, 400), (n) => Effect.repeatN(Effect.yieldNow(), n))
        const ids = (yield* Ref.get(published)).filter((id) => id !== undefined)
        const pick = yield* Random.nextIntBetween(-1, ids.length)
        const last = pick < 0 ? undefined : ids[pick]
        const items = yield* collectUntil(last, "done")
        return { last, received: items.flatMap((i) => i._tag === "event" ? [i.message.id!] : []) }
      })
      const subscribers = yield* Effect.forkAll(Array.from({ length: 24 }, () => subscriber))
      yield* Effect.all([0, 1, 2, 3].map(publisher), { concurrency: "unbounded" })
      // Let every subscriber register before the final event.
      yield* awaitSubscribers(posts1, 24)
      const done = yield* realtime.publish({ ...changed(-1), etag: "done" })
      const all = [...(yield* Ref.get(published)), "done"]
      assert.strictEqual(done.seq, 401)
      assert.strictEqual(all.length, 401)
      for (const { last, received } of yield* Fiber.join(subscribers)) {
        assert.notInclude(received, "saacms-resync")
        assert.strictEqual(received[received.length - 1], "done")
        const start = all.indexOf(received[0]!)
        // Every event after the starting point exactly once, in order.
        assert.deepStrictEqual(received, all.slice(start))
        if (last !== undefined) assert.strictEqual(start, all.indexOf(last) + 1)
      }
    }).pipe(Effect.withRandom(Random.make("gapless")), Effect.provide(memory({ retention: { maxEvents: 10_000 } }))))

  it.scoped("no silent loss: a subscriber too slow for its queue catches up from the history, without a gap or a duplicate", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const fast = yield* Effect.fork(collectUntil(undefined, "last"))
      const slowPull = yield* Stream.toPull(realtime.subscribe(posts1))
      const opening = yield* slowPull
      yield* awaitSubscribers(posts1, 2)
      assert.strictEqual(Sse.stripRetry(Sse.text(opening)), ":keepalive\n\n")
      const ids: Array<string> = []
      // The fast subscriber gets to run between publishes; the slow one is not pulled.
      const publish = (n: number, etag?: string) =>
        Effect.tap(realtime.publish(changed(n, etag)), (p) => Effect.zipRight(Effect.sync(() => ids.push(p.id)), Effect.repeatN(Effect.yieldNow(), 3)))
      for (let n = 1; n <= 10; n++) yield* publish(n)
      const first = Sse.parse(Chunk.toReadonlyArray(yield* slowPull))
      assert.deepStrictEqual(first.map((e) => e.id), ids)
      // 16 frames of queue: publishing 490 more puts the slow subscriber behind.
      for (let n = 11; n <= 500; n++) yield* publish(n, n === 500 ? "last" : undefined)
      // It holds its bound, no more ...
      const held = Chunk.toReadonlyArray(yield* slowPull)
      assert.strictEqual(held.length, 16)
      assert.deepStrictEqual(Sse.parse(held).map((e) => e.id), ids.slice(10, 26))
      // ... then reads the rest from the history as it drains, at most 16 frames a pull.
      const rest: Array<string> = []
      while (rest[rest.length - 1] !== "last") {
        const chunk = Chunk.toReadonlyArray(yield* slowPull)
        assert.isAtMost(chunk.length, 16)
        rest.push(...Sse.parse(chunk).map((e) => e.id!))
      }
      assert.deepStrictEqual(rest, ids.slice(26))
      // The fast one got everything, in order, and both are live again.
      const fastIds = (yield* Fiber.join(fast)).flatMap((i) => i._tag === "event" ? [i.message.id] : [])
      assert.deepStrictEqual(fastIds, ids)
      const next = yield* realtime.publish(changed(501))
      assert.deepStrictEqual(Sse.parse(Chunk.toReadonlyArray(yield* slowPull)).map((e) => e.id), [next.id])
    }).pipe(Effect.provide(memory({ queueCapacity: 16, retention: { maxEvents: 1000 } }))))

  it.scoped("no silent loss: a subscriber behind whose place the history lost gets saacms-resync, then goes on", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const slowPull = yield* Stream.toPull(realtime.subscribe(posts1))
      yield* slowPull
      const ids: Array<string> = []
      for (let n = 1; n <= 100; n++) ids.push((yield* realtime.publish(changed(n, `e${n}`))).id)
      // It held 16 frames; the history keeps the last 50, so e17 … e50 are gone.
      assert.deepStrictEqual(Sse.parse(Chunk.toReadonlyArray(yield* slowPull)).map((e) => e.id), ids.slice(0, 16))
      const after: Array<[string | undefined, string | undefined]> = []
      while (after.length === 0 || after[after.length - 1]![1] !== "e100") {
        after.push(...Sse.parse(Chunk.toReadonlyArray(yield* slowPull)).map((e) => [e.event, e.id] as [string | undefined, string | undefined]))
      }
      assert.deepStrictEqual(after, [["saacms-resync", "e100"]])
      yield* realtime.publish(changed(101, "e101"))
      assert.deepStrictEqual(Sse.parse(Chunk.toReadonlyArray(yield* slowPull)).map((e) => e.id), ["e101"])
    }).pipe(Effect.provide(memory({ queueCapacity: 16, retention: { maxEvents: 50 } }))))

  it.effect("a burst published in one turn reaches every live subscriber as one chunk, the same bytes for all", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const readers: Array<ReadableStreamDefaultReader<Uint8Array>> = []
      for (let i = 0; i < 3; i++) readers.push((yield* realtime.open(posts1)).toReadableStream().getReader())
      const read = Effect.forEach(readers, (reader) => Effect.promise(() => reader.read().then((r) => r.value!)))
      yield* read // the openings
      for (let burst = 0; burst < 2; burst++) {
        for (let n = 1; n <= 10; n++) yield* realtime.publish(changed(10 * burst + n, `e${10 * burst + n}`))
        const [chunk, ...others] = yield* read
        assert.deepStrictEqual(Sse.parse([chunk!]).map((e) => e.id), Array.from({ length: 10 }, (_, i) => `e${10 * burst + i + 1}`))
        for (const other of others) assert.strictEqual(other, chunk)
      }
      // A lone event is its own frame.
      yield* realtime.publish(changed(21, "e21"))
      const [lone] = yield* read
      assert.deepStrictEqual(Sse.parse([lone!]).map((e) => e.id), ["e21"])
      yield* Effect.forEach(readers, (reader) => Effect.promise(() => reader.cancel()))
    }).pipe(Effect.provide(memory())))

  it.effect("a burst larger than a subscriber's bound goes frame by frame up to the bound; the rest comes from the history", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const hub = yield* Hub.Hub
      const fast = (yield* realtime.open(posts1)).toReadableStream().getReader()
      const slow = (yield* realtime.open(posts1)).toReadableStream().getReader()
      yield* Effect.promise(() => fast.read())
      const opening = yield* hub.queuedBytes
      for (let n = 1; n <= 4; n++) yield* realtime.publish(changed(n, `e${n}`))
      yield* nextTurn
      // The fast one takes its run; the slow one, holding its opening, has room for 3 more frames only.
      const run = (yield* Effect.promise(() => fast.read())).value!
      assert.deepStrictEqual(Sse.parse([run]).map((e) => e.id), ["e1", "e2", "e3", "e4"])
      const held = (yield* hub.queuedBytes) - opening
      const one = new TextEncoder().encode(`event: changed\nid: e1\ndata: {"n":1}\n\n`).byteLength
      assert.strictEqual(held, 3 * one)
      let text = ""
      while (!Sse.parse(text).some((e) => e.id === "e4")) {
        text += new TextDecoder().decode((yield* Effect.promise(() => slow.read())).value)
      }
      assert.deepStrictEqual(Sse.parse(text).map((e) => e.id), ["e1", "e2", "e3", "e4"])
      yield* Effect.promise(() => Promise.all([fast.cancel(), slow.cancel()]))
    }).pipe(Effect.provide(memory({ queueCapacity: 4 }))))

  it.effect("a web stream that is not read holds at most queueCapacity frames, then catches up as it is read", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const hub = yield* Hub.Hub
      const subscriber = yield* realtime.open(posts1)
      const stream = subscriber.toReadableStream()
      assert.strictEqual(yield* hub.subscriberCount(posts1), 1)
      const ids: Array<string> = []
      for (let n = 1; n <= 10; n++) ids.push((yield* realtime.publish(changed(n))).id)
      yield* nextTurn
      // Nothing read yet: the stream holds its opening and 4 frames.
      const frameBytes = new TextEncoder().encode(`event: changed\nid: ${ids[0]}\ndata: {"n":1}\n\n`).byteLength
      const queued = yield* hub.queuedBytes
      assert.isAtMost(queued, 64 + 4 * (frameBytes + 4))
      assert.isAbove(queued, 4 * (frameBytes - 4))
      // Read: every frame, in order, the rest from the history.
      const reader = stream.getReader()
      let text = ""
      while (!Sse.parse(text).some((e) => e.id === ids[9])) {
        const chunk = yield* Effect.promise(() => reader.read())
        text += new TextDecoder().decode(chunk.value)
      }
      assert.deepStrictEqual(Sse.parse(text).map((e) => e.id), ids)
      yield* Effect.promise(() => reader.cancel())
      yield* awaitSubscribers(posts1, 0)
    }).pipe(Effect.provide(memory({ queueCapacity: 4 }))))

  it.effect("a web stream that takes nothing for a whole heartbeat interval while frames wait is ended at once; one being read is not", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const hub = yield* Hub.Hub
      // Read: a client that takes every frame.
      const reading = (yield* realtime.open(posts1)).toReadableStream().getReader()
      let read = ""
      const decoder = new TextDecoder()
      const pump = (): Promise<void> =>
        reading.read().then((chunk) => {
          if (chunk.done) return
          read += decoder.decode(chunk.value)
          return pump()
        })
      const pumped = pump()
      // Gone without a word: a stream nobody reads (workerd never cancels it).
      const gone = (yield* realtime.open(posts1)).toReadableStream()
      const ids: Array<string> = []
      for (let n = 1; n <= 3; n++) ids.push((yield* realtime.publish(changed(n))).id)
      yield* TestClock.adjust("1 second")
      // One interval seen: the first check only notes where each subscriber is.
      assert.strictEqual(yield* hub.subscriberCount(posts1), 2)
      yield* TestClock.adjust("1 second")
      yield* awaitSubscribers(posts1, 1)
      // It was failed, dropping what it held; the reader is still there and got everything.
      const failed = yield* Effect.promise(() => new Response(gone).text().then(() => false, () => true))
      assert.isTrue(failed)
      assert.strictEqual(yield* hub.queuedBytes, 0)
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(yield* hub.subscriberCount(posts1), 1)
      assert.deepStrictEqual(Sse.parse(read).map((e) => e.id), ids)
      assert.isAtLeast(Sse.parseAll(read).comments.length, 6)
      yield* Effect.promise(() => reading.cancel().then(() => pumped))
      yield* awaitSubscribers(posts1, 0)
    }).pipe(Effect.provide(memory({ heartbeatMs: 1000 }))))

  it.scoped("bad input is rejected with a typed error and changes nothing", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const buffer = yield* ReplayBuffer.ReplayBuffer
      yield* realtime.publish(changed(1, "e1"))
      const fiber = yield* Effect.fork(collectUntil(undefined, "e2"))
      yield* awaitSubscribers(posts1, 1)
      const cyclic: Record<string, unknown> = {}
      cyclic.self = cyclic
      const rejected = [
        [{ ...changed(0), etag: "x\r\nevent: evil" }, "InvalidEvent"],
        [{ ...changed(0), etag: "x\nid: 1" }, "InvalidEvent"],
        [{ ...changed(0), slug: "po:sts" }, "InvalidResourceKey"],
        [{ ...changed(0), id: "../1" }, "InvalidResourceKey"],
        [{ ...changed(0), record: cyclic }, "InvalidEvent"],
        [{ ...changed(0), record: undefined }, "InvalidEvent"],
        [{ ...changed(0), record: 1n }, "InvalidEvent"],
        [{ ...changed(0), record: "x".repeat(2048) }, "FrameTooLarge"],
        [{ type: "moved", slug: "posts", id: "1" }, "InvalidEvent"]
      ] as const
      for (const [event, tag] of rejected) {
        const error = yield* Effect.flip(realtime.publish(event as never))
        assert.strictEqual(error._tag, tag)
      }
      assert.strictEqual(yield* buffer.size(posts1), 1)
      yield* realtime.publish(changed(2, "e2"))
      const items = yield* Fiber.join(fiber)
      assert.deepStrictEqual(items.flatMap((i) => i._tag === "event" ? [i.message.id] : []), ["e2"])
      assert.strictEqual(yield* buffer.size(posts1), 2)
    }).pipe(Effect.provide(memory({ maxFrameBytes: 1024 }))))

  it.scoped("nothing leaks: closed subscriptions release their record, queue and heartbeat", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const hub = yield* Hub.Hub
      const heartbeat = yield* Heartbeat.Heartbeat
      const keys = Array.from({ length: 50 }, (_, i) => key("posts", `${i}`))
      const fibers = yield* Effect.forEach(keys, (k) =>
        Effect.forkAll(Array.from({ length: 4 }, () => Stream.runDrain(realtime.subscribe(k)))))
      yield* Effect.forEach(keys, (k) => awaitSubscribers(k, 4))
      assert.strictEqual(yield* hub.totalSubscribers, 200)
      assert.strictEqual(yield* hub.activeKeys, 50)
      // One heartbeat for the whole hub.
      assert.strictEqual(yield* heartbeat.active, 1)
      yield* Effect.forEach(fibers, Fiber.interrupt)
      assert.strictEqual(yield* hub.totalSubscribers, 0)
      assert.strictEqual(yield* hub.activeKeys, 0)
      assert.strictEqual(yield* heartbeat.active, 0)
      // Publishing to records nobody watches only buffers.
      yield* realtime.publish(changed(1))
      assert.strictEqual(yield* hub.activeKeys, 0)
    }).pipe(Effect.provide(memory())))

  it.effect("shutdown ends every open stream cleanly and stops the heartbeat", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(memory(), scope)
      const subscribers = yield* Effect.forkAll([posts1, posts1, key("posts", "2")].map((k) =>
        Effect.flatMap(Realtime.Realtime, (realtime) => Stream.runCollect(realtime.subscribe(k)))
      )).pipe(Effect.provide(context))
      const web = yield* Effect.flatMap(Realtime.Realtime, (realtime) => realtime.open(key("posts", "3"))).pipe(
        Effect.provide(context)
      )
      const body = web.toReadableStream()
      yield* Effect.all([awaitSubscribers(posts1, 2), awaitSubscribers(key("posts", "2"), 1)]).pipe(Effect.provide(context))
      const heartbeat = Context.get(context, Heartbeat.Heartbeat)
      assert.strictEqual(yield* heartbeat.active, 1)
      yield* Scope.close(scope, Exit.void)
      const results = yield* Fiber.await(subscribers)
      assert.isTrue(Exit.isSuccess(results))
      assert.strictEqual(Sse.stripRetry(yield* Effect.promise(() => new Response(body).text())), ":keepalive\n\n")
      assert.strictEqual(yield* heartbeat.active, 0)
    }))
})
