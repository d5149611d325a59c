/**
 * Subscribers of a `SaacmsRealtimeDO` over hibernatable WebSockets, in the real
 * Workers runtime (workerd through Miniflare): the test speaks the binding
 * request (`GET` + `Upgrade: websocket`) to an object through the test
 * Worker's `/object/:name` route, over real sockets. Hibernation is observed:
 * Miniflare evicts the object while its sockets stay open, and the object that
 * answers afterwards is a new instance.
 */
import { assert, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as net from "node:net"
import { eventually } from "./utils/eventually.js"
import * as Sse from "./utils/sse.js"
import * as Workerd from "./utils/workerd.js"

const entry = new URL("./workers/realtime.ts", import.meta.url).pathname

class Runtime extends Context.Tag("test/Runtime")<Runtime, Workerd.Workerd>() {}

interface SocketLike {
  binaryType: string
  readonly readyState: number
  send(data: string): void
  close(code?: number): void
  addEventListener(type: "message", listener: (event: { readonly data: unknown }) => void): void
  addEventListener(type: "open" | "close" | "error", listener: (event: unknown) => void): void
}
type SocketConstructor = new(url: string, init?: { readonly headers?: Record<string, string> }) => SocketLike

// Bun has a WebSocket that takes headers; Node 20 takes undici's.
const WebSocketClass: Promise<SocketConstructor> = (globalThis as { WebSocket?: unknown }).WebSocket !== undefined &&
    (globalThis as { Bun?: unknown }).Bun !== undefined
  ? Promise.resolve((globalThis as unknown as { WebSocket: SocketConstructor }).WebSocket)
  : import("undici").then((undici) => undici.WebSocket as unknown as SocketConstructor)

/** A socket subscriber of the object for record `posts:<id>`: what it received, as SSE text. */
interface Client {
  readonly socket: SocketLike
  text(): string
}

const connect = (id: string, headers: Record<string, string> = {}): Effect.Effect<Client, never, Runtime | Scope.Scope> =>
  Effect.acquireRelease(
    Effect.flatMap(Runtime, ({ url }) =>
      Effect.promise(async () => {
        const WebSocket = await WebSocketClass
        const target = new URL(`/object/posts:${id}`, url)
        target.protocol = "ws:"
        const socket = new WebSocket(target.href, { headers })
        socket.binaryType = "arraybuffer"
        const decoder = new TextDecoder()
        let text = ""
        socket.addEventListener("message", (event) => {
          text += typeof event.data === "string" ? event.data : decoder.decode(new Uint8Array(event.data as ArrayBuffer))
        })
        await new Promise<void>((resolve, reject) => {
          socket.addEventListener("open", () => resolve())
          socket.addEventListener("error", (error) => reject(error))
        })
        return { socket, text: () => text }
      })
    ),
    ({ socket }) => Effect.sync(() => socket.close(1000))
  )

const request = (path: string, init?: RequestInit) =>
  Effect.flatMap(Runtime, ({ url }) => Effect.promise(() => fetch(new URL(path, url), init)))

/** Publish straight to the object (the binding's POST). */
const publish = (id: string, n: number) =>
  Effect.flatMap(
    request(`/object/posts:${id}`, {
      method: "POST",
      body: JSON.stringify({ type: "changed", slug: "posts", id, record: { n }, etag: `e${n}` })
    }),
    (response) => Effect.sync(() => assert.strictEqual(response.status, 204))
  )

interface Stats {
  readonly subscribers: number
  readonly sockets: number
  readonly heartbeats: number
  readonly instance: string
}
const stats = (id: string) =>
  Effect.flatMap(
    request(`/object/posts:${id}`, { headers: { Accept: "application/json" } }),
    (response) => Effect.promise(() => response.json() as Promise<Stats>)
  )

/** Wait until `client` has received events with the ids of `ns` (`e<n>`); its events' ids. */
const eventsOf = (client: Client, until: number) =>
  Effect.map(
    eventually(`events up to e${until}`, Effect.sync(() => Sse.parse(client.text())), (events) => events.some((e) => e.id === `e${until}`)),
    (events) => events.map((e) => e.id)
  )

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `e${from + i}`)

layer(Layer.scoped(Runtime, Workerd.start({ entry })), { timeout: 60_000, excludeTestServices: true })("SaacmsRealtimeDO over hibernatable sockets", (it) => {
  it.scoped("a socket gets the opening, what followed its last event id, then every event once and in order; no heartbeat runs", () =>
    Effect.gen(function*() {
      for (let n = 1; n <= 3; n++) yield* publish("s1", n)
      const fresh = yield* connect("s1")
      const resumed = yield* connect("s1", { "Last-Event-ID": "e1" })
      const byHeader = yield* connect("s1", { "Last-Event-ID": "e2" })
      const unknown = yield* connect("s1", { "Last-Event-ID": "gone" })
      yield* eventually("four sockets", stats("s1"), (s) => s.sockets === 4)
      for (let n = 4; n <= 8; n++) yield* publish("s1", n)
      assert.deepStrictEqual(yield* eventsOf(fresh, 8), range(4, 8))
      assert.deepStrictEqual(yield* eventsOf(resumed, 8), range(2, 8))
      assert.deepStrictEqual(yield* eventsOf(byHeader, 8), range(3, 8))
      assert.isTrue(fresh.text().startsWith(":keepalive\n\nretry: "))
      // An id the object does not hold: one saacms-resync naming the newest, then live.
      const items = Sse.parse(unknown.text())
      assert.deepStrictEqual(items.map((e) => e.event), ["saacms-resync", ...range(4, 8).map(() => "changed")])
      assert.strictEqual(items[0]!.id, "e3")
      const now = yield* stats("s1")
      assert.strictEqual(now.subscribers, 4)
      assert.strictEqual(now.heartbeats, 0)
    }))

  it.scoped("evicted while its sockets stay open, the object wakes for the next publish and reaches every socket once", () =>
    Effect.gen(function*() {
      const { miniflare } = yield* Runtime
      yield* publish("h1", 1)
      const clients = yield* Effect.all([connect("h1"), connect("h1"), connect("h1", { "Last-Event-ID": "e1" })])
      yield* publish("h1", 2)
      for (const client of clients) assert.deepStrictEqual(yield* eventsOf(client, 2), ["e2"])
      const before = yield* stats("h1")
      assert.strictEqual(before.sockets, 3)
      // Only what has no pending request and no timer can hibernate: the runtime evicts it here.
      yield* Effect.promise(() =>
        miniflare.unsafeEvictDurableObject("", "SaacmsRealtimeDO", { name: "posts:h1", webSockets: "hibernate" })
      )
      for (let n = 3; n <= 5; n++) yield* publish("h1", n)
      for (const client of clients) assert.deepStrictEqual(yield* eventsOf(client, 5), range(2, 5))
      const after = yield* stats("h1")
      assert.notStrictEqual(after.instance, before.instance)
      assert.strictEqual(after.sockets, 3)
      assert.strictEqual(after.heartbeats, 0)
      // A ping is answered without the object: it stays the instance it is.
      const ponged = new Promise<string>((resolve) =>
        clients[0]!.socket.addEventListener("message", (event) => resolve(String(event.data)))
      )
      clients[0]!.socket.send("ping")
      assert.strictEqual(yield* Effect.promise(() => ponged), "pong")
    }))

  it.scoped("a socket that closes is released; the others go on", () =>
    Effect.gen(function*() {
      const [leaving, staying] = yield* Effect.all([connect("c1"), connect("c1")])
      yield* eventually("two sockets", stats("c1"), (s) => s.sockets === 2)
      leaving.socket.close(1000)
      yield* eventually("one subscriber left", stats("c1"), (s) => s.subscribers === 1 && s.sockets === 1)
      yield* publish("c1", 1)
      assert.deepStrictEqual(yield* eventsOf(staying, 1), ["e1"])
    }))

  it.scoped("the grant travels in the socket's attachment: an expired one ends the socket with saacms-revoked at the next publish", () =>
    Effect.gen(function*() {
      const expiresAt = Date.now() + 500
      const expiring = yield* connect("x1", { "X-Saacms-Grant-Expires-At": String(expiresAt) })
      const lasting = yield* connect("x1")
      yield* eventually("two sockets", stats("x1"), (s) => s.sockets === 2)
      yield* publish("x1", 1)
      assert.deepStrictEqual(yield* eventsOf(expiring, 1), ["e1"])
      // Past the expiry (real time in workerd, waited on as a condition): the
      // next event is refused and the socket ends.
      yield* eventually("past the expiry", Effect.sync(() => Date.now()), (now) => now > expiresAt + 50)
      yield* publish("x1", 2)
      assert.deepStrictEqual(yield* eventsOf(lasting, 2), ["e1", "e2"])
      const revoked = yield* eventually(
        "revoked",
        Effect.sync(() => Sse.parse(expiring.text())),
        (events) => events.some((e) => e.event === "saacms-revoked")
      )
      assert.deepStrictEqual(revoked.map((e) => [e.event, e.data]), [["changed", "{\"n\":1}"], ["saacms-revoked", "{\"reason\":\"expired\"}"]])
      yield* eventually("released", stats("x1"), (s) => s.subscribers === 1)
    }))
})

/** Subscribe through the plugin's route (socket mode: the Worker holds the stream). */
const subscribe = (id: string, headers: Record<string, string> = {}, query = "") =>
  Effect.flatMap(
    request(`/api/saacms/v1/posts/${id}/subscribe${query}`, { headers }),
    (response) => Effect.map(Sse.reader(response), (reader) => ({ response, reader }))
  )

/** Publish through the plugin (`services.realtime.publish` in the Worker). */
const publishThrough = (id: string, n: number, record: unknown = { n }) =>
  Effect.flatMap(
    request("/publish", { method: "POST", body: JSON.stringify({ type: "changed", slug: "posts", id, record, etag: `e${n}` }) }),
    (response) => Effect.sync(() => assert.strictEqual(response.status, 200))
  )

const ids = (received: Sse.Received) => received.events.map((event) => event.id)

layer(
  Layer.scoped(Runtime, Workerd.start({ entry, vars: { TEST_DO_MODE: "socket", TEST_WORKER_HEARTBEAT_MS: "200", REALTIME_MAX_EVENTS: "5" } })),
  { timeout: 60_000, excludeTestServices: true }
)("the plugin over hibernatable sockets: the Worker holds the streams", (it) => {
  it.scoped("every subscriber gets every event once and in order; the object runs no heartbeat", () =>
    Effect.gen(function*() {
      const subscribers = yield* Effect.all([subscribe("w1"), subscribe("w1"), subscribe("w1")])
      yield* Effect.forEach(subscribers, ({ reader }) => reader.readUntil((r) => r.comments.length > 0))
      yield* eventually("three sockets", stats("w1"), (s) => s.sockets === 3)
      for (let n = 1; n <= 3; n++) yield* publishThrough("w1", n)
      for (const { reader, response } of subscribers) {
        assert.strictEqual(response.headers.get("content-type"), "text/event-stream")
        const received = yield* reader.readUntil(Sse.hasEvents(3))
        assert.deepStrictEqual(ids(received), range(1, 3))
        assert.strictEqual(received.text.match(/retry: /g)?.length, 1)
      }
      const now = yield* stats("w1")
      assert.strictEqual(now.heartbeats, 0)
      assert.strictEqual(now.subscribers, 3)
    }))

  it.scoped("Last-Event-ID (header or ?lastEventId=) replays through the Worker; an id the object no longer holds gets saacms-resync", () =>
    Effect.gen(function*() {
      for (let n = 1; n <= 7; n++) yield* publishThrough("w2", n)
      const byHeader = yield* subscribe("w2", { "Last-Event-ID": "e4" })
      assert.deepStrictEqual(ids(yield* byHeader.reader.readUntil(Sse.hasEvents(3))), range(5, 7))
      const byQuery = yield* subscribe("w2", {}, "?lastEventId=e5")
      assert.deepStrictEqual(ids(yield* byQuery.reader.readUntil(Sse.hasEvents(2))), range(6, 7))
      const gone = yield* subscribe("w2", { "Last-Event-ID": "e1" })
      const resynced = yield* gone.reader.readUntil(Sse.hasEvents(1))
      assert.deepStrictEqual(resynced.events.map((e) => [e.event, e.id]), [["saacms-resync", "e7"]])
      yield* publishThrough("w2", 8)
      assert.deepStrictEqual(ids(yield* byHeader.reader.readUntil(Sse.hasEvents(4))), range(5, 8))
      assert.deepStrictEqual(ids(yield* gone.reader.readUntil(Sse.hasEvents(2))), ["e7", "e8"])
    }))

  it.scoped("an idle stream gets :keepalive from the Worker's heartbeat while the object holds no timer", () =>
    Effect.gen(function*() {
      const { reader } = yield* subscribe("w3")
      yield* reader.readUntil((r) => r.comments.length >= 4)
      const now = yield* stats("w3")
      assert.strictEqual(now.sockets, 1)
      assert.strictEqual(now.heartbeats, 0)
    }))

  it.scoped("the object evicted with its sockets hibernating: the next publish reaches every client once", () =>
    Effect.gen(function*() {
      const { miniflare } = yield* Runtime
      const subscribers = yield* Effect.all([subscribe("w4"), subscribe("w4"), subscribe("w4")])
      yield* eventually("three sockets", stats("w4"), (s) => s.sockets === 3)
      yield* publishThrough("w4", 1)
      const before = yield* stats("w4")
      yield* Effect.promise(() =>
        miniflare.unsafeEvictDurableObject("", "SaacmsRealtimeDO", { name: "posts:w4", webSockets: "hibernate" })
      )
      for (let n = 2; n <= 4; n++) yield* publishThrough("w4", n)
      for (const { reader } of subscribers) assert.deepStrictEqual(ids(yield* reader.readUntil(Sse.hasEvents(4))), range(1, 4))
      assert.notStrictEqual((yield* stats("w4")).instance, before.instance)
    }))

  it.scoped("sockets cut mid-stream (the object evicted without hibernating) resume without a gap or a repeat", () =>
    Effect.gen(function*() {
      const { miniflare } = yield* Runtime
      const subscribers = yield* Effect.all([subscribe("w5"), subscribe("w5")])
      yield* eventually("two sockets", stats("w5"), (s) => s.sockets === 2)
      for (let n = 1; n <= 2; n++) yield* publishThrough("w5", n)
      yield* Effect.promise(() =>
        miniflare.unsafeEvictDurableObject("", "SaacmsRealtimeDO", { name: "posts:w5", webSockets: "close" })
      )
      // Published while the Worker reconnects: from the history, once.
      for (let n = 3; n <= 5; n++) yield* publishThrough("w5", n)
      for (const { reader } of subscribers) {
        const received = yield* reader.readUntil(Sse.hasEvents(5))
        assert.deepStrictEqual(ids(received), range(1, 5))
        assert.strictEqual(received.text.match(/retry: /g)?.length, 1)
      }
      yield* eventually("two sockets again", stats("w5"), (s) => s.sockets === 2)
    }))

  it.scoped("the grant's expiry ends a quiet stream at the Worker's heartbeat; the object's recheck sees the forwarded subject", () =>
    Effect.gen(function*() {
      const expiring = yield* subscribe("w6", { "x-test-expires-in": "400" })
      const expired = yield* expiring.reader.readUntil((r) => r.done)
      assert.deepStrictEqual(expired.events.map((e) => [e.event, e.data]), [["saacms-revoked", "{\"reason\":\"expired\"}"]])
      const alice = yield* subscribe("w6", { "x-test-user": "alice" })
      const bob = yield* subscribe("w6", { "x-test-user": "bob" })
      yield* eventually("two sockets", stats("w6"), (s) => s.subscribers === 2)
      yield* publishThrough("w6", 1, { private: true, owner: "alice" })
      const bobs = yield* bob.reader.readUntil((r) => r.done)
      assert.deepStrictEqual(bobs.events.map((e) => [e.event, e.data]), [["saacms-revoked", "{\"reason\":\"forbidden\"}"]])
      assert.deepStrictEqual(ids(yield* alice.reader.readUntil(Sse.hasEvents(1))), ["e1"])
      yield* eventually("bob released", stats("w6"), (s) => s.subscribers === 1)
    }))

  it.scoped("with nobody publishing, the runtime evicts the object by itself while its clients stay connected (it holds no request and no timer); the next publish reaches each once", () =>
    Effect.gen(function*() {
      const subscribers = yield* Effect.all([subscribe("n1"), subscribe("n1"), subscribe("n1")])
      yield* eventually("three sockets", stats("n1"), (s) => s.sockets === 3)
      yield* publishThrough("n1", 1)
      const before = yield* stats("n1")
      // workerd evicts an object once it has been idle, with nothing pending, for 10 s.
      // Asking the object anything would wake it, so this waits the runtime's period
      // out once (the Worker's pings every 200 ms meanwhile are answered without it).
      yield* Effect.sleep("11 seconds")
      yield* publishThrough("n1", 2)
      for (const { reader } of subscribers) assert.deepStrictEqual(ids(yield* reader.readUntil(Sse.hasEvents(2))), range(1, 2))
      const after = yield* stats("n1")
      assert.notStrictEqual(after.instance, before.instance)
      assert.strictEqual(after.sockets, 3)
    }), 30_000)

  it.scoped("after the object slept, its recheck still sees each socket's subject, read back from the attachment", () =>
    Effect.gen(function*() {
      const { miniflare } = yield* Runtime
      const alice = yield* subscribe("w8", { "x-test-user": "alice" })
      const bob = yield* subscribe("w8", { "x-test-user": "bob" })
      yield* eventually("two sockets", stats("w8"), (s) => s.sockets === 2)
      yield* Effect.promise(() =>
        miniflare.unsafeEvictDurableObject("", "SaacmsRealtimeDO", { name: "posts:w8", webSockets: "hibernate" })
      )
      yield* publishThrough("w8", 1, { private: true, owner: "alice" })
      const bobs = yield* bob.reader.readUntil((r) => r.done)
      assert.deepStrictEqual(bobs.events.map((e) => [e.event, e.data]), [["saacms-revoked", "{\"reason\":\"forbidden\"}"]])
      assert.deepStrictEqual(ids(yield* alice.reader.readUntil(Sse.hasEvents(1))), ["e1"])
    }))

  it.scoped("a client that leaves closes its socket, and the object releases it", () =>
    Effect.gen(function*() {
      const leaving = yield* subscribe("w7")
      const staying = yield* subscribe("w7")
      yield* eventually("two sockets", stats("w7"), (s) => s.subscribers === 2)
      yield* leaving.reader.cancel
      yield* eventually("one left", stats("w7"), (s) => s.subscribers === 1)
      yield* publishThrough("w7", 1)
      assert.deepStrictEqual(ids(yield* staying.reader.readUntil(Sse.hasEvents(1))), ["e1"])
    }))
})

layer(
  Layer.scoped(
    Runtime,
    Workerd.start({ entry, vars: { TEST_DO_MODE: "socket", TEST_WORKER_MAX_QUEUED_BYTES: "65536", REALTIME_MAX_EVENTS: "2000" } })
  ),
  { timeout: 60_000, excludeTestServices: true }
)("the plugin over hibernatable sockets: a client that stops reading", (it) => {
  it.scoped("falls behind, its socket is dropped, and when it reads again it gets every event once and in order", () =>
    Effect.gen(function*() {
      const { url } = yield* Runtime
      // A raw socket that reads the response head, then nothing, until told.
      let text = ""
      let paused: net.Socket | undefined
      yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<net.Socket>((resolve, reject) => {
            const socket = net.connect(Number(url.port), url.hostname, () =>
              socket.write(`GET /api/saacms/v1/posts/slow/subscribe HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`))
            socket.on("data", (chunk) => {
              text += chunk.toString("latin1")
              if (paused === undefined && text.includes(":keepalive")) {
                paused = socket
                socket.pause()
                resolve(socket)
              }
            })
            socket.once("error", reject)
          })
        ),
        (socket) => Effect.sync(() => socket.destroy())
      )
      yield* eventually("one socket", stats("slow"), (s) => s.sockets === 1)
      // 1 000 events of about 8 KiB: more than the kernel's buffers hold, so the
      // client's unread bytes reach the Worker's bound and it drops the socket.
      const body = "x".repeat(8 * 1024)
      for (let n = 1; n <= 1000; n++) yield* publishThrough("slow", n, { n, body })
      yield* eventually("the socket dropped", stats("slow"), (s) => s.sockets === 0)
      paused!.resume()
      const received = yield* eventually(
        "every event",
        Effect.sync(() => Sse.parse(text.replace(/\r\n[0-9a-f]+\r\n/g, ""))),
        (events) => events.some((e) => e.id === "e1000"),
        2_000
      )
      assert.deepStrictEqual(received.map((e) => e.id), range(1, 1000))
    }), 60_000)
})
