/**
 * The multiplexed route, `GET /api/saacms/v1/subscribe?topic=…`, over the
 * runtime's real server: the handshake, frames of several records and a
 * collection, resume with `Last-Event-ID` and `?lastEventId=`, refusals of bad
 * topics and cursors (400 JSON, nothing registered), per-topic `authorize`,
 * and the same route through the PluginDef.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import { Hono } from "hono"
import * as Access from "../src/Access.js"
import * as Hub from "../src/Hub.js"
import * as Multiplex from "../src/Multiplex.js"
import * as Plugin from "../src/Plugin.js"
import * as Realtime from "../src/Realtime.js"
import * as RealtimeConfig from "../src/RealtimeConfig.js"
import * as Server from "./utils/server.js"
import * as Sse from "./utils/sse.js"

const app = (access: Layer.Layer<Access.Access> | Layer.Layer<never> = Layer.empty) =>
  Server.layerRealtime({ services: Layer.mergeAll(access, RealtimeConfig.layer({ maxTopics: 3 })) })

const get = Server.get

const publish = (slug: string, id: string, etag: string) =>
  Effect.flatMap(Realtime.Realtime, (realtime) => realtime.publish({ type: "changed", slug, id, etag, record: { etag } }))

const records = (events: ReadonlyArray<Sse.SseEvent>) =>
  events.filter((event) => event.event === "changed").map((event) => {
    const data = JSON.parse(event.data) as { topic: string; etag: string }
    return `${data.topic} ${data.etag}`
  })

const query = (...topics: Array<string>) => `/api/saacms/v1/subscribe?${topics.map((t) => `topic=${encodeURIComponent(t)}`).join("&")}`

describe(`multiplexed route (${Server.runtime})`, () => {
  it.scopedLive("streams several records and a collection, then resumes from the cursor by header and by query", () =>
    Effect.gen(function*() {
      const response = yield* get(query("posts/1", "posts/2", "pages/*"))
      assert.strictEqual(response.status, 200)
      assert.strictEqual(response.headers.get("content-type"), "text/event-stream")
      const reader = yield* Sse.reader(response)
      const opening = yield* reader.readUntil((received) => received.events.some((e) => e.event === "saacms-welcome"))
      assert.match(opening.text, /^:keepalive\n\nretry: \d+\n\nevent: saacms-welcome\n/)
      assert.deepStrictEqual(JSON.parse(opening.events[0]!.data), {
        topics: [
          { topic: "pages/*", status: "fresh" },
          { topic: "posts/1", status: "fresh" },
          { topic: "posts/2", status: "fresh" }
        ]
      })
      yield* publish("posts", "1", "p1")
      yield* publish("pages", "home", "h1")
      yield* publish("posts", "3", "not-followed")
      yield* publish("posts", "2", "p2")
      const live = yield* reader.readUntil((received) => records(received.events).length === 3)
      assert.sameMembers(records(live.events), ["posts/1 p1", "pages/* h1", "posts/2 p2"])
      const after = live.events.find((event) => event.event === "changed" && event.data.includes("\"h1\""))!.id!
      yield* reader.cancel

      // Away: more for two topics.
      yield* publish("posts", "2", "p3")
      yield* publish("pages", "about", "h2")
      for (const headers of [{ "Last-Event-ID": after }, {}]) {
        const path = `${query("posts/1", "posts/2", "pages/*")}${"Last-Event-ID" in headers ? "" : `&lastEventId=${after}`}`
        const again = yield* Sse.reader(yield* get(path, headers))
        const replay = yield* again.readUntil((received) => records(received.events).length >= 2)
        const welcome = JSON.parse(replay.events[0]!.data) as { topics: Array<{ status: string }> }
        assert.isTrue(welcome.topics.every((topic) => topic.status === "resumed"))
        // posts/2's p2 came after the cursor's frame in the first stream, or before it: exactly what was missed.
        const missed = records(live.events).slice(records(live.events).indexOf("pages/* h1") + 1)
        assert.deepStrictEqual(records(replay.events).filter((r) => r.startsWith("posts/1")), missed.filter((r) => r.startsWith("posts/1")))
        assert.deepStrictEqual(records(replay.events).filter((r) => r.startsWith("pages")), ["pages/* h2"])
        assert.deepStrictEqual(
          records(replay.events).filter((r) => r.startsWith("posts/2")),
          [...missed.filter((r) => r.startsWith("posts/2")), "posts/2 p3"]
        )
        yield* again.cancel
      }
    }).pipe(Effect.provide(app())))

  it.scopedLive("refuses bad topics and cursors with a 400 JSON body, registering nothing", () =>
    Effect.gen(function*() {
      const full = Multiplex.encodeCursor(Multiplex.listHash(Either.getOrThrow(Multiplex.parseTopics(["a/1"], 3))), [
        { seq: 300, check: 1 }
      ])
      const truncated = full.slice(0, -2)
      const cases: Array<[string, Record<string, string>, string]> = [
        ["/api/saacms/v1/subscribe", {}, "invalid_topic"],
        [query("posts"), {}, "invalid_topic"],
        [query("posts/a b"), {}, "invalid_topic"],
        [query("../x/1"), {}, "invalid_topic"],
        [query("a/1", "a/2", "a/3", "a/4"), {}, "too_many_topics"],
        [query("a/1"), { "Last-Event-ID": "not-a-cursor!" }, "invalid_last_event_id"],
        // Of this topic list, but cut short.
        [`${query("a/1")}&lastEventId=${truncated}`, {}, "invalid_last_event_id"]
      ]
      for (const [path, headers, error] of cases) {
        const response = yield* get(path, headers)
        assert.strictEqual(response.status, 400, path)
        const body = (yield* Effect.promise(() => response.json())) as { error: string; message: string }
        assert.strictEqual(body.error, error, path)
        assert.notMatch(body.message, /at .*\.ts/)
      }
      assert.strictEqual(yield* Effect.flatMap(Hub.Hub, (hub) => hub.totalSubscribers), 0)
    }).pipe(Effect.provide(app())))

  it.scopedLive("asks authorize for each topic: a denied one gets its own frame, all denied is the denial", () =>
    Effect.gen(function*() {
      const asked: Array<string> = []
      const access = Access.layer({
        authorize: (request) =>
          Effect.sync(() => {
            asked.push(`${request.topic} ${request.collection} ${request.id}`)
            return request.collection === "secret" ? Access.deny(403, "no secrets") : true
          })
      })
      yield* Effect.gen(function*() {
        const reader = yield* Sse.reader(yield* get(query("posts/1", "secret/*")))
        const opening = yield* reader.readUntil((received) => received.events.some((e) => e.event === "saacms-denied"))
        assert.deepStrictEqual(JSON.parse(opening.events[0]!.data), {
          topics: [{ topic: "posts/1", status: "fresh" }, { topic: "secret/*", status: "denied" }]
        })
        assert.deepStrictEqual(JSON.parse(opening.events[1]!.data), { topic: "secret/*", status: 403, reason: "no secrets" })
        assert.sameMembers(asked, ["record posts 1", "collection secret *"])
        yield* publish("secret", "1", "s1")
        yield* publish("posts", "1", "p1")
        const live = yield* reader.readUntil((received) => records(received.events).length === 1)
        assert.deepStrictEqual(records(live.events), ["posts/1 p1"])
        yield* reader.cancel

        const denied = yield* get(query("secret/1", "secret/*"))
        assert.strictEqual(denied.status, 403)
        assert.deepStrictEqual(yield* Effect.promise(() => denied.json()), { error: "forbidden", message: "no secrets" })
      }).pipe(Effect.provide(app(access)))
    }))
})

describe(`multiplexed route through the PluginDef (${Server.runtime})`, () => {
  it.scopedLive("GET /api/saacms/v1/subscribe streams the topics it names", () =>
    Effect.gen(function*() {
      const plugin = Plugin.realtime({ retryMs: 0 })
      yield* Effect.addFinalizer(() => Effect.promise(() => plugin.services.realtime.stop()))
      const hono = new Hono()
      hono.get("/api/saacms/v1/subscribe", (c) => plugin.routes["GET /api/saacms/v1/subscribe"](c))
      const controller = new AbortController()
      yield* Effect.addFinalizer(() => Effect.sync(() => controller.abort()))
      const response = yield* Effect.promise(() =>
        Promise.resolve(hono.request(`http://localhost${query("posts/1", "posts/*")}`, { signal: controller.signal }))
      )
      assert.strictEqual(response.status, 200)
      const reader = yield* Sse.reader(response)
      yield* reader.readUntil((received) => received.events.some((e) => e.event === "saacms-welcome"))
      yield* Effect.promise(() => plugin.services.realtime.publish({ type: "changed", slug: "posts", id: "1", etag: "a", record: {} }))
      yield* Effect.promise(() => plugin.services.realtime.publish({ type: "changed", slug: "posts", id: "2", etag: "b", record: {} }))
      const live = yield* reader.readUntil((received) => records(received.events).length === 3)
      assert.sameMembers(records(live.events), ["posts/1 a", "posts/* a", "posts/* b"])
      yield* reader.cancel
    }))
})
