/**
 * Access control, limits, the retry hint and CORS: through the PluginDef on
 * Hono (the Promise-returning `authorize`), and on the core with TestClock
 * (grant expiry, per-event re-checks).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { Hono } from "hono"
import * as Access from "../src/Access.js"
import { realtime } from "../src/index.js"
import type * as Plugin from "../src/Plugin.js"
import * as Realtime from "../src/Realtime.js"
import { eventually } from "./utils/eventually.js"
import { awaitSubscribers, key, memory } from "./utils/layers.js"
import * as Sse from "./utils/sse.js"

const route = "GET /api/saacms/v1/:collection/:id/subscribe" as const
const preflightRoute = "OPTIONS /api/saacms/v1/:collection/:id/subscribe" as const
const path = "/api/saacms/v1/posts/1/subscribe"

const mount = (plugin: Plugin.PluginDef) => {
  const app = new Hono()
  app.get("/api/saacms/v1/:collection/:id/subscribe", (c) => plugin.routes[route](c))
  const preflight = plugin.routes[preflightRoute]
  if (preflight !== undefined) app.options("/api/saacms/v1/:collection/:id/subscribe", (c) => preflight(c))
  return app
}

const withPlugin = <A, E>(options: Plugin.RealtimeOptions, f: (plugin: Plugin.PluginDef, app: Hono) => Effect.Effect<A, E>) =>
  Effect.acquireUseRelease(
    // Refusals are logged (a failing authorize as an error): keep the test's output to results.
    Effect.sync(() => realtime({ logLevel: "None", ...options })),
    (plugin) => f(plugin, mount(plugin)),
    (plugin) => Effect.promise(() => plugin.services.realtime.stop())
  )

const request = (app: Hono, url: string, init?: RequestInit) => Effect.promise(async () => app.request(url, init))
const json = (response: Response) => Effect.promise(() => response.json() as Promise<Record<string, unknown>>)
const count = (plugin: Plugin.PluginDef, id = "1") => plugin.services.realtime.__subscriberCount("posts", id)

const changed = (n: number, record: unknown = { n }) =>
  ({ type: "changed", slug: "posts", id: "1", record, etag: `e${n}` }) as const


describe("authorize (PluginDef)", () => {
  it.live("sees the key, headers, cookies and query, and denies with 401 or 403 and a JSON body, opening nothing", () => {
    const seen: Array<Access.AccessRequest> = []
    return withPlugin({
      authorize: async (request) => {
        seen.push(request)
        const token = request.headers.get("authorization") ?? request.cookies["session"] ?? request.url.searchParams.get("token")
        if (token === null || token === undefined) return Access.deny(401)
        return token === "Bearer alice" || token === "alice" ? true : Access.deny(403, "not your record")
      }
    }, (plugin, app) =>
      Effect.gen(function*() {
        const anonymous = yield* request(app, path)
        assert.strictEqual(anonymous.status, 401)
        assert.deepStrictEqual(yield* json(anonymous), { error: "unauthorized", message: "authentication required" })
        const bob = yield* request(app, path, { headers: { Authorization: "Bearer bob" } })
        assert.strictEqual(bob.status, 403)
        assert.deepStrictEqual(yield* json(bob), { error: "forbidden", message: "not your record" })
        assert.strictEqual(count(plugin), 0)
        const byCookie = yield* request(app, `${path}?x=1`, { headers: { Cookie: "theme=dark; session=alice" } })
        assert.strictEqual(byCookie.status, 200)
        const byQuery = yield* request(app, `${path}?token=alice`)
        assert.strictEqual(byQuery.status, 200)
        assert.deepStrictEqual(seen.map((r) => [r.key, r.collection, r.id, r.method]), Array(4).fill(["posts:1", "posts", "1", "GET"]))
        assert.deepStrictEqual(seen[2]!.cookies, { theme: "dark", session: "alice" })
        assert.strictEqual(seen[2]!.url.searchParams.get("x"), "1")
        yield* Effect.promise(() => Promise.all([byCookie.body!.cancel(), byQuery.body!.cancel()]))
      }))
  })

  it.live("an authorize that throws answers 500 without its message, and opens nothing", () =>
    withPlugin({
      authorize: () => {
        throw new Error("database password is hunter2")
      }
    }, (plugin, app) =>
      Effect.gen(function*() {
        const response = yield* request(app, path)
        assert.strictEqual(response.status, 500)
        const body = yield* Effect.promise(() => response.text())
        assert.deepStrictEqual(JSON.parse(body), { error: "internal", message: "internal error" })
        assert.notInclude(body, "hunter2")
        assert.strictEqual(count(plugin), 0)
      })))

  it.live("a grant that has already expired gets a 401", () =>
    withPlugin({ authorize: () => Access.allow({ expiresAt: new Date(Date.now() - 1000) }) }, (plugin, app) =>
      Effect.gen(function*() {
        const response = yield* request(app, path)
        assert.strictEqual(response.status, 401)
        assert.strictEqual((yield* json(response)).error, "unauthorized")
        assert.strictEqual(count(plugin), 0)
      })))

  it.live("recheck: a subscriber that may no longer see the record gets saacms-revoked and its stream ends; others carry on", () =>
    withPlugin({
      authorize: (request) => Access.allow({ subject: request.headers.get("x-user") }),
      recheck: (subject, event) =>
        event.type === "deleted" || (event.record as { owner: string }).owner === subject ||
        (event.record as { public: boolean }).public
    }, (plugin, app) =>
      Effect.gen(function*() {
        const alice = yield* request(app, path, { headers: { "x-user": "alice" } })
        const bob = yield* request(app, path, { headers: { "x-user": "bob" } })
        const aliceText = yield* Effect.fork(Sse.readText(alice, (t) => Sse.parse(t).length >= 2))
        const bobText = yield* Effect.fork(Sse.readText(bob, () => false))
        yield* Effect.promise(() => plugin.services.realtime.publish(changed(1, { owner: "alice", public: true })))
        yield* Effect.promise(() => plugin.services.realtime.publish(changed(2, { owner: "alice", public: false })))
        const bobs = yield* Fiber.join(bobText)
        // Bob saw the public version, then the documented end, then nothing: his stream ended.
        assert.isTrue(bobs.ended)
        assert.deepStrictEqual(Sse.parse(bobs.text).map((e) => [e.event, e.id, e.data]), [
          ["changed", "e1", "{\"owner\":\"alice\",\"public\":true}"],
          ["saacms-revoked", undefined, "{\"reason\":\"forbidden\"}"]
        ])
        const alices = yield* Fiber.join(aliceText)
        assert.deepStrictEqual(Sse.parse(alices.text).map((e) => e.id), ["e1", "e2"])
      })))
})

describe("grants and re-checks (core, TestClock)", () => {
  const collect = (grant: Realtime.Grant) =>
    Effect.flatMap(Realtime.Realtime, (realtime) =>
      realtime.subscribe(key("posts", "1"), undefined, grant).pipe(
        Stream.runCollect,
        Effect.map((chunks) => Sse.text(Chunk.toReadonlyArray(chunks))),
        Effect.fork
      ))

  it.effect("a stream ends with saacms-revoked {reason: expired} once its grant expires, at the next heartbeat or publish", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const idle = yield* collect({ expiresAt: 12_000 })
      const busy = yield* collect({ expiresAt: 12_000 })
      const forever = yield* collect({})
      yield* awaitSubscribers(key("posts", "1"), 3)
      yield* realtime.publish(changed(1))
      yield* TestClock.adjust("10 seconds") // heartbeat at 10 s: not expired yet
      yield* TestClock.adjust("3 seconds") // 13 s: past the grant
      yield* realtime.publish(changed(2))
      for (const fiber of [idle, busy]) {
        const text = yield* Fiber.join(fiber)
        assert.deepStrictEqual(Sse.parse(text).map((e) => [e.event, e.data]), [
          ["changed", "{\"n\":1}"],
          ["saacms-revoked", "{\"reason\":\"expired\"}"]
        ])
      }
      yield* awaitSubscribers(key("posts", "1"), 1)
      yield* Fiber.interrupt(forever)
    }).pipe(Effect.provide(memory({ heartbeatMs: 10_000, retryMs: 0 }))))

  it.effect("an idle expired stream ends at the next heartbeat, not hours later", () =>
    Effect.gen(function*() {
      const fiber = yield* collect({ expiresAt: 1_000 })
      yield* awaitSubscribers(key("posts", "1"), 1)
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(Sse.stripRetry(yield* Fiber.join(fiber)), ":keepalive\n\nevent: saacms-revoked\ndata: {\"reason\":\"expired\"}\n\n")
    }).pipe(Effect.provide(memory({ heartbeatMs: 5_000 }))))

  it.effect("a re-check that throws refuses (the stream ends with saacms-revoked {reason: forbidden})", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const fiber = yield* collect({
        canSee: () => {
          throw new Error("boom")
        }
      })
      yield* awaitSubscribers(key("posts", "1"), 1)
      yield* realtime.publish(changed(1))
      const text = yield* Fiber.join(fiber)
      assert.deepStrictEqual(Sse.parse(text).map((e) => e.event), ["saacms-revoked"])
      assert.notInclude(text, "boom")
    }).pipe(Effect.provide(memory())))
})

describe("limits", () => {
  it.live("subscribers beyond maxSubscribersPerKey or maxSubscribers get 503 with a jittered Retry-After; a freed slot is reused", () =>
    withPlugin({ maxSubscribersPerKey: 2, maxSubscribers: 3 }, (plugin, app) =>
      Effect.gen(function*() {
        const first = yield* request(app, path)
        const second = yield* request(app, path)
        const third = yield* request(app, path)
        assert.deepStrictEqual([first.status, second.status, third.status], [200, 200, 503])
        assert.deepStrictEqual(yield* json(third), { error: "too_many_subscribers", message: "subscriber limit reached (key); retry later" })
        const retryAfter = Number(third.headers.get("retry-after"))
        assert.isTrue(retryAfter >= 3 && retryAfter <= 5, `Retry-After ${retryAfter}`)
        const other = yield* request(app, "/api/saacms/v1/posts/2/subscribe")
        const fourth = yield* request(app, "/api/saacms/v1/posts/3/subscribe")
        assert.deepStrictEqual([other.status, fourth.status], [200, 503])
        assert.strictEqual((yield* json(fourth)).message, "subscriber limit reached (process); retry later")
        assert.strictEqual(count(plugin), 2)
        yield* Effect.promise(() => first.body!.cancel())
        // Polled every 10 ms, at most about 5 s: fails (ConditionNotMet) if the slot is never freed.
        yield* eventually("the cancelled subscriber's slot is freed", Effect.sync(() => count(plugin)), (n) => n === 1)
        const again = yield* request(app, path)
        assert.strictEqual(again.status, 200)
        yield* Effect.promise(() => Promise.all([second.body!.cancel(), other.body!.cancel(), again.body!.cancel()]))
      })))
})

describe("retry hint", () => {
  const openings = (n: number) =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const values: Array<string> = []
      for (let i = 0; i < n; i++) {
        const subscriber = yield* realtime.open(key("posts", "1"))
        const reader = subscriber.toReadableStream().getReader()
        const chunk = yield* Effect.promise(() => reader.read())
        values.push(new TextDecoder().decode(chunk.value))
        yield* Effect.promise(() => reader.cancel())
      }
      return values
    })

  it.effect("follows the opening keepalive, within retryMs + [0, retryJitterMs], and varies", () =>
    Effect.gen(function*() {
      const texts = yield* openings(20)
      const retries = texts.map((text) => Number(/^:keepalive\n\nretry: (\d+)\n\n$/.exec(text)?.[1]))
      for (const retry of retries) assert.isTrue(retry >= 1000 && retry <= 1500, `retry ${retry}`)
      assert.isAbove(new Set(retries).size, 1)
    }).pipe(Effect.provide(memory({ retryMs: 1000, retryJitterMs: 500 }))))

  it.effect("is exact without jitter, and absent with retryMs 0", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* openings(2).pipe(Effect.provide(memory({ retryMs: 2500, retryJitterMs: 0 }))), [
        ":keepalive\n\nretry: 2500\n\n",
        ":keepalive\n\nretry: 2500\n\n"
      ])
      assert.deepStrictEqual(yield* openings(1).pipe(Effect.provide(memory({ retryMs: 0 }))), [":keepalive\n\n"])
    }))
})

describe("CORS", () => {
  it.live("is off by default: no CORS headers, and no preflight route", () =>
    withPlugin({}, (plugin, app) =>
      Effect.gen(function*() {
        const response = yield* request(app, path, { headers: { Origin: "https://app.example" } })
        assert.isNull(response.headers.get("access-control-allow-origin"))
        assert.isUndefined(plugin.routes[preflightRoute])
        yield* Effect.promise(() => response.body!.cancel())
      })))

  it.live("allows the listed origins (with credentials) on streams, refusals and preflights", () =>
    withPlugin({
      cors: { origins: ["https://app.example"], credentials: true },
      authorize: (request) => request.cookies["session"] !== undefined
    }, (_plugin, app) =>
      Effect.gen(function*() {
        const allowed = yield* request(app, path, { headers: { Origin: "https://app.example", Cookie: "session=1" } })
        assert.strictEqual(allowed.status, 200)
        assert.strictEqual(allowed.headers.get("access-control-allow-origin"), "https://app.example")
        assert.strictEqual(allowed.headers.get("access-control-allow-credentials"), "true")
        assert.strictEqual(allowed.headers.get("vary"), "Origin")
        yield* Effect.promise(() => allowed.body!.cancel())
        // A refusal carries them too, so the browser lets the page read it.
        const refused = yield* request(app, path, { headers: { Origin: "https://app.example" } })
        assert.strictEqual(refused.status, 403)
        assert.strictEqual(refused.headers.get("access-control-allow-origin"), "https://app.example")
        const other = yield* request(app, path, { headers: { Origin: "https://evil.example", Cookie: "session=1" } })
        assert.isNull(other.headers.get("access-control-allow-origin"))
        yield* Effect.promise(() => other.body!.cancel())
        const preflight = yield* request(app, path, {
          method: "OPTIONS",
          headers: { Origin: "https://app.example", "Access-Control-Request-Headers": "last-event-id" }
        })
        assert.strictEqual(preflight.status, 204)
        assert.include(preflight.headers.get("access-control-allow-headers") ?? "", "Last-Event-ID")
        const badPreflight = yield* request(app, path, { method: "OPTIONS", headers: { Origin: "https://evil.example" } })
        assert.strictEqual(badPreflight.status, 403)
      })))

  it.live("\"*\" without credentials answers \"*\"", () =>
    withPlugin({ cors: { origins: "*" } }, (_plugin, app) =>
      Effect.gen(function*() {
        const response = yield* request(app, path, { headers: { Origin: "https://any.example" } })
        assert.strictEqual(response.headers.get("access-control-allow-origin"), "*")
        assert.isNull(response.headers.get("access-control-allow-credentials"))
        yield* Effect.promise(() => response.body!.cancel())
      })))
})
