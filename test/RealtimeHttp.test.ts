/**
 * The subscribe route over a real socket: `HttpLayerRouter.serve(RealtimeHttp.layer)`
 * with `Realtime.layerMemory` on the runtime's own server (Bun or Node), read
 * with `fetch` and compared byte for byte.
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as LogLevel from "effect/LogLevel"
import * as Event from "../src/Event.js"
import * as Heartbeat from "../src/Heartbeat.js"
import * as Hub from "../src/Hub.js"
import * as Realtime from "../src/Realtime.js"
import * as RealtimeHttp from "../src/RealtimeHttp.js"
import { eventually } from "./utils/eventually.js"
import * as Server from "./utils/server.js"
import * as Sse from "./utils/sse.js"

// Refusals are logged (info, and warnings for limits and an unavailable backend): none of it here.
const App = Server.layerRealtime({ logLevel: LogLevel.None })

const key = (collection: string, id: string) => Effect.orDie(Event.resourceKey(collection, id))
const subscribePath = (collection: string, id: string) => `/api/saacms/v1/${collection}/${id}/subscribe`

/** GET `path` on the test server; closing the scope aborts the request. */
const get = (path: string, headers: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const url = `${yield* Server.baseUrl}${path}`
    const controller = yield* Effect.acquireRelease(
      Effect.sync(() => new AbortController()),
      (controller) => Effect.sync(() => controller.abort())
    )
    const response = yield* Effect.tryPromise(() => fetch(url, { headers, signal: controller.signal })).pipe(
      Effect.orDie
    )
    return { response, controller }
  })

/** Open a stream and wait for its `:keepalive`, i.e. until it is registered with the hub. */
const subscribe = (path: string, headers: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const { controller, response } = yield* get(path, headers)
    assert.strictEqual(response.status, 200)
    const reader = yield* Sse.reader(response)
    yield* reader.readUntil((received) => received.comments.length > 0)
    return { controller, response, reader }
  })

const publishChanged = (slug: string, id: string, etag: string, record: unknown = { etag }) =>
  Effect.flatMap(Realtime.Realtime, (realtime) => realtime.publish({ type: "changed", slug, id, record, etag }))

const frame = (event: string, id: string, data: string) => `event: ${event}\nid: ${id}\ndata: ${data}\n\n`
const keepalive = ":keepalive\n\n"

describe(`RealtimeHttp (${Server.runtime})`, () => {
  it.live("answers with the SSE headers and `:keepalive` as the first bytes", () =>
    Effect.gen(function*() {
      const { response } = yield* get(subscribePath("posts", "1"))
      assert.strictEqual(response.status, 200)
      assert.strictEqual(response.headers.get("content-type"), "text/event-stream")
      assert.strictEqual(response.headers.get("cache-control"), "no-cache, no-transform")
      assert.strictEqual(response.headers.get("x-accel-buffering"), "no")
      // Both runtimes pass the header through on HTTP/1.1.
      assert.strictEqual(response.headers.get("connection")?.toLowerCase(), "keep-alive")

      const reader = yield* Sse.reader(response)
      const received = yield* reader.readUntil((received) => /^:keepalive\n\nretry: \d+\n\n/.test(received.text))
      // The opening: `:keepalive`, then the jittered reconnection hint.
      assert.strictEqual(Sse.stripRetry(received.text), keepalive)
      assert.deepStrictEqual(received.comments, ["keepalive"])

      const hub = yield* Hub.Hub
      assert.strictEqual(yield* hub.subscriberCount(yield* key("posts", "1")), 1)
      assert.strictEqual(yield* Effect.flatMap(Heartbeat.Heartbeat, (heartbeat) => heartbeat.active), 1)
    }).pipe(Effect.scoped, Effect.provide(App)))

  it.live("answers HEAD with the SSE headers and no body, and registers nothing", () =>
    Effect.gen(function*() {
      const url = `${yield* Server.baseUrl}${subscribePath("posts", "1")}`
      const response = yield* Effect.tryPromise(() => fetch(url, { method: "HEAD" })).pipe(Effect.orDie)
      assert.strictEqual(response.status, 200)
      assert.strictEqual(response.headers.get("content-type"), "text/event-stream")
      assert.strictEqual(yield* Effect.promise(() => response.text()), "")
      const hub = yield* Hub.Hub
      assert.strictEqual(yield* hub.totalSubscribers, 0)
    }).pipe(Effect.scoped, Effect.provide(App)))

  it.live("writes the exact frames of a published `changed` (with etag) and `deleted`", () =>
    Effect.gen(function*() {
      const { reader } = yield* subscribe(subscribePath("posts", "1"))
      const realtime = yield* Realtime.Realtime
      const changed = yield* realtime.publish({
        type: "changed",
        slug: "posts",
        id: "1",
        record: { title: "héllo\nworld", n: 1 },
        etag: "\"v1\""
      })
      // Another record's event, between the two: it must not reach this stream.
      yield* publishChanged("posts", "2", "other")
      const deleted = yield* realtime.publish({ type: "deleted", slug: "posts", id: "1" })
      assert.strictEqual(changed.id, "\"v1\"")
      assert.match(deleted.id, /^\d+-\d+$/)

      const received = yield* reader.readUntil(Sse.hasEvents(2))
      assert.deepStrictEqual(
        Sse.bytes(Sse.stripRetry(received.text)),
        Sse.bytes(
          keepalive +
            frame("changed", "\"v1\"", "{\"title\":\"héllo\\nworld\",\"n\":1}") +
            frame("deleted", deleted.id, "{\"id\":\"1\"}")
        )
      )
      assert.deepStrictEqual(Sse.parse(received.bytes), [
        { event: "changed", id: "\"v1\"", data: JSON.stringify({ title: "héllo\nworld", n: 1 }) },
        { event: "deleted", id: deleted.id, data: JSON.stringify({ id: "1" }) }
      ])
    }).pipe(Effect.scoped, Effect.provide(App)))

  it.live("replays what followed the `Last-Event-ID` header, then goes live", () =>
    Effect.gen(function*() {
      for (const etag of ["e1", "e2", "e3"]) yield* publishChanged("posts", "1", etag)
      const { reader } = yield* subscribe(subscribePath("posts", "1"), { "Last-Event-ID": "e1" })
      yield* publishChanged("posts", "1", "e4")
      const received = yield* reader.readUntil(Sse.hasEvents(3))
      assert.strictEqual(
        Sse.stripRetry(received.text),
        keepalive +
          frame("changed", "e2", "{\"etag\":\"e2\"}") +
          frame("changed", "e3", "{\"etag\":\"e3\"}") +
          frame("changed", "e4", "{\"etag\":\"e4\"}")
      )
    }).pipe(Effect.scoped, Effect.provide(App)))

  it.live("replays what followed `?lastEventId=` (an EventSource that cannot set headers)", () =>
    Effect.gen(function*() {
      for (const etag of ["e1", "e2", "e3"]) yield* publishChanged("posts", "1", etag)
      const { reader } = yield* subscribe(`${subscribePath("posts", "1")}?lastEventId=e2`)
      const received = yield* reader.readUntil(Sse.hasEvents(1))
      assert.strictEqual(Sse.stripRetry(received.text), keepalive + frame("changed", "e3", "{\"etag\":\"e3\"}"))
    }).pipe(Effect.scoped, Effect.provide(App)))

  it.live("the `Last-Event-ID` header wins over `?lastEventId=`", () =>
    Effect.gen(function*() {
      for (const etag of ["e1", "e2", "e3"]) yield* publishChanged("posts", "1", etag)
      const { reader } = yield* subscribe(`${subscribePath("posts", "1")}?lastEventId=e1`, { "Last-Event-ID": "e2" })
      yield* publishChanged("posts", "1", "e4")
      const received = yield* reader.readUntil(Sse.hasEvents(2))
      assert.deepStrictEqual(received.events.map((event) => event.id), ["e3", "e4"])
      assert.strictEqual(
        Sse.stripRetry(received.text),
        keepalive + frame("changed", "e3", "{\"etag\":\"e3\"}") + frame("changed", "e4", "{\"etag\":\"e4\"}")
      )
    }).pipe(Effect.scoped, Effect.provide(App)))

  it.live("an unknown id gets `:keepalive` and exactly one `saacms-resync` frame naming the newest id", () =>
    Effect.gen(function*() {
      for (const etag of ["e1", "e2", "e3"]) yield* publishChanged("posts", "1", etag)
      const { reader } = yield* subscribe(subscribePath("posts", "1"), { "Last-Event-ID": "gone" })
      const resync = frame("saacms-resync", "e3", "{\"reason\":\"buffer-miss\"}")
      const received = yield* reader.readUntil(Sse.hasEvents(1))
      assert.strictEqual(Sse.stripRetry(received.text), keepalive + resync)
      assert.deepStrictEqual(received.events, [{ event: "saacms-resync", id: "e3", data: "{\"reason\":\"buffer-miss\"}" }])
      // After the resync the stream is live from the newest event on: no replay follows.
      yield* publishChanged("posts", "1", "e4")
      const next = yield* reader.readUntil(Sse.hasEvents(2))
      assert.strictEqual(Sse.stripRetry(next.text), keepalive + resync + frame("changed", "e4", "{\"etag\":\"e4\"}"))
    }).pipe(Effect.scoped, Effect.provide(App)))

  it.live("rejects a bad slug, id or Last-Event-ID with a JSON 400, registers nothing, leaves others alone", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.Hub
      const heartbeat = yield* Heartbeat.Heartbeat
      const watched = yield* subscribe(subscribePath("posts", "1"))

      const cases: ReadonlyArray<{
        readonly path: string
        readonly headers?: Record<string, string>
        readonly error: string
        readonly message: RegExp
      }> = [
        { path: subscribePath("a:b", "1"), error: "invalid_resource_key", message: /collection/ },
        { path: subscribePath("-posts", "1"), error: "invalid_resource_key", message: /collection/ },
        { path: subscribePath("p".repeat(65), "1"), error: "invalid_resource_key", message: /collection/ },
        { path: subscribePath("posts", "a:b"), error: "invalid_resource_key", message: /^id must be/ },
        {
          path: subscribePath("posts", "2"),
          headers: { "Last-Event-ID": "x".repeat(257) },
          error: "invalid_last_event_id",
          message: /^Last-Event-ID must be at most 256 characters$/
        },
        {
          path: `${subscribePath("posts", "2")}?lastEventId=${"x".repeat(257)}`,
          error: "invalid_last_event_id",
          message: /^Last-Event-ID must be at most 256 characters$/
        },
        {
          path: `${subscribePath("posts", "2")}?lastEventId=a%0Ab`,
          error: "invalid_last_event_id",
          message: /CR, LF or NUL/
        }
      ]
      for (const { error, headers, message, path } of cases) {
        const { response } = yield* get(path, headers)
        const text = yield* Effect.promise(() => response.text())
        assert.strictEqual(response.status, 400, `${path}: ${text}`)
        assert.match(response.headers.get("content-type") ?? "", /^application\/json/)
        const body = JSON.parse(text) as { error: unknown; message: unknown }
        assert.deepStrictEqual(Object.keys(body).sort(), ["error", "message"])
        assert.strictEqual(body.error, error, path)
        assert.match(String(body.message), message, path)
      }

      // 256 characters is still a valid id (boundary): an unknown one, so a resync.
      const boundary = yield* subscribe(subscribePath("posts", "3"), { "Last-Event-ID": "y".repeat(256) })
      const resync = yield* boundary.reader.readUntil(Sse.hasEvents(1))
      assert.strictEqual(resync.events[0]?.event, "saacms-resync")
      yield* Effect.sync(() => boundary.controller.abort())
      yield* eventually("posts:3 released", hub.subscriberCount(yield* key("posts", "3")), (n) => n === 0)

      // Nothing was registered by the rejected requests.
      assert.strictEqual(yield* hub.subscriberCount(yield* key("posts", "2")), 0)
      assert.strictEqual(yield* hub.totalSubscribers, 1)
      assert.strictEqual(yield* hub.activeKeys, 1)
      assert.strictEqual(yield* heartbeat.active, 1)
      // And the existing subscriber still gets its record's events.
      yield* publishChanged("posts", "1", "after")
      const received = yield* watched.reader.readUntil(Sse.hasEvents(1))
      assert.strictEqual(Sse.stripRetry(received.text), keepalive + frame("changed", "after", "{\"etag\":\"after\"}"))
    }).pipe(Effect.scoped, Effect.provide(App)))

  // Ids may be 1-128 characters (Event.RecordId) and anything else must get the
  // JSON 400, but the router (find-my-way, `maxParamLength: 100` by default)
  // answers 404 for any path segment longer than 100 characters.
  it.live("serves record ids up to the documented 128 characters, and answers a longer one with the JSON 400", () =>
    Effect.gen(function*() {
      const longest = "i".repeat(128)
      const { reader } = yield* subscribe(subscribePath("posts", longest))
      yield* publishChanged("posts", longest, "long")
      const received = yield* reader.readUntil(Sse.hasEvents(1))
      assert.deepStrictEqual(received.events.map((event) => event.id), ["long"])

      const { response } = yield* get(subscribePath("posts", "i".repeat(129)))
      const body = yield* Effect.promise(() => response.text())
      assert.strictEqual(response.status, 400, body)
      assert.strictEqual((JSON.parse(body) as { error: unknown }).error, "invalid_resource_key")
    }).pipe(Effect.scoped, Effect.provide(App)))

  it.live("closing the client connection releases the subscription and its heartbeat", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.Hub
      const heartbeat = yield* Heartbeat.Heartbeat
      const k1 = yield* key("posts", "1")
      const first = yield* subscribe(subscribePath("posts", "1"))
      const second = yield* subscribe(subscribePath("posts", "1"))
      const other = yield* subscribe(subscribePath("pages", "home"))
      assert.strictEqual(yield* hub.subscriberCount(k1), 2)
      assert.strictEqual(yield* hub.activeKeys, 2)
      // One heartbeat for the hub, while any record has subscribers.
      assert.strictEqual(yield* heartbeat.active, 1)

      yield* Effect.sync(() => first.controller.abort())
      yield* eventually("one posts:1 subscriber left", hub.subscriberCount(k1), (n) => n === 1)
      assert.strictEqual(yield* heartbeat.active, 1)

      // The surviving subscriber of the record is untouched.
      yield* publishChanged("posts", "1", "still")
      const received = yield* second.reader.readUntil(Sse.hasEvents(1))
      assert.deepStrictEqual(received.events.map((event) => event.id), ["still"])

      yield* Effect.sync(() => second.controller.abort())
      yield* Effect.sync(() => other.controller.abort())
      yield* eventually("no subscribers", hub.totalSubscribers, (n) => n === 0)
      yield* eventually("no heartbeats", heartbeat.active, (n) => n === 0)
      assert.strictEqual(yield* hub.subscriberCount(k1), 0)
      assert.strictEqual(yield* hub.activeKeys, 0)
    }).pipe(Effect.scoped, Effect.provide(App)))
})

describe("RealtimeHttp.isSubscribeRequest", () => {
  it("tells subscribe requests from the rest, query or not", () => {
    const request = (url: string) => HttpServerRequest.fromWeb(new Request(`http://localhost${url}`))
    assert.isTrue(RealtimeHttp.isSubscribeRequest(request("/api/saacms/v1/posts/1/subscribe")))
    assert.isTrue(RealtimeHttp.isSubscribeRequest(request("/api/saacms/v1/posts/1/subscribe?lastEventId=v1")))
    assert.isFalse(RealtimeHttp.isSubscribeRequest(request("/api/saacms/v1/posts/1")))
    assert.isFalse(RealtimeHttp.isSubscribeRequest(request("/api/saacms/v1/posts/1?x=/subscribe")))
  })
})
