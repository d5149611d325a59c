/**
 * The Worker side of the Durable Object backend against stand-in bindings, for
 * what workerd cannot be made to do on demand: an object that cannot be
 * reached, or that goes away in the middle of a stream (a deploy resets it).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { Hono } from "hono"
import * as DurableObjectHttp from "../src/DurableObject/Http.js"
import type * as Namespace from "../src/DurableObject/Namespace.js"
import { realtime } from "../src/index.js"
import type { PluginDef } from "../src/index.js"
import * as RealtimeError from "../src/RealtimeError.js"

/** A binding whose objects all answer with `answer`; it records what they were asked. */
const binding = (answer: (request: Request) => Promise<Response>) => {
  const calls: Array<{ name: string; request: Request }> = []
  const namespace: Namespace.DurableObjectNamespaceLike = {
    idFromName: (name) => ({ name, toString: () => name }),
    get: (id) => ({
      fetch: (request) => {
        calls.push({ name: id.name ?? "", request })
        return answer(request)
      }
    })
  }
  return { namespace, calls }
}

const mount = (plugin: PluginDef) => {
  const app = new Hono()
  app.get("/api/saacms/v1/:collection/:id/subscribe", (c) => plugin.routes["GET /api/saacms/v1/:collection/:id/subscribe"](c))
  return app
}

// The stand-in objects answer with SSE responses: the stream mode (the socket
// mode, the default, needs workerd's WebSocketPair; see DurableObjectSocket.test.ts).
const withPlugin = <A, E>(namespace: Namespace.DurableObjectNamespaceLike, f: (plugin: PluginDef) => Effect.Effect<A, E>) =>
  Effect.acquireUseRelease(
    // Refusals and an unavailable object are logged: keep the test's output to results.
    Effect.sync(() => realtime({ binding: namespace, durableObjectMode: "stream", logLevel: "None" })),
    f,
    (plugin) => Effect.promise(() => plugin.services.realtime.stop())
  )

const event = { type: "changed", slug: "posts", id: "1", record: { n: 1 }, etag: "e1" } as const

describe("realtime({ binding })", () => {
  it.effect("routes a subscribe to the record's object with the client's last event id (header or query)", () => {
    const { calls, namespace } = binding(() => Promise.resolve(new Response(":keepalive\n\n")))
    return withPlugin(namespace, (plugin) =>
      Effect.gen(function*() {
        const app = mount(plugin)
        const byQuery = yield* Effect.promise(async () => app.request("/api/saacms/v1/posts/1/subscribe?lastEventId=e5"))
        assert.strictEqual(yield* Effect.promise(() => byQuery.text()), ":keepalive\n\n")
        assert.strictEqual(byQuery.headers.get("content-type"), "text/event-stream")
        yield* Effect.promise(async () => app.request("/api/saacms/v1/posts/1/subscribe", { headers: { "Last-Event-ID": "e7" } }))
        yield* Effect.promise(async () => app.request("/api/saacms/v1/posts/1/subscribe"))
        assert.deepStrictEqual(
          calls.map(({ name, request }) => [name, request.method, request.headers.get("accept"), request.headers.get("last-event-id")]),
          [
            ["posts:1", "GET", "text/event-stream", "e5"],
            ["posts:1", "GET", "text/event-stream", "e7"],
            ["posts:1", "GET", "text/event-stream", null]
          ]
        )
        // Bad input never reaches an object.
        const bad = yield* Effect.promise(async () => app.request("/api/saacms/v1/posts/1/subscribe?lastEventId=a%0Ab"))
        assert.strictEqual(bad.status, 400)
        assert.lengthOf(calls, 3)
      }))
  })

  it.effect("an object that cannot be reached: the route answers 503 with Retry-After, publish rejects with Unavailable", () => {
    const { namespace } = binding(() => Promise.reject(new Error("Durable Object overloaded: internal detail 42")))
    return withPlugin(namespace, (plugin) =>
      Effect.gen(function*() {
        const response = yield* Effect.promise(async () => mount(plugin).request("/api/saacms/v1/posts/1/subscribe"))
        assert.strictEqual(response.status, 503)
        assert.strictEqual(response.headers.get("retry-after"), "1")
        const body = yield* Effect.promise(() => response.text())
        assert.deepStrictEqual(JSON.parse(body).error, "unavailable")
        assert.notInclude(body, "internal detail")
        const error = yield* Effect.flip(Effect.tryPromise({ try: () => plugin.services.realtime.publish(event), catch: (e) => e }))
        assert.strictEqual((error as { _tag: string })._tag, "Unavailable")
      }))
  })

  it.effect("an object that goes away mid-stream (a deploy resets it) ends the client's stream cleanly", () => {
    const encoder = new TextEncoder()
    const { namespace } = binding(() =>
      Promise.resolve(
        new Response(
          new ReadableStream<Uint8Array>({
            start: (controller) => controller.enqueue(encoder.encode(":keepalive\n\nevent: changed\nid: e1\ndata: {}\n\n")),
            // Once that was read.
            pull: (controller) => controller.error(new Error("Durable Object reset because its code was updated."))
          }, { highWaterMark: 0 })
        )
      )
    )
    return withPlugin(namespace, (plugin) =>
      Effect.gen(function*() {
        const response = yield* Effect.promise(async () => mount(plugin).request("/api/saacms/v1/posts/1/subscribe"))
        assert.strictEqual(response.status, 200)
        // The body ends (the client reconnects with e1) instead of failing.
        assert.strictEqual(yield* Effect.promise(() => response.text()), ":keepalive\n\nevent: changed\nid: e1\ndata: {}\n\n")
      }))
  })

  it.effect("publish maps the object's 4xx answers to typed errors", () => {
    const { namespace } = binding((request) =>
      request.text().then((body) =>
        body.includes("huge")
          // As the object answers: the error itself in `detail`, read back with its Schema.
          ? DurableObjectHttp.refusal(new RealtimeError.FrameTooLarge({ bytes: 2_000_000, maxBytes: 1_048_576 }))
          : body.includes("odd")
          ? DurableObjectHttp.refusal(new RealtimeError.InvalidResourceKey({ field: "collection", reason: "odd" }))
          : new Response(null, { status: 204, headers: { "X-Saacms-Event-Id": encodeURIComponent('W/"a b"'), "X-Saacms-Event-Seq": "7" } })
      )
    )
    return withPlugin(namespace, (plugin) =>
      Effect.gen(function*() {
        const published = yield* Effect.promise(() => plugin.services.realtime.publish(event))
        assert.deepStrictEqual(published, { key: "posts:1", id: 'W/"a b"', seq: 7 })
        const error = yield* Effect.flip(Effect.tryPromise({
          try: () => plugin.services.realtime.publish({ ...event, record: "huge" }),
          catch: (e) => e
        }))
        assert.deepInclude(error as object, { _tag: "FrameTooLarge", bytes: 2_000_000, maxBytes: 1_048_576 })
        // Not rebuilt from a code: the field the object named.
        const odd = yield* Effect.flip(Effect.tryPromise({
          try: () => plugin.services.realtime.publish({ ...event, record: "odd" }),
          catch: (e) => e
        }))
        assert.deepInclude(odd as object, { _tag: "InvalidResourceKey", field: "collection", reason: "odd" })
      }))
  })
})
