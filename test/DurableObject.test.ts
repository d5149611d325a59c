/**
 * The Durable Object backend in the real Workers runtime (workerd through
 * Miniflare), over real sockets: the test Worker mounts the PluginDef with a
 * `SAACMS_REALTIME` binding on Hono (test/workers/realtime.ts). Time in workerd
 * is real (TestClock cannot reach it): heartbeat and age use short intervals
 * and wait on conditions, never fixed sleeps.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as net from "node:net"
import * as Namespace from "../src/DurableObject/Namespace.js"
import * as Event from "../src/Event.js"
import * as Realtime from "../src/Realtime.js"
import { eventually } from "./utils/eventually.js"
import * as Sse from "./utils/sse.js"
import * as Workerd from "./utils/workerd.js"

const entry = new URL("./workers/realtime.ts", import.meta.url).pathname

class Runtime extends Context.Tag("test/Runtime")<Runtime, Workerd.Workerd>() {}
const runtime = (vars: Record<string, string>) => Layer.scoped(Runtime, Workerd.start({ entry, vars }))

const request = (path: string, init?: RequestInit) =>
  Effect.flatMap(Runtime, ({ url }) => Effect.promise(() => fetch(new URL(path, url), init)))

/** POST `body` chunked over a socket of its own; the raw answer, or "reset" when the server cut it first. */
const rawPost = (path: string, body: string) =>
  Effect.flatMap(Runtime, ({ url }) =>
    Effect.async<string>((resume) => {
      const { hostname, port } = new URL(url)
      const socket = net.connect(Number(port), hostname)
      let answer = ""
      socket.on("data", (chunk) => (answer += chunk.toString()))
      socket.on("error", () => resume(Effect.succeed(answer === "" ? "reset" : answer)))
      socket.on("close", () => resume(Effect.succeed(answer === "" ? "reset" : answer)))
      socket.on("connect", () => {
        const bytes = Buffer.from(body)
        socket.write(`POST ${path} HTTP/1.1\r\nHost: ${hostname}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`)
        socket.write(`${bytes.length.toString(16)}\r\n`)
        socket.write(bytes)
        socket.end("\r\n0\r\n\r\n")
      })
      return Effect.sync(() => socket.destroy())
    }).pipe(Effect.timeout("10 seconds"), Effect.orElseSucceed(() => "timeout")))

const json = (response: Response) => Effect.promise(() => response.json() as Promise<Record<string, unknown>>)

const changed = (id: string, n: number, etag?: string) => ({
  type: "changed" as const,
  slug: "posts",
  id,
  record: { id, n },
  ...(etag === undefined ? {} : { etag })
})

/** Publish through the plugin (`services.realtime.publish` in the Worker). */
const publish = (event: unknown) =>
  Effect.flatMap(request("/publish", { method: "POST", body: JSON.stringify(event) }), (response) =>
    Effect.map(json(response), (body) => ({ status: response.status, body })))

/** Subscribe through the plugin route, as a browser would. */
const subscribe = (id: string, headers: Record<string, string> = {}, query = "") =>
  Effect.flatMap(
    request(`/api/saacms/v1/posts/${id}/subscribe${query}`, { headers }),
    (response) => Effect.map(Sse.reader(response), (reader) => ({ response, reader }))
  )

/** The object's own account of itself (binding `GET` with `Accept: application/json`). */
/** The object's own account of itself, sockets included. */
const statsOf = (id: string) =>
  Effect.flatMap(
    request(`/object/posts:${id}`, { headers: { Accept: "application/json" } }),
    (response) =>
      json(response) as Effect.Effect<{ subscribers: number; sockets: number; heartbeats: number; stored: number; instance: string }>
  )

/** The object's counts; these tests subscribe in stream mode, so the object holds no socket. */
const stats = (id: string) =>
  Effect.map(statsOf(id), ({ heartbeats, sockets, stored, subscribers }) => {
    assert.strictEqual(sockets, 0)
    return { subscribers, heartbeats, stored }
  })

const ids = (received: Sse.Received) => received.events.map((event) => event.id)

// Frames capped at 4 KiB: oversized bodies stay small enough that the client has sent
// all of one before the object answers (a 2 MiB body raced the early 413: ECONNRESET).
layer(runtime({ REALTIME_MAX_EVENTS: "5", REALTIME_MAX_FRAME_BYTES: "4096" }), { timeout: 60_000, excludeTestServices: true })("SaacmsRealtimeDO in workerd", (it) => {
  it.scoped("subscribers reached through some requests receive what others publish, once and in order", () =>
    Effect.gen(function*() {
      const subscribers = yield* Effect.all([subscribe("fan"), subscribe("fan"), subscribe("fan")])
      yield* Effect.forEach(subscribers, ({ reader }) => reader.readUntil((r) => r.comments.length > 0))
      for (const [n, response] of subscribers.entries()) {
        assert.strictEqual(response.response.status, 200, `subscriber ${n}`)
        assert.strictEqual(response.response.headers.get("content-type"), "text/event-stream")
      }
      for (let n = 1; n <= 3; n++) {
        const { body, status } = yield* publish(changed("fan", n, `e${n}`))
        assert.strictEqual(status, 200)
        assert.deepStrictEqual(body, { key: "posts:fan", id: `e${n}`, seq: n })
      }
      for (const { reader } of subscribers) {
        const received = yield* reader.readUntil(Sse.hasEvents(3))
        assert.strictEqual(
          Sse.stripRetry(received.text),
          ":keepalive\n\n" + [1, 2, 3].map((n) => `event: changed\nid: e${n}\ndata: {"id":"fan","n":${n}}\n\n`).join("")
        )
      }
    }))

  it.scoped("a client that reconnects with Last-Event-ID (or ?lastEventId=) gets what it missed, in order", () =>
    Effect.gen(function*() {
      for (let n = 1; n <= 4; n++) yield* publish(changed("replay", n, `r${n}`))
      const byHeader = yield* subscribe("replay", { "Last-Event-ID": "r2" })
      assert.deepStrictEqual(ids(yield* byHeader.reader.readUntil(Sse.hasEvents(2))), ["r3", "r4"])
      const byQuery = yield* subscribe("replay", {}, "?lastEventId=r1")
      assert.deepStrictEqual(ids(yield* byQuery.reader.readUntil(Sse.hasEvents(3))), ["r2", "r3", "r4"])
      // Then live frames follow the replay, without a repeat.
      yield* publish(changed("replay", 5, "r5"))
      assert.deepStrictEqual(ids(yield* byHeader.reader.readUntil(Sse.hasEvents(3))), ["r3", "r4", "r5"])
      assert.deepStrictEqual(ids(yield* byQuery.reader.readUntil(Sse.hasEvents(4))), ["r2", "r3", "r4", "r5"])
    }))

  it.scoped("an evicted or unknown id gets one saacms-resync with the newest id; count retention holds in storage", () =>
    Effect.gen(function*() {
      for (let n = 1; n <= 8; n++) yield* publish(changed("evict", n, `v${n}`))
      assert.strictEqual((yield* stats("evict")).stored, 5)
      for (const last of ["v2", "never-sent"]) {
        const { reader } = yield* subscribe("evict", { "Last-Event-ID": last })
        const received = yield* reader.readUntil(Sse.hasEvents(1))
        assert.strictEqual(Sse.stripRetry(received.text), `:keepalive\n\nevent: saacms-resync\nid: v8\ndata: {"reason":"buffer-miss"}\n\n`)
      }
      // The oldest id still held replays normally.
      const { reader } = yield* subscribe("evict", { "Last-Event-ID": "v4" })
      assert.deepStrictEqual(ids(yield* reader.readUntil(Sse.hasEvents(4))), ["v5", "v6", "v7", "v8"])
    }))

  it.scoped("malformed publish bodies get a 4xx JSON answer and change nothing", () =>
    Effect.gen(function*() {
      const { reader } = yield* subscribe("bad")
      yield* reader.readUntil((r) => r.comments.length > 0)
      yield* publish(changed("bad", 1, "b1"))
      const direct = (body: string, headers: Record<string, string> = {}) =>
        Effect.flatMap(request("/object/posts:bad", { method: "POST", body, headers }), (response) =>
          Effect.map(json(response), (answer) => [response.status, answer.error]))
      assert.deepStrictEqual(yield* direct("{"), [400, "invalid_json"])
      assert.deepStrictEqual(yield* direct("[1,2]"), [400, "invalid_event"])
      assert.deepStrictEqual(yield* direct(JSON.stringify({ ...changed("bad", 2), type: "updated" })), [400, "invalid_event"])
      assert.deepStrictEqual(yield* direct(JSON.stringify(changed("bad", 2, "b2\nevent: hijack"))), [400, "invalid_event"])
      assert.deepStrictEqual(yield* direct(JSON.stringify({ ...changed("bad", 2), slug: "a:b" })), [400, "invalid_resource_key"])
      assert.deepStrictEqual(yield* direct(JSON.stringify(changed("other", 2, "b2"))), [409, "wrong_record"])
      const padded = (bytes: number) => JSON.stringify({ ...changed("bad", 2, "b2"), record: { pad: "x".repeat(bytes) } })
      const tooLarge = (body: string) =>
        Effect.flatMap(request("/object/posts:bad", { method: "POST", body }), (response) =>
          Effect.map(json(response), (answer) => [response.status, answer.error, String(answer.message).split(" ").slice(0, 3).join(" ")]))
      // Read, encoded, and over the limit.
      assert.deepStrictEqual(yield* tooLarge(padded(6_000)), [413, "frame_too_large", "the encoded frame"])
      // Refused once it passes the limit: the test Worker forwards the body as a
      // stream, without its Content-Length (the plugin sends one, and it is refused unread).
      // workerd then closes the connection with the rest of the body unread, so
      // the client may see a reset before it reads the 413 (a refusal either way:
      // what follows checks that nothing was stored or sent). On a socket of its
      // own, so that no pooled connection of the other requests is the one closed.
      const streamed = yield* rawPost("/object/posts:bad", padded(20_000))
      assert.isTrue(streamed === "reset" || streamed.startsWith("HTTP/1.1 413"), streamed.slice(0, 200))
      if (streamed !== "reset") assert.include(streamed, "\"the body is")
      // Through the plugin too (validated in the Worker, before any round trip).
      assert.deepStrictEqual((yield* publish({ ...changed("bad", 2), etag: "b\r2" })).status, 400)
      // Nothing was stored or sent: the next good event follows the first.
      assert.strictEqual((yield* stats("bad")).stored, 1)
      yield* publish(changed("bad", 3, "b3"))
      const received = yield* reader.readUntil(Sse.hasEvents(2))
      assert.deepStrictEqual(ids(received), ["b1", "b3"])
      assert.notInclude(received.text, "hijack")
    }))

  it.scoped("a bad resource key or Last-Event-ID on the route gets a 400 and opens nothing", () =>
    Effect.gen(function*() {
      const badKey = yield* request("/api/saacms/v1/posts/a:b/subscribe")
      assert.strictEqual(badKey.status, 400)
      assert.strictEqual((yield* json(badKey)).error, "invalid_resource_key")
      const badLast = yield* request("/api/saacms/v1/posts/lastid/subscribe", { headers: { "Last-Event-ID": "x".repeat(300) } })
      assert.strictEqual(badLast.status, 400)
      assert.strictEqual((yield* json(badLast)).error, "invalid_last_event_id")
      assert.deepStrictEqual(yield* stats("lastid"), { subscribers: 0, heartbeats: 0, stored: 0 })
    }))
})

layer(runtime({ REALTIME_HEARTBEAT_MS: "200" }), { timeout: 60_000, excludeTestServices: true })("SaacmsRealtimeDO access in workerd", (it) => {
  it.scoped("the Worker's authorize refuses before any object is asked", () =>
    Effect.gen(function*() {
      const response = yield* request("/api/saacms/v1/posts/denied/subscribe", { headers: { "x-test-deny": "1" } })
      assert.strictEqual(response.status, 403)
      assert.deepStrictEqual(yield* json(response), { error: "forbidden", message: "denied by test" })
      assert.strictEqual((yield* stats("denied")).subscribers, 0)
    }))

  it.scoped("the grant's expiry travels to the object, which ends the stream with saacms-revoked", () =>
    Effect.gen(function*() {
      const { reader } = yield* subscribe("expiring", { "x-test-expires-in": "600" })
      yield* reader.readUntil((r) => r.comments.length > 0)
      assert.strictEqual((yield* stats("expiring")).subscribers, 1)
      const received = yield* reader.readUntil((r) => r.done)
      assert.deepStrictEqual(received.events.map((e) => [e.event, e.data]), [["saacms-revoked", "{\"reason\":\"expired\"}"]])
      yield* eventually("released", stats("expiring"), (s) => s.subscribers === 0)
    }))

  it.scoped("the object's recheck sees the subject the Worker forwarded", () =>
    Effect.gen(function*() {
      const alice = yield* subscribe("secret", { "x-test-user": "alice" })
      const bob = yield* subscribe("secret", { "x-test-user": "bob" })
      yield* Effect.forEach([alice, bob], ({ reader }) => reader.readUntil((r) => r.comments.length > 0))
      yield* publish({ ...changed("secret", 1, "p1"), record: { private: true, owner: "alice" } })
      const bobs = yield* bob.reader.readUntil((r) => r.done)
      assert.deepStrictEqual(bobs.events.map((e) => [e.event, e.data]), [["saacms-revoked", "{\"reason\":\"forbidden\"}"]])
      const alices = yield* alice.reader.readUntil(Sse.hasEvents(1))
      assert.deepStrictEqual(alices.events.map((e) => [e.event, e.id]), [["changed", "p1"]])
      yield* eventually("bob released", stats("secret"), (s) => s.subscribers === 1)
    }))
})

// workerd never tells an object that a client went away (its stream's cancel
// never runs): the object finds out when a write to the client fails, which
// heartbeats and publishes both do.
layer(runtime({ REALTIME_HEARTBEAT_MS: "200" }), { timeout: 60_000, excludeTestServices: true })("SaacmsRealtimeDO heartbeat in workerd", (it) => {
  it.scoped("a client that leaves is released within a few heartbeats; the others get every event", () =>
    Effect.gen(function*() {
      const first = yield* subscribe("leave")
      const second = yield* subscribe("leave")
      yield* Effect.forEach([first, second], ({ reader }) => reader.readUntil((r) => r.comments.length > 0))
      assert.deepStrictEqual(yield* stats("leave"), { subscribers: 2, heartbeats: 1, stored: 0 })
      yield* first.reader.cancel
      yield* eventually("one left", stats("leave"), (s) => s.subscribers === 1)
      for (let n = 1; n <= 3; n++) yield* publish(changed("leave", n, `l${n}`))
      assert.deepStrictEqual(ids(yield* second.reader.readUntil(Sse.hasEvents(3))), ["l1", "l2", "l3"])
      assert.strictEqual((yield* stats("leave")).heartbeats, 1)
      yield* second.reader.cancel
      yield* eventually("all left", stats("leave"), (s) => s.subscribers === 0 && s.heartbeats === 0)
    }))

  it.scoped("a client whose connection drops unannounced is released within a few heartbeats", () =>
    Effect.gen(function*() {
      const { url } = yield* Runtime
      // A raw socket: read the response head, then drop the connection.
      yield* Effect.promise(() =>
        new Promise<void>((resolve, reject) => {
          const socket = net.connect(Number(url.port), url.hostname, () =>
            socket.write(`GET /api/saacms/v1/posts/drop/subscribe HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`))
          socket.once("data", (head) => {
            if (!String(head).startsWith("HTTP/1.1 200")) reject(new Error(String(head)))
            socket.destroy()
            resolve()
          })
          socket.once("error", reject)
        })
      )
      assert.strictEqual((yield* stats("drop")).subscribers, 1)
      yield* eventually("released", stats("drop"), (s) => s.subscribers === 0 && s.heartbeats === 0)
    }))

  it.scoped("in stream mode the object holding a client's stream is never evicted while it is open, even with nobody publishing", () =>
    Effect.gen(function*() {
      const { reader } = yield* subscribe("pinned")
      yield* reader.readUntil((r) => r.comments.length > 0)
      const before = yield* statsOf("pinned")
      // The runtime's idle period (10 s, see the socket suite) passes without an eviction:
      // the open response and the heartbeat keep the object in memory, and billed.
      yield* Effect.sleep("11 seconds")
      const after = yield* statsOf("pinned")
      assert.strictEqual(after.subscribers, 1)
      assert.strictEqual(after.instance, before.instance)
    }), 30_000)

  it.scoped("an idle stream gets :keepalive every heartbeat, and the heartbeat stops with its last client", () =>
    Effect.gen(function*() {
      const { reader } = yield* subscribe("beat")
      const received = yield* reader.readUntil((r) => r.comments.length >= 3)
      assert.strictEqual(Sse.stripRetry(received.text).slice(0, 36), ":keepalive\n\n:keepalive\n\n:keepalive\n\n")
      assert.lengthOf(received.events, 0)
      assert.strictEqual((yield* stats("beat")).heartbeats, 1)
      yield* reader.cancel
      yield* eventually("heartbeat stopped", stats("beat"), (s) => s.subscribers === 0 && s.heartbeats === 0)
    }))
})

layer(runtime({ REALTIME_MAX_AGE_MS: "1000" }), { timeout: 60_000, excludeTestServices: true })("SaacmsRealtimeDO age retention in workerd", (it) => {
  it.scoped("events age out of storage by the object's alarm, with nobody publishing or subscribing", () =>
    Effect.gen(function*() {
      for (let n = 1; n <= 3; n++) yield* publish(changed("age", n, `a${n}`))
      const before = yield* stats("age")
      // `stats` only counts what storage holds; it trims nothing, so only the alarm empties it.
      assert.strictEqual(before.stored, 3)
      yield* eventually("aged out", stats("age"), (s) => s.stored === 0, 1000)
      // A client that saw the newest event owes nothing; one that saw an older one resyncs.
      const current = yield* subscribe("age", { "Last-Event-ID": "a3" })
      yield* current.reader.readUntil((r) => r.comments.length > 0)
      const stale = yield* subscribe("age", { "Last-Event-ID": "a1" })
      const resync = yield* stale.reader.readUntil(Sse.hasEvents(1))
      assert.deepStrictEqual(resync.events.map((e) => [e.event, e.id]), [["saacms-resync", "a3"]])
      yield* publish(changed("age", 4, "a4"))
      assert.deepStrictEqual(ids(yield* current.reader.readUntil(Sse.hasEvents(1))), ["a4"])
    }))
})

describe("SaacmsRealtimeDO across restarts", () => {
  it.live("a restarted runtime replays from the same storage and continues the sequence", () =>
    Effect.gen(function*() {
      const persist = Workerd.tempDir()
      yield* Effect.scoped(Effect.gen(function*() {
        const { url } = yield* Workerd.start({ entry, persist })
        for (let n = 1; n <= 3; n++) {
          yield* publish(changed("restart", n, `s${n}`)).pipe(Effect.provideService(Runtime, { url } as Workerd.Workerd))
        }
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const workerd = yield* Workerd.start({ entry, persist })
        const { reader } = yield* subscribe("restart", { "Last-Event-ID": "s1" }).pipe(Effect.provideService(Runtime, workerd))
        assert.deepStrictEqual(ids(yield* reader.readUntil(Sse.hasEvents(2))), ["s2", "s3"])
        const next = yield* publish(changed("restart", 4, "s4")).pipe(Effect.provideService(Runtime, workerd))
        assert.deepStrictEqual(next.body, { key: "posts:restart", id: "s4", seq: 4 })
        assert.deepStrictEqual(ids(yield* reader.readUntil(Sse.hasEvents(3))), ["s2", "s3", "s4"])
      }))
    }), 60_000)
})

describe("Namespace.layer: Realtime over the binding, for Effect apps", () => {
  it.live("publishes and subscribes through the record's object, and validates before any round trip", () =>
    Effect.gen(function*() {
      const { miniflare } = yield* Runtime
      const namespace = yield* Effect.promise(() => miniflare.getDurableObjectNamespace("SAACMS_REALTIME"))
      // Miniflare's Node-side stubs take their own undici's Request: pass ours as url and init.
      const binding: Namespace.DurableObjectNamespaceLike = {
        idFromName: (name) => namespace.idFromName(name),
        get: (id) => ({
          fetch: async (request) => {
            const stub = namespace.get(id as ReturnType<typeof namespace.idFromName>)
            const init = { method: request.method, headers: [...request.headers] }
            const response = await stub.fetch(
              request.url,
              request.method === "POST" ? { ...init, body: await request.text() } : init
            )
            return response as unknown as Response
          }
        })
      }
      for (const mode of ["socket", "stream"] as const) {
        const id = `effect-${mode}`
        const realtime = yield* Effect.provide(Realtime.Realtime, Namespace.layer(binding, mode))
        const key = yield* Event.resourceKey("posts", id)
        yield* realtime.publish(changed(id, 1, "f1"))
        const frames = yield* Effect.fork(
          realtime.subscribe(key, "f1").pipe(
            Stream.decodeText(),
            Stream.scan("", (text, chunk) => text + chunk),
            Stream.takeUntil((text) => Sse.parse(text).length >= 2),
            Stream.runLast
          )
        )
        yield* eventually("subscribed", statsOf(id), (s) => s.subscribers === 1 && s.sockets === (mode === "socket" ? 1 : 0))
        const published = yield* realtime.publish(changed(id, 2, "f2"))
        assert.deepStrictEqual(published, { key, id: "f2", seq: 2 })
        yield* realtime.publish({ type: "deleted", slug: "posts", id })
        const text = Option.getOrElse(yield* Fiber.join(frames), () => "")
        assert.deepStrictEqual(Sse.parse(text).map((e) => e.event), ["changed", "deleted"])
        assert.strictEqual(Sse.parse(text)[0]!.id, "f2")
        // The subscription ended with its stream; the object lets it go (a closed
        // socket at once, a stream within a few heartbeats).
        yield* eventually("released", statsOf(id), (s) => s.subscribers === 0)
        const invalid = yield* Effect.flip(realtime.publish({ ...changed(id, 3), etag: "x\ny" }))
        assert.strictEqual(invalid._tag, "InvalidEvent")
      }
    }).pipe(Effect.provide(runtime({ REALTIME_HEARTBEAT_MS: "200" })), Effect.scoped), 60_000)
})
