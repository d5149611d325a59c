/**
 * The Cloudflare example (examples/cloudflare) in the real Workers runtime:
 * its worker.ts bundled as wrangler would, with `@saacms/realtime` resolved to
 * this checkout's src/ (no build needed), served by workerd through Miniflare
 * with the example's binding, and driven over real HTTP as its README does.
 */
import { assert, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { eventually } from "./utils/eventually.js"
import * as Sse from "./utils/sse.js"
import * as Workerd from "./utils/workerd.js"

const entry = new URL("../examples/cloudflare/src/worker.ts", import.meta.url).pathname
const library = new URL("../src/index.ts", import.meta.url).pathname

class Example extends Context.Tag("test/CloudflareExample")<Example, Workerd.Workerd>() {}

// wrangler.toml's binding and migration; frames capped at 4 KiB so a 413 is cheap to provoke.
// The example imports the library by its package name: bundle it from this checkout's src/.
const example = Layer.scoped(
  Example,
  Workerd.start({ entry, vars: { REALTIME_MAX_FRAME_BYTES: "4096", REALTIME_LOG_LEVEL: "Warning" }, alias: { "@saacms/realtime": library } })
)

const request = (path: string, init?: RequestInit) =>
  Effect.flatMap(Example, ({ url }) => Effect.promise(() => fetch(new URL(path, url), init)))

const json = (response: Response) => Effect.promise(() => response.json() as Promise<Record<string, unknown>>)

const recordPath = (id: string) => `/api/saacms/v1/posts/${id}`

/** Open the example's subscribe route and wait for its `:keepalive` (the object has it registered then). */
const subscribe = (id: string, headers: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const response = yield* request(`${recordPath(id)}/subscribe`, { headers })
    assert.strictEqual(response.status, 200)
    assert.strictEqual(response.headers.get("content-type"), "text/event-stream")
    const reader = yield* Sse.reader(response)
    const received = yield* reader.readUntil((r) => r.comments.length > 0)
    assert.isTrue(received.text.startsWith(":keepalive\n\n"), received.text)
    return reader
  })

/** The example's record write, as another client makes it: status, JSON answer and ETag header. */
const send = (method: "PUT" | "DELETE", id: string, body?: string) =>
  Effect.gen(function*() {
    const response = yield* request(recordPath(id), body === undefined ? { method } : { method, body })
    return {
      status: response.status,
      type: response.headers.get("content-type"),
      etag: response.headers.get("etag"),
      body: yield* json(response)
    }
  })

/** What worker.ts promises as the ETag: the first 16 bytes of the body's SHA-256, hex, quoted. */
const contentEtag = (body: string) =>
  Effect.promise(() => crypto.subtle.digest("SHA-256", new TextEncoder().encode(body))).pipe(
    Effect.map((digest) => `"${Buffer.from(digest).subarray(0, 16).toString("hex")}"`)
  )

/** The record's object's own account (the binding's stats request, straight from Miniflare). */
const subscribers = (id: string) =>
  Effect.flatMap(Example, ({ miniflare }) =>
    Effect.promise(async () => {
      const namespace = await miniflare.getDurableObjectNamespace("SAACMS_REALTIME")
      const stub = namespace.get(namespace.idFromName(`posts:${id}`))
      const response = await stub.fetch("https://saacms-realtime-do/", { headers: { Accept: "application/json" } })
      return ((await response.json()) as { subscribers: number }).subscribers
    }))

const frame = (event: string, id: string, data: string) => `event: ${event}\nid: ${id}\ndata: ${data}\n\n`

layer(example, { timeout: 60_000, excludeTestServices: true })("examples/cloudflare in workerd", (it) => {
  it.scoped("a subscriber gets the keepalive, then the frame of a PUT another request made", () =>
    Effect.gen(function*() {
      const reader = yield* subscribe("1")
      const record = JSON.stringify({ title: "Hello" })
      const put = yield* send("PUT", "1", record)
      const etag = yield* contentEtag(record)
      assert.deepStrictEqual(put, {
        status: 200,
        type: "application/json",
        etag,
        body: { key: "posts:1", id: etag, seq: 1 }
      })
      const received = yield* reader.readUntil(Sse.hasEvents(1))
      assert.strictEqual(Sse.stripRetry(received.text), ":keepalive\n\n" + frame("changed", etag, record))
      assert.deepStrictEqual(received.events, [{ event: "changed", id: etag, data: record }])
    }))

  it.scoped("a DELETE arrives as `deleted`; Last-Event-ID of the first event replays the later ones in order", () =>
    Effect.gen(function*() {
      const live = yield* subscribe("2")
      const records = [{ title: "Hello" }, { title: "Hello again" }].map((record) => JSON.stringify(record))
      const puts = yield* Effect.forEach(records, (record) => send("PUT", "2", record))
      const deleted = yield* send("DELETE", "2")
      assert.deepStrictEqual(puts.map((put) => [put.status, put.body.seq]), [[200, 1], [200, 2]])
      assert.strictEqual(deleted.status, 200)
      assert.strictEqual(deleted.body.seq, 3)
      assert.isString(deleted.body.id)
      const [first, second] = puts.map((put) => String(put.body.id))
      const later = frame("changed", second!, records[1]!) + frame("deleted", String(deleted.body.id), `{"id":"2"}`)

      const received = yield* live.readUntil(Sse.hasEvents(3))
      assert.strictEqual(Sse.stripRetry(received.text), ":keepalive\n\n" + frame("changed", first!, records[0]!) + later)

      const replay = yield* subscribe("2", { "Last-Event-ID": first! })
      const replayed = yield* replay.readUntil(Sse.hasEvents(2))
      assert.strictEqual(Sse.stripRetry(replayed.text), ":keepalive\n\n" + later)
    }))

  it.scoped("bad writes get a 4xx JSON answer and publish nothing", () =>
    Effect.gen(function*() {
      const reader = yield* subscribe("3")
      const malformed = yield* send("PUT", "3", `{"title":`)
      assert.strictEqual(malformed.status, 400)
      assert.strictEqual(malformed.type, "application/json")
      assert.strictEqual(malformed.body.error, "invalid_json")

      const badKey = yield* Effect.flatMap(request("/api/saacms/v1/po:sts/3", { method: "PUT", body: "{}" }), json)
      assert.strictEqual(badKey.error, "invalid_resource_key")
      const tooLarge = yield* send("PUT", "3", JSON.stringify({ text: "x".repeat(5000) }))
      assert.deepStrictEqual([tooLarge.status, tooLarge.etag, tooLarge.body.error], [413, null, "frame_too_large"])

      // The first event the subscriber sees is the next good write, and it is the record's first.
      const good = yield* send("PUT", "3", "{}")
      assert.strictEqual(good.body.seq, 1)
      const received = yield* reader.readUntil(Sse.hasEvents(1))
      assert.strictEqual(Sse.stripRetry(received.text), ":keepalive\n\n" + frame("changed", String(good.body.id), "{}"))
    }))

  it.scoped("a subscriber that leaves is released by the record's object within a few writes", () =>
    Effect.gen(function*() {
      yield* Effect.scoped(Effect.gen(function*() {
        yield* subscribe("4")
        assert.strictEqual(yield* subscribers("4"), 1)
      }))
      // workerd does not tell the object that the client went away: its next writes fail.
      let n = 0
      yield* eventually(
        "the object released the subscriber",
        Effect.zipRight(Effect.suspend(() => send("PUT", "4", JSON.stringify({ n: ++n }))), subscribers("4")),
        (count) => count === 0,
        20
      )
    }))
})
