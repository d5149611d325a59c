/**
 * End to end with a real SSE client: the `eventsource` package (v4) against
 * the demo host of `src/bin/DemoHost.ts` on the runtime's own server, records
 * changed through its HTTP API; and the client's automatic reconnection after
 * the server ends a stream that fell behind (no silent loss).
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as DemoHost from "../src/bin/DemoHost.js"
import * as Event from "../src/Event.js"
import * as Hub from "../src/Hub.js"
import * as Realtime from "../src/Realtime.js"
import * as RealtimeConfig from "../src/RealtimeConfig.js"
import * as RealtimeHttp from "../src/RealtimeHttp.js"
import * as EventSourceClient from "./utils/eventSource.js"
import { eventually } from "./utils/eventually.js"
import * as Server from "./utils/server.js"
import * as Sse from "./utils/sse.js"

const types = ["changed", "deleted", "saacms-resync", "message"]

const request = (method: string, url: string, body?: string) =>
  Effect.tryPromise(() => fetch(url, body === undefined ? { method } : { method, body })).pipe(
    Effect.flatMap((response) =>
      Effect.map(Effect.tryPromise(() => response.text()), (text) => ({ response, text }))
    ),
    Effect.orDie
  )

describe(`EventSource against the demo host (${Server.runtime})`, () => {
  // The demo serves with the request logger on; keep test output to warnings.
  const Demo = DemoHost.layer.pipe(
    Layer.provideMerge(Server.layerTest),
    Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
  )

  it.live("receives `changed` and `deleted` for records written over HTTP, with their data and ids", () =>
    Effect.gen(function*() {
      const base = yield* Server.baseUrl
      const record = `${base}/api/saacms/v1/posts/hello`
      const client = yield* EventSourceClient.open(`${record}/subscribe`, { types })
      const first = yield* client.ready()
      assert.strictEqual(first.attempt, 1)
      assert.strictEqual(first.lastEventId, undefined)

      const v1 = yield* request("PUT", record, "{ \"title\": \"Hello\", \"tags\": [\"a\"] }")
      assert.strictEqual(v1.response.status, 200)
      const v2 = yield* request("PUT", record, "{\"title\":\"Hello, world\"}")
      // Another record's writes do not reach this client.
      yield* request("PUT", `${base}/api/saacms/v1/posts/other`, "{\"title\":\"Other\"}")
      const gone = yield* request("DELETE", record)
      assert.strictEqual(gone.response.status, 204)
      const etag1 = v1.response.headers.get("etag")
      const etag2 = v2.response.headers.get("etag")
      assert.match(etag1 ?? "", /^"[A-Za-z0-9_-]+"$/)
      assert.notStrictEqual(etag1, etag2)

      const [changed1, changed2, deleted] = yield* client.take(3)
      assert.deepStrictEqual(changed1, {
        type: "changed",
        data: JSON.stringify({ title: "Hello", tags: ["a"] }),
        lastEventId: etag1!
      })
      assert.deepStrictEqual(changed2, {
        type: "changed",
        data: JSON.stringify({ title: "Hello, world" }),
        lastEventId: etag2!
      })
      assert.strictEqual(deleted?.type, "deleted")
      assert.strictEqual(deleted?.data, JSON.stringify({ id: "hello" }))
      assert.match(deleted?.lastEventId ?? "", /^\d+-\d+$/)
      // One connection throughout, and nothing else was delivered.
      assert.strictEqual(client.attempts.length, 1)
      assert.strictEqual(yield* client.messages.size, 0)
    }).pipe(Effect.scoped, Effect.provide(Demo)))

  it.live("a client opened with `?lastEventId=` replays what it missed, then goes live", () =>
    Effect.gen(function*() {
      const base = yield* Server.baseUrl
      const record = `${base}/api/saacms/v1/pages/home`
      const etags: Array<string> = []
      for (const title of ["one", "two", "three"]) {
        const { response } = yield* request("PUT", record, JSON.stringify({ title }))
        etags.push(response.headers.get("etag")!)
      }
      const client = yield* EventSourceClient.open(
        `${record}/subscribe?lastEventId=${encodeURIComponent(etags[0]!)}`,
        { types }
      )
      const replayed = yield* client.take(2)
      assert.deepStrictEqual(replayed.map((message) => [message.data, message.lastEventId]), [
        [JSON.stringify({ title: "two" }), etags[1]],
        [JSON.stringify({ title: "three" }), etags[2]]
      ])
      const four = yield* request("PUT", record, JSON.stringify({ title: "four" }))
      const [live] = yield* client.take(1)
      assert.deepStrictEqual(live, {
        type: "changed",
        data: JSON.stringify({ title: "four" }),
        lastEventId: four.response.headers.get("etag")!
      })
    }).pipe(Effect.scoped, Effect.provide(Demo)))

  // Event.RecordId allows 1-128 characters, but the router (find-my-way,
  // `maxParamLength: 100` by default) answers 404 for a longer path segment.
  it.live("serves a record whose id has the documented maximum length (128 characters)", () =>
    Effect.gen(function*() {
      const record = `${yield* Server.baseUrl}/api/saacms/v1/posts/${"i".repeat(128)}`
      const client = yield* EventSourceClient.open(`${record}/subscribe`, { types })
      yield* client.ready()
      const put = yield* request("PUT", record, "{\"long\":true}")
      assert.strictEqual(put.response.status, 200, put.text)
      const [changed] = yield* client.take(1)
      assert.strictEqual(changed?.data, "{\"long\":true}")
    }).pipe(Effect.scoped, Effect.provide(Demo)))
})

describe(`EventSource reconnects after a dropped stream (${Server.runtime})`, () => {
  // A subscriber may hold 2 pending frames: a burst of publishes leaves it
  // behind, and it catches up from the history on the same connection
  // (DESIGN.md invariant 2, "no silent loss"). A cut connection makes the
  // client reconnect with Last-Event-ID and replay what it missed.
  const App = HttpLayerRouter.serve(RealtimeHttp.layer, { disableLogger: true, disableListenLog: true }).pipe(
    Layer.provideMerge(Realtime.layerMemory.pipe(Layer.provide(RealtimeConfig.layer({ queueCapacity: 2 })))),
    Layer.provideMerge(Server.layerTest)
  )

  const publish = (n: number) =>
    Effect.flatMap(Realtime.Realtime, (realtime) =>
      realtime.publish({ type: "changed", slug: "posts", id: "1", record: { n }, etag: `v${n}` }))

  it.live("replays exactly the events it missed, in order, after an automatic reconnect with Last-Event-ID", () =>
    Effect.gen(function*() {
      const hub = yield* Hub.Hub
      const key = yield* Event.resourceKey("posts", "1")
      const client = yield* EventSourceClient.open(`${yield* Server.baseUrl}/api/saacms/v1/posts/1/subscribe`, {
        types
      })
      yield* client.ready()

      yield* publish(0)
      const [v0] = yield* client.take(1)
      assert.strictEqual(v0?.lastEventId, "v0")

      // A burst of 10 with no yield in between: more than the queue holds.
      yield* Effect.forEach([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], publish, { discard: true }).pipe(
        Effect.withMaxOpsBeforeYield(Number.MAX_SAFE_INTEGER)
      )
      // All of it arrives on the same connection, in order (the rest from the history).
      const burst = yield* client.take(10)
      assert.deepStrictEqual(burst.map((message) => message.lastEventId), Array.from({ length: 10 }, (_, n) => `v${n + 1}`))
      assert.strictEqual(client.attempts.length, 1)

      // The network cuts the connection; the server releases the subscription and
      // the client schedules its reconnection (held for now).
      yield* client.cut
      yield* client.errors.take.pipe(
        Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("the client did not notice the cut") })
      )
      yield* eventually("subscriber released", hub.subscriberCount(key), (n) => n === 0)
      const beforeDrop = [...burst, ...(yield* client.messages.takeAll)]
      const lastSeen = [v0!, ...beforeDrop].at(-1)!.lastEventId

      // Published while the client is disconnected.
      for (const n of [11, 12, 13]) yield* publish(n)
      yield* client.allowReconnect
      const second = yield* client.ready()
      assert.strictEqual(second.attempt, 2)
      assert.strictEqual(second.lastEventId, lastSeen)

      // Live again after the replay.
      yield* publish(14)
      const seenN = Number(lastSeen.slice(1))
      const rest = yield* client.take(14 - seenN)
      const all = [v0!, ...beforeDrop, ...rest]
      assert.deepStrictEqual(
        all.map((message) => message.lastEventId),
        Array.from({ length: 15 }, (_, n) => `v${n}`)
      )
      assert.deepStrictEqual(
        all.map((message) => message.data),
        Array.from({ length: 15 }, (_, n) => JSON.stringify({ n }))
      )
      assert.isTrue(all.every((message) => message.type === "changed"))
      // Exactly two connections, and no duplicate or stray event after the last one.
      assert.strictEqual(client.attempts.length, 2)
      assert.strictEqual(yield* client.messages.size, 0)
      assert.strictEqual(yield* hub.subscriberCount(key), 1)
    }).pipe(Effect.scoped, Effect.provide(App)))
})

describe(`the demo host's entry point (${Server.runtime})`, () => {
  // `npm start` / `npm run start:node` as shipped, in a child process. Bun.serve
  // closes a connection after `idleTimeout` (10 s by default, enforced with a
  // few seconds of slack) without traffic, so a heartbeat slower than that (the
  // default is 30 s; 16 s here to keep the test short) must not let the server
  // cut an idle subscriber.
  it.live("keeps an idle stream open until its next heartbeat", () =>
    Effect.gen(function*() {
      const port = yield* Server.freePort
      yield* Server.entryPoint(port, { REALTIME_HEARTBEAT_MS: "16000" })
      const url = `http://127.0.0.1:${port}/api/saacms/v1/posts/idle/subscribe`
      const client = yield* EventSourceClient.open(url, { types })
      yield* client.ready()
      const response = yield* Effect.acquireRelease(
        Effect.sync(() => new AbortController()),
        (controller) => Effect.sync(() => controller.abort())
      ).pipe(Effect.flatMap((controller) => Effect.promise(() => fetch(url, { signal: controller.signal }))))
      const reader = yield* Sse.reader(response)
      const received = yield* reader.readUntil((received) => received.comments.length >= 2, "25 seconds")
      assert.strictEqual(Sse.stripRetry(received.text), ":keepalive\n\n:keepalive\n\n")
      assert.strictEqual(yield* client.errors.size, 0)
      assert.strictEqual(client.attempts.length, 1)
    }).pipe(Effect.scoped), { timeout: 60_000 })
})
