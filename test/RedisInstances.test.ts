/**
 * The Redis backend across processes: two demo hosts (`src/bin/bun.ts` under
 * Bun, `src/bin/node.ts` under Node, each a child process on its own port)
 * share one Redis, and clients talk to them over HTTP and real SSE. The demo's
 * record store is per instance; only the realtime layer is shared.
 *
 * - fan-out and replay across instances, on the shared test Redis under a
 *   key prefix of their own (deleted afterwards);
 * - many clients reconnecting with random last ids to random instances while
 *   both instances publish to one record: every client sees a contiguous run
 *   of the record's history (or `saacms-resync`);
 * - faults, on a private `redis-server` (SIGKILLed and restarted, its
 *   subscriber connections killed): publishing fails fast, open streams end,
 *   subscribes answer 503 with `Retry-After`, service resumes without
 *   restarting the hosts, and a subscriber never gets a silent hole.
 *
 * Set `REDIS_FAULT_TIMINGS=1` to print how fast the fault behaviour was.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import type { Redis as RedisClient } from "ioredis"
import * as Event from "../src/Event.js"
import * as Frame from "../src/Frame.js"
import * as Realtime from "../src/Realtime.js"
import * as RealtimeConfig from "../src/RealtimeConfig.js"
import * as Redis from "../src/Redis.js"
import * as Store from "../src/Redis/Store.js"
import * as EventSourceClient from "./utils/eventSource.js"
import { eventually } from "./utils/eventually.js"
import { key } from "./utils/layers.js"
import * as TestRedis from "./utils/redis.js"
import * as Server from "./utils/server.js"
import * as Sse from "./utils/sse.js"

const types = ["changed", "deleted", "saacms-resync"]

const since = (start: number) => Effect.map(Clock.currentTimeMillis, (now) => now - start)

/** Print a measurement (with `REDIS_FAULT_TIMINGS=1`); the tests assert bounds, not these numbers. */
const timing = (label: string, ms: number) =>
  process.env.REDIS_FAULT_TIMINGS ? Effect.sync(() => console.log(`${Server.runtime}: ${label}: ${ms} ms`)) : Effect.void

// ---------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------

const recordUrl = (base: string, id: string) => `${base}/api/saacms/v1/posts/${id}`

interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

/** The `error` code of a JSON error body. */
const errorOf = (text: string): unknown => {
  const body: unknown = JSON.parse(text)
  return typeof body === "object" && body !== null && "error" in body ? body.error : undefined
}

/** One request, answered (body read) within 5 s or the test fails: a hang is a failure. */
const request = (method: string, url: string, body?: string): Effect.Effect<Answer> =>
  Effect.tryPromise(async (signal) => {
    const response = await fetch(url, body === undefined ? { method, signal } : { method, body, signal })
    return { status: response.status, headers: response.headers, text: await response.text() }
  }).pipe(Effect.timeout("5 seconds"), Effect.orDie)

/** PUT a record; its ETag (the event's SSE id). */
const put = (base: string, id: string, record: unknown) =>
  Effect.flatMap(request("PUT", recordUrl(base, id), JSON.stringify(record)), (answer) => {
    const etag = answer.headers.get("etag")
    return answer.status === 200 && etag !== null
      ? Effect.succeed(etag)
      : Effect.dieMessage(`PUT ${id}: ${answer.status} ${answer.text}`)
  })

/** Open a subscribe stream (200 expected) and read it incrementally until the scope closes. */
const subscribe = (url: string, headers: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const response = yield* Effect.acquireRelease(
      Effect.sync(() => new AbortController()),
      (controller) => Effect.sync(() => controller.abort())
    ).pipe(
      Effect.flatMap((controller) => Effect.tryPromise(() => fetch(url, { headers, signal: controller.signal }))),
      Effect.timeout("5 seconds"),
      Effect.orDie
    )
    if (response.status !== 200) {
      const text = yield* Effect.promise(() => response.text())
      return yield* Effect.dieMessage(`subscribe ${url}: ${response.status} ${text}`)
    }
    return yield* Sse.reader(response)
  })

/** Whether a host accepts a subscriber of `url` now: its stream opens (`:keepalive`); then it is left. */
const accepts = (url: string) =>
  Effect.map(
    Effect.exit(Effect.scoped(Effect.flatMap(subscribe(url), (reader) => reader.readUntil(opened, "2 seconds")))),
    Exit.isSuccess
  )

/**
 * How a subscribe to `url` is answered, for a refusal: its status, `Retry-After`
 * and error code; or, for a 200, whether its body ended (within 3 s) and what
 * it carried. Never hangs: no answer within 3 s is an answer too.
 */
const refusal = (url: string) =>
  Effect.gen(function*() {
    const controller = yield* Effect.acquireRelease(
      Effect.sync(() => new AbortController()),
      (controller) => Effect.sync(() => controller.abort())
    )
    const response = yield* Effect.tryPromise(() => fetch(url, { signal: controller.signal })).pipe(Effect.timeout("3 seconds"))
    if (response.status === 200) {
      const reader = yield* Sse.reader(response)
      const received = yield* reader.readUntil((r) => r.done, "3 seconds").pipe(
        Effect.catchTag("ReadError", () => reader.received)
      )
      return `200, body ${received.done ? "ended" : "still open"} after ${JSON.stringify(received.text)}`
    }
    const text = yield* Effect.tryPromise(() => response.text())
    return `${response.status} ${String(errorOf(text))}, Retry-After: ${response.headers.get("retry-after")}`
  }).pipe(
    Effect.catchAll((error) => Effect.succeed(`no answer: ${String(error)}`)),
    Effect.scoped
  )

/** The stream has opened: its `:keepalive` arrived (the subscription is registered by then). */
const opened = (received: Sse.Received) => received.comments.length > 0
const atLeast = (n: number) => (received: Sse.Received) => received.events.length >= n

/** `[event, id, data]` of every event received. */
const triples = (received: Sse.Received) => received.events.map((e) => [e.event, e.id, e.data])

const changedFrame = (etag: string, record: unknown) => `event: changed\nid: ${etag}\ndata: ${JSON.stringify(record)}\n\n`

/** Two demo hosts of this runtime on free ports, sharing the realtime layer through `env`'s Redis. */
const twoHosts = (env: Record<string, string>) =>
  Effect.gen(function*() {
    const portA = yield* Server.freePort
    // The OS may hand out the port just released again: ask again, a bounded number of times.
    const portB = yield* Server.freePort.pipe(Effect.repeat({ until: (port) => port !== portA, times: 20 }))
    assert.notStrictEqual(portB, portA, "a second free port")
    const start = yield* Clock.currentTimeMillis
    yield* Effect.all([Server.entryPoint(portA, env), Server.entryPoint(portB, env)], { concurrency: 2 })
    const hosts = { a: `http://127.0.0.1:${portA}`, b: `http://127.0.0.1:${portB}` }
    // A host listens before its Redis connections are up (it answers 503 until they are).
    for (const base of [hosts.a, hosts.b]) {
      yield* eventually(`${base} follows records`, accepts(`${recordUrl(base, "ready")}/subscribe`), (ok) => ok, 200)
    }
    yield* timing("two hosts started", yield* since(start))
    return hosts
  })

// ---------------------------------------------------------------------------
// Two hosts over the shared Redis
// ---------------------------------------------------------------------------

class Hosts extends Context.Tag("test/RedisInstances/Hosts")<Hosts, {
  readonly a: string
  readonly b: string
  readonly keyPrefix: string
  readonly redis: RedisClient
}>() {}

/** History per record in the shared tests: small enough that the many-clients test trims it. */
const sharedMaxEvents = 30

const HostsLive = Layer.scoped(
  Hosts,
  Effect.gen(function*() {
    const keyPrefix = TestRedis.newPrefix()
    const redis = yield* TestRedis.connect()
    yield* Effect.addFinalizer(() => TestRedis.deleteKeys(redis, keyPrefix))
    const hosts = yield* twoHosts({
      REDIS_URL: TestRedis.url,
      REDIS_KEY_PREFIX: keyPrefix,
      REALTIME_MAX_EVENTS: String(sharedMaxEvents)
    })
    return { ...hosts, keyPrefix, redis }
  })
)

// Live services (real clock): the hosts are real processes.
layer(HostsLive, { timeout: "40 seconds", excludeTestServices: true })(`Two demo hosts over one Redis (${Server.runtime})`, (it) => {
  // Proves cross-process fan-out: what one instance publishes (PUT, then
  // DELETE) reaches an `eventsource` client of the other instance, in order,
  // with the ETags A answered as ids, over one connection.
  it.scoped("an EventSource on B gets, in order, the events PUT and DELETEd on A", () =>
    Effect.gen(function*() {
      const { a, b } = yield* Hosts
      const client = yield* EventSourceClient.open(`${recordUrl(b, "one")}/subscribe`, { types })
      yield* client.ready()
      const etags: Array<string> = []
      for (let n = 1; n <= 5; n++) etags.push(yield* put(a, "one", { n }))
      const gone = yield* request("DELETE", recordUrl(a, "one"))
      assert.strictEqual(gone.status, 204)

      const messages = yield* client.take(6)
      assert.deepStrictEqual(
        messages.slice(0, 5).map((m) => [m.type, m.lastEventId, m.data]),
        etags.map((etag, i) => ["changed", etag, JSON.stringify({ n: i + 1 })])
      )
      assert.strictEqual(messages[5]?.type, "deleted")
      assert.strictEqual(messages[5]?.data, JSON.stringify({ id: "one" }))
      assert.notInclude(etags, messages[5]?.lastEventId)
      assert.strictEqual(new Set(etags).size, 5)
      // One connection throughout, nothing else delivered.
      assert.strictEqual(client.attempts.length, 1)
      assert.strictEqual(yield* client.messages.size, 0)
    }))

  // Proves the history is shared: B replays what A published, from the
  // `Last-Event-ID` header and from `?lastEventId=`, byte for byte, and then
  // goes live; an id B's Redis does not hold gets exactly one `saacms-resync`
  // naming the newest event.
  it.scoped("B replays what A published, by Last-Event-ID and by ?lastEventId=; an unknown id gets saacms-resync", () =>
    Effect.gen(function*() {
      const { a, b } = yield* Hosts
      const etags: Array<string> = []
      for (let n = 1; n <= 4; n++) etags.push(yield* put(a, "two", { n }))
      const url = `${recordUrl(b, "two")}/subscribe`

      const byHeader = yield* subscribe(url, { "Last-Event-ID": etags[0]! })
      const replayed = yield* byHeader.readUntil(atLeast(3))
      assert.strictEqual(
        Sse.stripRetry(replayed.text),
        ":keepalive\n\n" + [2, 3, 4].map((n) => changedFrame(etags[n - 1]!, { n })).join("")
      )

      const byQuery = yield* subscribe(`${url}?lastEventId=${encodeURIComponent(etags[1]!)}`)
      assert.deepStrictEqual(triples(yield* byQuery.readUntil(atLeast(2))), [
        ["changed", etags[2], JSON.stringify({ n: 3 })],
        ["changed", etags[3], JSON.stringify({ n: 4 })]
      ])

      const unknown = yield* subscribe(url, { "Last-Event-ID": "\"not-an-etag-of-this-record\"" })
      const resynced = yield* unknown.readUntil(atLeast(1))
      assert.strictEqual(
        Sse.stripRetry(resynced.text),
        `:keepalive\n\nevent: saacms-resync\nid: ${etags[3]}\ndata: {"reason":"buffer-miss"}\n\n`
      )

      // Then live, from either instance, on all three streams.
      const five = yield* put(a, "two", { n: 5 })
      const six = yield* put(b, "two", { n: 6 })
      const live = [["changed", five, JSON.stringify({ n: 5 })], ["changed", six, JSON.stringify({ n: 6 })]]
      assert.deepStrictEqual(triples(yield* byHeader.readUntil(atLeast(5))).slice(3), live)
      assert.deepStrictEqual(triples(yield* byQuery.readUntil(atLeast(4))).slice(2), live)
      assert.deepStrictEqual(triples(yield* unknown.readUntil(atLeast(3))).slice(1), live)
    }))

  // Proves exact replay under concurrency across processes: while four
  // publishers (two per instance) PUT one record, 30 clients keep
  // reconnecting to a random instance, each time with a random last id (one
  // they could have seen, none, or a bogus one; by header or by query). Every
  // session's events must continue the record's history exactly where its
  // last id stands, one by one with no gap and no duplicate; a
  // `saacms-resync` is the only allowed break (an unknown or trimmed id, a
  // client that fell behind the 30-event history), and the run must continue
  // right after the id it names. Two observers (one per instance, connected
  // before the first publish, reading throughout) are held to the same rule
  // and must end at the newest event.
  // The record's order comes from outside the hosts: a client of the test
  // subscribed to the record's channel, where the append script publishes
  // every event with its sequence number. It must be 1..N, name every ETag
  // the PUTs answered once, and agree with the Stream Redis still holds.
  it.scoped("30 clients reconnecting with random last ids to random instances while both publish: contiguous runs or resync", () =>
    Effect.gen(function*() {
      const { a, b, keyPrefix, redis } = yield* Hosts
      const bases = { A: a, B: b } as const
      const perPublisher = 25
      const publishers = [["A", 0], ["A", 1], ["B", 0], ["B", 1]] as const
      const total = perPublisher * publishers.length
      const subscribeUrl = (base: string) => `${recordUrl(base, "1")}/subscribe`

      // The oracle: sequence number → id, as the append script publishes them.
      const published = new Map<number, string>()
      const channel = yield* TestRedis.connect()
      yield* Effect.promise(() => channel.subscribe(`{${keyPrefix}posts:1}:c`))
      channel.on("messageBuffer", (_channel: Buffer, message: Buffer) => {
        const decoded = Store.decodeMessage(message)
        if (decoded !== undefined) published.set(decoded.seq, decoded.id)
      })

      const observers = yield* Effect.all([subscribe(subscribeUrl(a)), subscribe(subscribeUrl(b))])
      for (const observer of observers) yield* observer.readUntil(opened)
      // Drained as the events come (a client that stops reading falls behind).
      yield* Effect.forEach(observers, (observer) => Effect.forkScoped(Effect.ignore(observer.readUntil(() => false, "60 seconds"))))

      // ETags of the PUTs answered so far: what a client could have seen.
      const seen: Array<string> = []
      let publishing = true
      const publish = Effect.forEach(publishers, ([instance, worker]) =>
        Effect.gen(function*() {
          for (let n = 1; n <= perPublisher; n++) {
            seen.push(yield* put(bases[instance], "1", { n, by: `${instance}${worker}` }))
          }
        }), { concurrency: "unbounded", discard: true }).pipe(Effect.ensuring(Effect.sync(() => (publishing = false))))

      interface Session {
        readonly name: string
        readonly last: string | undefined
        readonly events: ReadonlyArray<Sse.SseEvent>
      }
      const sessions: Array<Session> = []
      const session = Effect.gen(function*() {
        const instance = (yield* Random.nextBoolean) ? "A" : "B"
        const via = (yield* Random.nextBoolean) ? "header" : "query"
        const pick = yield* Random.next
        const last = pick < 0.15 || seen.length === 0
          ? undefined
          : pick < 0.25
          ? `"bogus-${yield* Random.nextInt}"`
          : seen[yield* Random.nextIntBetween(0, seen.length)]
        const url = last !== undefined && via === "query"
          ? `${subscribeUrl(bases[instance])}?lastEventId=${encodeURIComponent(last)}`
          : subscribeUrl(bases[instance])
        const reader = yield* subscribe(url, last !== undefined && via === "header" ? { "Last-Event-ID": last } : {})
        // Leave after a random number of events (or a second without any: publishing is over).
        const wanted = yield* Random.nextIntBetween(1, 9)
        const received = yield* reader.readUntil(atLeast(wanted), "1 second").pipe(
          Effect.catchTag("ReadError", (error) => error.reason === "timeout" ? reader.received : Effect.fail(error))
        )
        sessions.push({ name: `session ${sessions.length} on ${instance} by ${via}`, last, events: received.events })
      }).pipe(Effect.scoped)
      const client = Effect.gen(function*() {
        for (let round = 0; round < 4 && publishing; round++) yield* session
      })

      const clients = yield* Effect.fork(Effect.all(Array.from({ length: 30 }, () => client), { concurrency: "unbounded" }))
      const start = yield* Clock.currentTimeMillis
      yield* publish
      yield* timing(`${total} PUTs from four publishers`, yield* since(start))
      yield* Fiber.join(clients)

      // The record's order: sequence numbers 1..total, each PUT's ETag once.
      yield* eventually("every append reached the channel", Effect.sync(() => published.size), (size) => size >= total)
      const order = Array.from({ length: total }, (_, i) => published.get(i + 1) ?? `(no seq ${i + 1})`)
      assert.strictEqual(published.size, total)
      assert.deepStrictEqual([...order].sort(), [...seen].sort(), "the appends are not the PUTs, once each")
      const held = yield* Effect.promise(() => redis.xrange(`{${keyPrefix}posts:1}:s`, "-", "+"))
      assert.deepStrictEqual(
        held.map(([streamId, fields]) => [streamId, fields[fields.indexOf("id") + 1]]),
        order.slice(-sharedMaxEvents).map((id, i) => [`${total - sharedMaxEvents + i + 1}-0`, id])
      )

      // The observers reach the newest event.
      const newest = order.at(-1)
      for (const [name, observer] of [["A", observers[0]], ["B", observers[1]]] as const) {
        const received = yield* eventually(`observer on ${name} reaches the newest event`, observer.received, (r) =>
          r.events.at(-1)?.id === newest)
        sessions.push({ name: `observer on ${name}`, last: undefined, events: received.events })
      }

      const position = new Map(order.map((id, i) => [id, i]))
      const problems: Array<string> = []
      const resyncs: Array<string> = []
      let checked = 0
      for (const s of sessions) {
        // Where the client stands: after its last id (a bogus one: nowhere yet);
        // the observers were there before the first event.
        let at = s.name.startsWith("observer") ? -1 : s.last === undefined ? undefined : position.get(s.last)
        if (s.last !== undefined && at === undefined && s.events.length > 0 && s.events[0]!.event !== "saacms-resync") {
          problems.push(`${s.name}: unknown last id ${s.last} did not start with saacms-resync`)
        }
        for (const [i, e] of s.events.entries()) {
          const index = position.get(e.id ?? "")
          if (index === undefined) {
            problems.push(`${s.name} event ${i}: ${e.event} with id ${e.id} is not in the record's history`)
            break
          }
          if (e.event === "saacms-resync") {
            resyncs.push(`${s.name}: #${at} → #${index}`)
          } else if (at !== undefined && index !== at + 1) {
            problems.push(`${s.name} (last id ${s.last}) event ${i}: #${index} after #${at}`)
            break
          } else if (at !== undefined) checked++
          at = index
        }
      }
      yield* timing(`${sessions.length} sessions, ${checked} events checked in sequence, resyncs: ${resyncs.join("; ")}`, 0)
      assert.deepStrictEqual(problems, [])
      // Connected throughout and reading: every event, in order, no resync
      // (each instance delivers a record's frames as its channel orders them).
      for (const s of sessions.filter((s) => s.name.startsWith("observer"))) {
        assert.deepStrictEqual(s.events.map((e) => e.id), order, s.name)
      }
      // The run exercised what it claims to.
      assert.isAbove(sessions.length, 60)
      assert.isNotEmpty(resyncs)
      assert.isAbove(checked, total)
    }))
})

// ---------------------------------------------------------------------------
// Faults, on a private redis-server shared by two hosts
// ---------------------------------------------------------------------------

class Faulty extends Context.Tag("test/RedisInstances/Faulty")<Faulty, {
  readonly a: string
  readonly b: string
  readonly redis: TestRedis.PrivateServer
  /** A client of the private server that reconnects after a restart. */
  readonly admin: RedisClient
}>() {}

const faultPrefix = "fault:"

const FaultyLive = Layer.scoped(
  Faulty,
  Effect.gen(function*() {
    const redis = yield* TestRedis.privateServer(yield* Server.freePort)
    const admin = yield* TestRedis.connect({ retryStrategy: () => 50, maxRetriesPerRequest: 0 }, redis.url)
    const hosts = yield* twoHosts({ REDIS_URL: redis.url, REDIS_KEY_PREFIX: faultPrefix, REALTIME_MAX_EVENTS: "1000" })
    return { ...hosts, redis, admin }
  })
)

// The tests run in order: the first one must see the hosts' first reconnect.
layer(FaultyLive, { timeout: "40 seconds", excludeTestServices: true })(`Redis faults, two demo hosts (${Server.runtime})`, (it) => {
  // Proves gap repair after a subscriber-connection drop with Redis up: the
  // hosts' pub/sub connections are killed (`CLIENT KILL TYPE pubsub`) and
  // events are appended right behind the kill, on the same admin connection,
  // so they land while the hosts are reconnecting and their channel messages
  // are lost. Nothing is published after them, so only the host's sync after
  // its reconnect can deliver them (this is the hosts' first reconnect, the
  // one that was once skipped). Then the kill is repeated while the hosts
  // publish continuously. Every subscriber on every host must receive the
  // record's whole history (Redis's Stream, by sequence number), each event
  // once and in order: never a silent hole.
  it.scoped("CLIENT KILL TYPE pubsub while publishing: subscribers get every event once, in order", () =>
    Effect.gen(function*() {
      const { a, admin, b } = yield* Faulty
      // A third publisher on the admin connection (as another instance would append).
      const store = Store.make(admin, { keyPrefix: faultPrefix, maxEvents: 1000, maxAgeMs: 3_600_000, maxHistoryBytes: 1 << 26 })
      const appendOn = (n: number) =>
        Effect.gen(function*() {
          const id = `"admin-${n}"`
          const decoded = yield* Effect.orDie(
            Event.decode({ type: "changed", slug: "posts", id: "kill", record: { n, by: "admin" }, etag: id })
          )
          const frame = Either.getOrThrow(Frame.encode(decoded.event, id))
          const now = yield* Clock.currentTimeMillis
          return yield* Effect.orDie(store.append(decoded.key, id, frame, now))
        })

      const readers = yield* Effect.all([a, a, b, b].map((base) => subscribe(`${recordUrl(base, "kill")}/subscribe`)))
      for (const reader of readers) yield* reader.readUntil(opened)
      let n = 0
      for (; n < 10; n++) yield* put(n % 2 === 0 ? a : b, "kill", { n })
      yield* appendOn(n++) // loads the script, so the appends below need one round trip each

      // The kill, and three appends queued right behind it on the same connection
      // (the fibers start in order, and each writes its command before it waits).
      const [, ...burst] = yield* Effect.all([
        Effect.promise(() => admin.client("KILL", "TYPE", "pubsub")),
        appendOn(n++),
        appendOn(n++),
        appendOn(n++)
      ], { concurrency: "unbounded" })
      assert.deepStrictEqual(burst.map((appended) => appended.entry.seq), [12, 13, 14])
      const killed = yield* Clock.currentTimeMillis
      for (const reader of readers) yield* reader.readUntil(atLeast(14), "5 seconds")
      yield* timing("events appended during the pub/sub reconnect delivered", yield* since(killed))

      // Again, while both hosts publish.
      const publishing = yield* Effect.fork(Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) =>
        put(i % 2 === 0 ? a : b, "kill", { n: 100 + i }), { concurrency: 2, discard: true }))
      const stream = `{${faultPrefix}posts:kill}:s`
      yield* eventually("publishing has started", Effect.promise(() => admin.xlen(stream)), (length) => length >= 18)
      yield* Effect.promise(() => admin.client("KILL", "TYPE", "pubsub"))
      yield* Fiber.join(publishing)

      const held = yield* Effect.promise(() => admin.xrange(stream, "-", "+"))
      assert.deepStrictEqual(held.map(([streamId]) => streamId), Array.from({ length: 34 }, (_, i) => `${i + 1}-0`))
      const order = held.map(([, fields]) => fields[fields.indexOf("id") + 1])
      for (const reader of readers) {
        const received = yield* reader.readUntil((r) => r.events.at(-1)?.id === order.at(-1), "5 seconds")
        const events = received.events
        const resyncAt = events.findIndex((e) => e.event === "saacms-resync")
        if (resyncAt === -1) {
          assert.deepStrictEqual(events.map((e) => e.id), order)
        } else {
          // A resync is allowed, never a hole: before it a prefix, after it what follows the id it names.
          const after = order.indexOf(events[resyncAt]!.id!)
          assert.deepStrictEqual(events.slice(0, resyncAt).map((e) => e.id), order.slice(0, resyncAt))
          assert.deepStrictEqual(events.slice(resyncAt + 1).map((e) => e.id), order.slice(after + 1))
        }
      }
    }))

  // Proves, end to end over HTTP, what a host does when Redis dies (SIGKILL)
  // and comes back empty on the same port, with neither host restarted:
  // - a PUT answers 503 with `Retry-After` within a second or so, never hangs;
  // - open streams end (the raw ones' bodies end; the EventSource sees the
  //   connection drop and wants to reconnect);
  // - a subscribe answers 503 with `Retry-After` while Redis is down;
  // - after the restart publishing works again, the EventSource reconnected
  //   with its old Last-Event-ID gets `saacms-resync` (the history is gone),
  //   and old and new subscribers on both hosts receive new events;
  // - a record whose subscribers were cut by the outage is not followed after
  //   it (no channel subscription left behind).
  it.scoped("SIGKILL of Redis: publish fails fast, streams end, 503 + Retry-After; after a restart service resumes", () =>
    Effect.gen(function*() {
      const { a, admin, b, redis } = yield* Faulty
      const e1 = yield* put(a, "down", { n: 1 })
      const rawA = yield* subscribe(`${recordUrl(a, "down")}/subscribe`)
      const quietB = yield* subscribe(`${recordUrl(b, "quiet")}/subscribe`)
      const esB = yield* EventSourceClient.open(`${recordUrl(b, "down")}/subscribe?lastEventId=${encodeURIComponent(e1)}`, {
        types
      })
      yield* esB.ready()
      yield* Effect.all([rawA.readUntil(opened), quietB.readUntil(opened)])
      const e2 = yield* put(a, "down", { n: 2 })
      assert.deepStrictEqual((yield* esB.take(1)).map((m) => m.lastEventId), [e2])
      assert.deepStrictEqual((yield* rawA.readUntil(atLeast(1))).events.map((e) => e.id), [e2])

      const killed = yield* Clock.currentTimeMillis
      yield* redis.kill

      // Open streams end.
      const ends = yield* Effect.fork(Effect.all([
        Effect.zipRight(rawA.readUntil((r) => r.done, "5 seconds"), since(killed)),
        Effect.zipRight(quietB.readUntil((r) => r.done, "5 seconds"), since(killed)),
        Effect.zipRight(Queue.take(esB.errors).pipe(Effect.timeout("5 seconds")), since(killed))
      ], { concurrency: "unbounded" }))

      // A publish answers 503, fast, on either host; nothing was published.
      for (const [name, base] of [["A", a], ["B", b]] as const) {
        const start = yield* Clock.currentTimeMillis
        const answer = yield* request("PUT", recordUrl(base, "down"), JSON.stringify({ n: 3 }))
        yield* timing(`PUT on ${name} answered ${answer.status} after the kill`, yield* since(start))
        assert.strictEqual(answer.status, 503, answer.text)
        assert.strictEqual(answer.headers.get("retry-after"), "1")
        assert.strictEqual(errorOf(answer.text), "unavailable")
      }
      const [rawEnd, quietEnd, esEnd] = yield* Fiber.join(ends)
      yield* timing("raw stream on A ended", rawEnd)
      yield* timing("quiet stream on B ended", quietEnd)
      yield* timing("EventSource on B saw its stream drop", esEnd)
      assert.deepStrictEqual((yield* rawA.received).events.map((e) => e.id), [e2])

      // Subscribes are refused, on both hosts (asserted at the end, so that
      // the rest of the behaviour is checked whatever they answer).
      const refusals = yield* Effect.forEach([a, b], (base) => refusal(`${recordUrl(base, "down")}/subscribe`))

      // Redis comes back empty on the same port: publishing works again.
      yield* redis.start
      const restarted = yield* Clock.currentTimeMillis
      for (const [name, base] of [["A", a], ["B", b]] as const) {
        yield* eventually(
          `PUT on ${name} succeeds again`,
          request("PUT", recordUrl(base, "down"), JSON.stringify({ n: 3, on: name })),
          (answer) => answer.status === 200
        )
        yield* timing(`PUT on ${name} succeeded after the restart`, yield* since(restarted))
      }
      const e3 = yield* put(a, "down", { n: 3 })

      // B follows records again once its subscriber connection is back too (until then: 503).
      yield* eventually("B accepts subscribers again", accepts(`${recordUrl(b, "probe")}/subscribe`), (ok) => ok)
      yield* timing("B accepted a subscriber after the restart", yield* since(restarted))
      // The EventSource reconnects with its old id: the history is gone, it resyncs to the newest event.
      yield* esB.allowReconnect
      assert.strictEqual((yield* esB.ready()).lastEventId, e2)
      const [resync] = yield* esB.take(1)
      assert.deepStrictEqual([resync?.type, resync?.lastEventId], ["saacms-resync", e3])

      // New subscribers on both hosts, and new events from both reach everyone.
      const freshA = yield* subscribe(`${recordUrl(a, "down")}/subscribe`)
      const freshB = yield* subscribe(`${recordUrl(b, "down")}/subscribe`)
      yield* Effect.all([freshA.readUntil(opened), freshB.readUntil(opened)])
      const e4 = yield* put(a, "down", { n: 4 })
      const e5 = yield* put(b, "down", { n: 5 })
      assert.deepStrictEqual((yield* esB.take(2)).map((m) => [m.type, m.lastEventId]), [["changed", e4], ["changed", e5]])
      for (const fresh of [freshA, freshB]) {
        assert.deepStrictEqual((yield* fresh.readUntil(atLeast(2))).events.map((e) => e.id), [e4, e5])
      }
      yield* timing("service fully resumed after the restart", yield* since(restarted))

      // posts/quiet lost its only subscriber in the outage: neither host follows it now.
      const channel = (id: string) => `{${faultPrefix}posts:${id}}:c`
      const numsub = yield* Effect.promise(() => admin.pubsub("NUMSUB", channel("quiet"), channel("down")))
      assert.deepStrictEqual(numsub, [channel("quiet"), 0, channel("down"), 2])

      // While Redis was down, subscribes were refused with 503 and Retry-After.
      assert.deepStrictEqual(refusals, Array(2).fill("503 unavailable, Retry-After: 1"))
    }))
})

describe(`Redis faults, in process (${Server.runtime})`, () => {
  // Proves the same at the core, in process, with the typed errors: while
  // Redis is down `publish` and `subscribe` fail with `Unavailable` (fast),
  // an open stream ends (it does not fail, it does not hang); after a restart
  // on the same port, publishing works again and a subscriber with a last id
  // from before the outage gets `saacms-resync`, then live events.
  it.live("Unavailable while Redis is down, streams end, service resumes after a restart", () =>
    Effect.gen(function*() {
      const redis = yield* TestRedis.privateServer(yield* Server.freePort)
      const context = yield* Layer.build(
        Redis.layer({ url: redis.url, keyPrefix: "core:" }).pipe(Layer.provide(RealtimeConfig.layer({})))
      )
      const realtime = Context.get(context, Realtime.Realtime)
      const posts1 = key("posts", "1")
      const changed = (n: number) => ({ type: "changed", slug: "posts", id: "1", record: { n }, etag: `e${n}` }) as const

      // The layer is built before its connections are up (subscribes are Unavailable until they are).
      yield* eventually("the core is connected", Effect.exit(Stream.runHead(realtime.subscribe(posts1))), Exit.isSuccess)
      yield* realtime.publish(changed(1))
      const pull = yield* Stream.toPull(realtime.subscribe(posts1, "e1"))
      yield* pull // the opening
      yield* realtime.publish(changed(2))
      assert.deepStrictEqual(Sse.parse(Array.from(yield* pull)).map((e) => e.id), ["e2"])

      const killed = yield* Clock.currentTimeMillis
      yield* redis.kill
      const end = yield* Effect.fork(Effect.gen(function*() {
        while (true) {
          const exit = yield* Effect.exit(pull)
          if (Exit.isFailure(exit)) return exit
        }
      }).pipe(Effect.timeout("5 seconds")))

      const start = yield* Clock.currentTimeMillis
      const failed = yield* Effect.flip(realtime.publish(changed(3)))
      yield* timing("in process: publish failed after the kill", yield* since(start))
      assert.strictEqual(failed._tag, "Unavailable")
      assert.isBelow(yield* since(start), 3000)

      // The open stream ends: it completes (the client reconnects), it does not fail.
      const ended = yield* Fiber.join(end)
      yield* timing("in process: open stream ended", yield* since(killed))
      assert.deepStrictEqual(
        Exit.match(ended, { onFailure: Cause.failureOption, onSuccess: () => Option.none() }),
        Option.some(Option.none())
      )

      const refused = yield* Effect.flip(Stream.runHead(realtime.subscribe(posts1)))
      assert.strictEqual(refused._tag, "Unavailable")

      yield* redis.start
      const restarted = yield* Clock.currentTimeMillis
      const published = yield* realtime.publish(changed(4)).pipe(
        Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 250 })
      )
      yield* timing("in process: publish succeeded after the restart", yield* since(restarted))
      assert.deepStrictEqual(published, { key: posts1, id: "e4", seq: 1 })

      // The subscriber connection reconnects on its own (until then a subscribe is Unavailable).
      yield* eventually("subscribers are accepted again", Effect.exit(Stream.runHead(realtime.subscribe(posts1))), Exit.isSuccess)
      yield* timing("in process: subscribe succeeded after the restart", yield* since(restarted))
      const back = yield* Stream.toPull(realtime.subscribe(posts1, "e2"))
      const opening = Sse.parse(Array.from(yield* back))
      assert.deepStrictEqual(opening.map((e) => [e.event, e.id]), [["saacms-resync", "e4"]])
      yield* realtime.publish(changed(5))
      assert.deepStrictEqual(Sse.parse(Array.from(yield* back)).map((e) => [e.event, e.id]), [["changed", "e5"]])
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Error)))
})
