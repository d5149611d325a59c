import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { Hono } from "hono"
import { realtime } from "../src/index.js"
import type * as Plugin from "../src/Plugin.js"
import * as Sse from "./utils/sse.js"

const route = "GET /api/saacms/v1/:collection/:id/subscribe" as const

const mount = (plugin: Plugin.PluginDef, base?: string) => {
  const app = new Hono()
  app.get("/api/saacms/v1/:collection/:id/subscribe", (c) => plugin.routes[route](c))
  if (base === undefined) return app
  const root = new Hono()
  root.route(base, app)
  return root
}


const withPlugin = <A, E>(options: Plugin.RealtimeOptions, f: (plugin: Plugin.PluginDef) => Effect.Effect<A, E>) =>
  Effect.acquireUseRelease(
    // Refusals are logged at info: keep the test's output to results.
    Effect.sync(() => realtime({ logLevel: "Warning", ...options })),
    f,
    (plugin) => Effect.promise(() => plugin.services.realtime.stop())
  )

const subscriberCount = (plugin: Plugin.PluginDef, n: number) =>
  Effect.sync(() => plugin.services.realtime.__subscriberCount("posts", "1")).pipe(
    Effect.repeat({ until: (count) => count === n, schedule: Schedule.spaced("5 millis") }),
    Effect.timeout("5 seconds")
  )

describe("Plugin", () => {
  it("has the reference's shape", () => {
    const plugin = realtime()
    assert.strictEqual(plugin.name, "@saacms/plugin-realtime")
    assert.strictEqual(plugin.version, "0.1.0")
    // The reference's route, and the multiplexed one beside it.
    assert.deepStrictEqual(Object.keys(plugin.routes), [route, "GET /api/saacms/v1/subscribe"])
    assert.deepStrictEqual(Object.keys(plugin.services.realtime).sort(), ["__subscriberCount", "publish", "stop"])
    return plugin.services.realtime.stop()
  })

  it("rejects invalid options at construction", () => {
    assert.throws(() => realtime({ heartbeatMs: -1 }))
    assert.throws(() => realtime({ retention: { maxEvents: 0 } }))
    assert.throws(() => realtime({ logLevel: "Loud" as "Info" }))
  })

  for (const base of [undefined, "/cms"]) {
    it.live(`a publish through services reaches a subscriber through routes (mounted at ${base ?? "/"})`, () =>
      withPlugin({}, (plugin) =>
        Effect.gen(function*() {
          const app = mount(plugin, base)
          const response = yield* Effect.promise(async () => app.request(`${base ?? ""}/api/saacms/v1/posts/1/subscribe`))
          assert.strictEqual(response.status, 200)
          assert.strictEqual(response.headers.get("content-type"), "text/event-stream")
          assert.strictEqual(response.headers.get("cache-control"), "no-cache, no-transform")
          assert.strictEqual(response.headers.get("x-accel-buffering"), "no")
          const reading = yield* Effect.fork(Sse.readText(response, (text) => text.includes("data: {\"n\":1}")))
          yield* subscriberCount(plugin, 1)
          yield* Effect.promise(() => plugin.services.realtime.publish({ type: "changed", slug: "posts", id: "1", record: { n: 1 }, etag: "v1" }))
          const { text } = yield* reading.await.pipe(Effect.flatten)
          assert.strictEqual(Sse.stripRetry(text), ":keepalive\n\nevent: changed\nid: v1\ndata: {\"n\":1}\n\n")
          yield* subscriberCount(plugin, 0)
        })))
  }

  it.live("replays after Last-Event-ID (header, else ?lastEventId=) and honours retention", () =>
    withPlugin({ retention: { maxEvents: 2 } }, (plugin) =>
      Effect.gen(function*() {
        const app = mount(plugin)
        for (const n of [1, 2, 3]) {
          yield* Effect.promise(() => plugin.services.realtime.publish({ type: "changed", slug: "posts", id: "1", record: { n }, etag: `v${n}` }))
        }
        const get = (path: string, headers: Record<string, string> = {}) =>
          Effect.promise(async () => app.request(path, { headers }))
        const done = (text: string) => text.includes("v3")
        const byHeader = yield* Effect.flatMap(get("/api/saacms/v1/posts/1/subscribe?lastEventId=v1", { "Last-Event-ID": "v2" }), (r) => Sse.readText(r, done))
        assert.deepStrictEqual(Sse.parse(byHeader.text).map((e) => e.id), ["v3"])
        const byQuery = yield* Effect.flatMap(get("/api/saacms/v1/posts/1/subscribe?lastEventId=v2"), (r) => Sse.readText(r, done))
        assert.deepStrictEqual(Sse.parse(byQuery.text).map((e) => e.id), ["v3"])
        // v1 was evicted (two events kept): one resync frame with the newest id.
        const evicted = yield* Effect.flatMap(get("/api/saacms/v1/posts/1/subscribe", { "Last-Event-ID": "v1" }), (r) => Sse.readText(r, done))
        assert.strictEqual(Sse.stripRetry(evicted.text), ":keepalive\n\nevent: saacms-resync\nid: v3\ndata: {\"reason\":\"buffer-miss\"}\n\n")
      })))

  it.live("honours heartbeatMs", () =>
    withPlugin({ heartbeatMs: 20 }, (plugin) =>
      Effect.gen(function*() {
        const response = yield* Effect.promise(async () => mount(plugin).request("/api/saacms/v1/posts/1/subscribe"))
        const { text } = yield* Sse.readText(response, (t) => Sse.parseAll(t).comments.length === 3)
        assert.strictEqual(Sse.stripRetry(text), ":keepalive\n\n".repeat(3))
      })))

  it.live("answers bad keys and ids with 400 JSON and registers nothing", () =>
    withPlugin({}, (plugin) =>
      Effect.gen(function*() {
        const app = mount(plugin)
        for (const [path, headers, error] of [
          ["/api/saacms/v1/po:sts/1/subscribe", {}, "invalid_resource_key"],
          [`/api/saacms/v1/posts/${"x".repeat(129)}/subscribe`, {}, "invalid_resource_key"],
          ["/api/saacms/v1/posts/1/subscribe", { "Last-Event-ID": "x".repeat(257) }, "invalid_last_event_id"]
        ] as const) {
          const response = yield* Effect.promise(async () => app.request(path, { headers }))
          assert.strictEqual(response.status, 400)
          const body = yield* Effect.promise(() => response.json() as Promise<{ error: string; message: string }>)
          assert.strictEqual(body.error, error)
          assert.isString(body.message)
          assert.notMatch(body.message, /\n\s+at /)
        }
        assert.strictEqual(plugin.services.realtime.__subscriberCount("posts", "1"), 0)
        const rejected = yield* Effect.promise(() =>
          plugin.services.realtime.publish({ type: "changed", slug: "posts", id: "1", record: {}, etag: "a\nb" }).then(() => undefined, (e: unknown) => e)
        )
        assert.strictEqual((rejected as { _tag: string })._tag, "InvalidEvent")
      })))

  it.live("every publish answers with a promise, the first (through the runtime) and the later ones (plain calls) alike; refused ones change nothing", () =>
    withPlugin({ maxFrameBytes: 1024 }, (plugin) =>
      Effect.gen(function*() {
        const publish = (event: unknown) =>
          Effect.promise(() =>
            Promise.resolve().then(() => plugin.services.realtime.publish(event as Plugin.RealtimeEvent)).then(
              (published) => ({ published, tag: "Published" }),
              (error: { _tag?: string }) => ({ published: undefined, tag: error._tag ?? "Error" })
            )
          )
        const refused: Array<string> = []
        for (let round = 1; round <= 2; round++) {
          const ok = yield* publish({ type: "changed", slug: "posts", id: "1", record: { round }, etag: `r${round}` })
          assert.deepStrictEqual(ok.published, { key: "posts:1", id: `r${round}`, seq: round })
          for (
            const bad of [
              { type: "changed", slug: "posts", id: "1", record: {}, etag: "a\nb" },
              { type: "changed", slug: "po:sts", id: "1", record: {} },
              { type: "changed", slug: "posts", id: "1", record: { body: "x".repeat(2048) } },
              { type: "changed", slug: "posts", id: "1", record: { toJSON: () => { throw new Error("boom") } } }
            ]
          ) refused.push((yield* publish(bad)).tag)
        }
        assert.deepStrictEqual(refused, [
          ...["InvalidEvent", "InvalidResourceKey", "FrameTooLarge", "InvalidEvent"],
          ...["InvalidEvent", "InvalidResourceKey", "FrameTooLarge", "InvalidEvent"]
        ])
        // Nothing refused took a sequence number.
        const next = yield* publish({ type: "deleted", slug: "posts", id: "1" })
        assert.strictEqual(next.published?.seq, 3)
        yield* Effect.promise(() => plugin.services.realtime.stop())
        assert.notStrictEqual((yield* publish({ type: "deleted", slug: "posts", id: "1" })).tag, "Published")
      })))

  it.live("stop() ends every open stream and frees everything", () =>
    Effect.gen(function*() {
      const plugin = realtime()
      const app = mount(plugin)
      const responses = yield* Effect.promise(() =>
        Promise.all([1, 2, 3].map(async () => app.request("/api/saacms/v1/posts/1/subscribe")))
      )
      const readers = yield* Effect.forEach(responses, (r) => Effect.fork(Sse.readText(r, () => false)))
      yield* subscriberCount(plugin, 3)
      // Three first subscribers that arrived together share one record.
      yield* Effect.promise(() => plugin.services.realtime.publish({ type: "deleted", slug: "posts", id: "1" }))
      const published = yield* Effect.promise(() => plugin.services.realtime.publish({ type: "changed", slug: "posts", id: "1", record: 2, etag: "v2" }))
      assert.strictEqual(published.seq, 2)
      yield* Effect.promise(() => plugin.services.realtime.stop())
      for (const reader of readers) {
        const result = yield* reader.await.pipe(Effect.flatten)
        assert.isTrue(result.ended)
        assert.deepStrictEqual(Sse.parse(result.text).map((e) => e.event), ["deleted", "changed"])
      }
      const after = yield* Effect.promise(async () => app.request("/api/saacms/v1/posts/1/subscribe"))
      assert.strictEqual(after.status, 503)
    }))

  it.live("two instances share nothing", () =>
    withPlugin({}, (a) =>
      withPlugin({}, (b) =>
        Effect.gen(function*() {
          const response = yield* Effect.promise(async () => mount(a).request("/api/saacms/v1/posts/1/subscribe"))
          const reading = yield* Effect.fork(Sse.readText(response, (t) => t.includes("event:")))
          yield* subscriberCount(a, 1)
          assert.strictEqual(b.services.realtime.__subscriberCount("posts", "1"), 0)
          yield* Effect.promise(() => b.services.realtime.publish({ type: "deleted", slug: "posts", id: "1" }))
          yield* Effect.promise(() => a.services.realtime.publish({ type: "changed", slug: "posts", id: "1", record: 1, etag: "a" }))
          const { text } = yield* reading.await.pipe(Effect.flatten)
          assert.deepStrictEqual(Sse.parse(text).map((e) => e.event), ["changed"])
        }))))
})
