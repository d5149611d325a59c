/**
 * The typed client (`@saacms/realtime/client`) against the runtime's real
 * server over sockets: typed events over one multiplexed stream and over a
 * record's route, resume without a gap or a repeat after the connection is
 * cut, an `Authorization` header, refusals as typed errors, the callback
 * face and its `close()`; and, with a scripted `fetch` and `TestClock`, the
 * waits between attempts (the server's `retry:`, backoff while it cannot connect).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Access from "../src/Access.js"
import * as Client from "../src/Client.js"
import * as Hub from "../src/Hub.js"
import * as Realtime from "../src/Realtime.js"
import * as RealtimeConfig from "../src/RealtimeConfig.js"
import { eventually } from "./utils/eventually.js"
import * as Server from "./utils/server.js"

const app = (access: Layer.Layer<Access.Access> | Layer.Layer<never> = Layer.empty) =>
  Server.layerRealtime({ services: Layer.mergeAll(access, RealtimeConfig.layer({ retryMs: 50, retryJitterMs: 0 })) })

/**
 * A `fetch` whose connections the test can cut: `cut()` aborts every
 * request in flight (their sockets close; the server sees its clients leave
 * and the client sees its body fail, as after a dropped connection).
 */
const cuttable = () => {
  const open = new Set<AbortController>()
  let connects = 0
  const fetch: Client.Fetch = (input, init) => {
    connects++
    const controller = new AbortController()
    init.signal?.addEventListener("abort", () => controller.abort())
    open.add(controller)
    return globalThis.fetch(input, { ...init, signal: controller.signal })
  }
  return {
    fetch,
    connects: () => connects,
    cut: () => {
      for (const controller of open) controller.abort()
      open.clear()
    }
  }
}

const publish = (slug: string, id: string, n: number) =>
  Effect.flatMap(Realtime.Realtime, (realtime) =>
    realtime.publish({ type: "changed", slug, id, etag: `${slug}-${id}-${n}`, record: { n } }))

// The events collected so far from a running subscription.
const collect = (stream: Stream.Stream<Client.ClientEvent, Client.ClientError>) =>
  Effect.gen(function*() {
    const events: Array<Client.ClientEvent> = []
    const fiber = yield* Effect.forkScoped(Stream.runForEach(stream, (event) => Effect.sync(() => events.push(event))))
    return { events, fiber }
  })

const records = (events: ReadonlyArray<Client.ClientEvent>) =>
  events.flatMap((event) =>
    event._tag === "Record" && event.event.type !== "deleted"
      ? [`${event.topic} ${event.event.id}:${(event.event.record as { n: number }).n}`]
      : []
  )

const until = <A>(label: string, f: () => A, done: (a: A) => boolean) => eventually(label, Effect.sync(f), done)

describe(`Client against the server (${Server.runtime})`, () => {
  it.scopedLive("typed events over one stream; a cut connection resumes with no gap and no repeat", () =>
    Effect.gen(function*() {
      const net = cuttable()
      const { events } = yield* collect(
        Client.subscribe(["posts/1", "posts/*"], { baseUrl: yield* Server.baseUrl, fetch: net.fetch })
      )
      yield* until("the welcome", () => events.filter((e) => e._tag === "Welcome").length, (n) => n === 1)
      const welcome = events.find((e) => e._tag === "Welcome")!
      assert.deepStrictEqual(welcome._tag === "Welcome" && welcome.topics, [
        { topic: "posts/*", status: "fresh" },
        { topic: "posts/1", status: "fresh" }
      ])
      for (let n = 1; n <= 3; n++) yield* publish("posts", "1", n)
      yield* publish("posts", "2", 1)
      yield* until("7 record events", () => records(events), (r) => r.length === 7)
      const typed = events.find((e) => e._tag === "Record")!
      assert.deepStrictEqual(typed._tag === "Record" && typed.event, {
        type: "changed",
        slug: "posts",
        id: "1",
        record: { n: 1 },
        etag: "posts-1-1"
      })

      net.cut()
      for (let n = 4; n <= 6; n++) yield* publish("posts", "1", n)
      yield* publish("posts", "2", 2)
      yield* until("the rest, after a reconnect", () => records(events), (r) => r.length === 14)
      const of = (topic: string) => records(events).filter((r) => r.startsWith(`${topic} `))
      assert.deepStrictEqual(of("posts/1"), [1, 2, 3, 4, 5, 6].map((n) => `posts/1 1:${n}`))
      assert.deepStrictEqual(
        of("posts/*"),
        ["1:1", "1:2", "1:3", "2:1", "1:4", "1:5", "1:6", "2:2"].map((e) => `posts/* ${e}`)
      )
      const welcomes = events.filter((e) => e._tag === "Welcome")
      assert.strictEqual(welcomes.length, 2)
      assert.isTrue(welcomes[1]!._tag === "Welcome" && welcomes[1]!.topics.every((t) => t.status === "resumed"))
      assert.deepStrictEqual(
        events.filter((e) => e._tag === "State").map((e) => e._tag === "State" && e.state),
        ["connecting", "live", "reconnecting", "live"]
      )
      assert.strictEqual(net.connects(), 2)
    }).pipe(Effect.provide(app())))

  it.scopedLive("one record over its own route resumes from the last event id", () =>
    Effect.gen(function*() {
      const net = cuttable()
      const { events } = yield* collect(
        Client.subscribeRecord("posts", "9", { baseUrl: yield* Server.baseUrl, fetch: net.fetch })
      )
      yield* until("live", () => events.filter((e) => e._tag === "State" && e.state === "live").length, (n) => n === 1)
      yield* Effect.flatMap(Hub.Hub, (hub) => eventually("registered", hub.totalSubscribers, (n) => n === 1))
      yield* publish("posts", "9", 1)
      yield* publish("posts", "9", 2)
      yield* until("2 events", () => records(events), (r) => r.length === 2)
      net.cut()
      yield* publish("posts", "9", 3)
      yield* until("the third, after a reconnect", () => records(events), (r) => r.length === 3)
      assert.deepStrictEqual(records(events), ["posts/9 9:1", "posts/9 9:2", "posts/9 9:3"])
    }).pipe(Effect.provide(app())))

  it.scopedLive("sends the Authorization header; a refusal ends the stream with a typed error, not a retry", () =>
    Effect.gen(function*() {
      const base = yield* Server.baseUrl
      const allowed = yield* collect(Client.subscribe(["posts/1"], { baseUrl: base, headers: () => ({ Authorization: "Bearer t" }) }))
      yield* until("the welcome", () => allowed.events.some((e) => e._tag === "Welcome"), (ok) => ok)
      const net = cuttable()
      const refused = yield* Effect.exit(
        Stream.runCollect(Client.subscribe(["posts/1"], { baseUrl: base, fetch: net.fetch }))
      )
      assert.isTrue(refused._tag === "Failure")
      const error = refused._tag === "Failure" && refused.cause._tag === "Fail" ? refused.cause.error : undefined
      assert.deepStrictEqual(
        error && { status: error.status, error: error.error, message: error.message },
        { status: 401, error: "unauthorized", message: "a token please" }
      )
      assert.strictEqual(net.connects(), 1)
      const invalid = yield* Effect.flip(Stream.runCollect(Client.subscribe(["not a topic"], { baseUrl: base, headers: { Authorization: "Bearer t" } })))
      assert.strictEqual(invalid.error, "invalid_topic")
    }).pipe(Effect.provide(app(Access.layer({
      authorize: (request) =>
        Effect.succeed(request.headers.get("authorization") === "Bearer t" ? Access.allow() : Access.deny(401, "a token please"))
    })))))

  it.scopedLive("the callback face: onRecord, onResync for fresh topics, and close() releases the server's subscriber", () =>
    Effect.gen(function*() {
      const got: Array<string> = []
      const resyncs: Array<string> = []
      const subscription = Client.connect(["posts/5"], {
        baseUrl: yield* Server.baseUrl,
        onRecord: (topic, event) => got.push(`${topic} ${event.type === "deleted" ? "-" : (event.record as { n: number }).n}`),
        onResync: (topic) => resyncs.push(topic)
      })
      const hub = yield* Hub.Hub
      yield* eventually("registered", hub.totalSubscribers, (n) => n === 1)
      yield* until("the welcome's fresh topic", () => resyncs, (r) => r.length > 0)
      assert.deepStrictEqual(resyncs, ["posts/5"])
      yield* publish("posts", "5", 1)
      yield* until("one event", () => got, (g) => g.length === 1)
      assert.deepStrictEqual(got, ["posts/5 1"])
      assert.isString(subscription.lastEventId())
      yield* Effect.promise(() => subscription.close())
      yield* Effect.promise(() => subscription.done)
      yield* eventually("released", hub.totalSubscribers, (n) => n === 0)
    }).pipe(Effect.provide(app())))
})

// A `fetch` that plays a script: each call takes the next step (a network
// failure, or a response whose body is `text` and then ends).
const scripted = (steps: ReadonlyArray<{ readonly fail: true } | { readonly text: string }>) => {
  const calls: Array<{ readonly at: number; readonly lastEventId: string | null }> = []
  let now = 0
  const fetch: Client.Fetch = (_input, init) => {
    const step = steps[calls.length]
    calls.push({ at: now, lastEventId: new Headers(init.headers).get("Last-Event-ID") })
    if (step === undefined) return new Promise(() => {})
    if ("fail" in step) return Promise.reject(new TypeError("network down"))
    return Promise.resolve(new Response(step.text, { headers: { "Content-Type": "text/event-stream" } }))
  }
  return {
    fetch,
    calls,
    /** Advance the test clock to `ms` in steps of 25 ms, noting when each call came. */
    advanceTo: (ms: number) =>
      Effect.gen(function*() {
        const settle = Effect.repeatN(Effect.yieldNow(), 10)
        yield* settle
        while (now < ms) {
          now += 25
          yield* TestClock.adjust(25)
          yield* settle
        }
      })
  }
}

describe("Client's waits between attempts (TestClock)", () => {
  it.scoped("backs off while it cannot connect, then waits the server's retry: after a stream ends, resuming from its last id", () =>
    Effect.gen(function*() {
      const welcome = (id: string) => `event: saacms-welcome\ndata: {"topics":[{"topic":"a/1","status":"fresh"}]}\nid: ${id}\n\n`
      const net = scripted([
        { fail: true },
        { fail: true },
        { text: `retry: 5000\n\n${welcome("C1")}` },
        { text: welcome("C2") }
      ])
      const { events, fiber } = yield* collect(
        Client.subscribe(["a/1"], { baseUrl: "http://server.test", fetch: net.fetch, retryMs: 1000, maxRetryMs: 60_000 })
      )
      yield* net.advanceTo(16_000)
      const at = net.calls.map((call) => call.at)
      assert.strictEqual(at.length, 5)
      assert.strictEqual(at[0], 0)
      // First failure: 1 000 ms plus up to half again of jitter; the second, doubled.
      assert.isAtLeast(at[1]! - at[0]!, 1_000)
      assert.isAtMost(at[1]! - at[0]!, 1_525)
      assert.isAtLeast(at[2]! - at[1]!, 2_000)
      assert.isAtMost(at[2]! - at[1]!, 3_025)
      // That stream said retry: 5000 and ended: that long (to the 25 ms step), no jitter.
      assert.isAtLeast(at[3]! - at[2]!, 5_000)
      assert.isAtMost(at[3]! - at[2]!, 5_025)
      assert.isAtLeast(at[4]! - at[3]!, 5_000)
      assert.isAtMost(at[4]! - at[3]!, 5_025)
      assert.deepStrictEqual(net.calls.map((call) => call.lastEventId), [null, null, null, "C1", "C2"])
      assert.deepStrictEqual(
        events.filter((e) => e._tag === "Welcome").map((e) => e._tag === "Welcome" && e.lastEventId),
        ["C1", "C2"]
      )
      yield* Fiber.interrupt(fiber)
    }))
})
