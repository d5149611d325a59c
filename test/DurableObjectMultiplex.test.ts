/**
 * Multiplexed streams on Workers, in workerd through Miniflare: the PluginDef's
 * `GET /api/saacms/v1/subscribe` in a Worker with a Durable Object binding.
 * Each collection's object serves its topics over one stream; the Worker
 * merges one stream per collection named, with one welcome and one cursor.
 */
import { assert, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Sse from "./utils/sse.js"
import * as Workerd from "./utils/workerd.js"

const entry = new URL("./workers/realtime.ts", import.meta.url).pathname

class Runtime extends Context.Tag("test/Runtime")<Runtime, Workerd.Workerd>() {}

const request = (path: string, init?: RequestInit) =>
  Effect.flatMap(Runtime, ({ url }) => Effect.promise(() => fetch(new URL(path, url), init)))

const publish = (slug: string, id: string, etag: string) =>
  Effect.flatMap(
    request("/publish", { method: "POST", body: JSON.stringify({ type: "changed", slug, id, etag, record: { etag } }) }),
    (response) => Effect.sync(() => assert.strictEqual(response.status, 200))
  )

const query = (...topics: Array<string>) =>
  `/api/saacms/v1/subscribe?${topics.map((t) => `topic=${encodeURIComponent(t)}`).join("&")}`

const records = (events: ReadonlyArray<Sse.SseEvent>) =>
  events.filter((event) => event.event === "changed").map((event) => {
    const data = JSON.parse(event.data) as { topic: string; etag: string }
    return `${data.topic} ${data.etag}`
  })

const welcome = (events: ReadonlyArray<Sse.SseEvent>) =>
  Object.fromEntries(
    (JSON.parse(events.find((event) => event.event === "saacms-welcome")!.data) as {
      topics: Array<{ topic: string; status: string }>
    }).topics.map(({ status, topic }) => [topic, status])
  )

const open = (path: string, headers: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const response = yield* request(path, { headers })
    assert.strictEqual(response.status, 200)
    const reader = yield* Sse.reader(response)
    const opening = yield* reader.readUntil((received) => received.events.some((e) => e.event === "saacms-welcome"))
    return { reader, opening }
  })

layer(Layer.scoped(Runtime, Workerd.start({ entry })), { timeout: 60_000, excludeTestServices: true })(
  "multiplexed streams on Durable Objects",
  (it) => {
    it.scoped("records and collections of two collections over one stream, then exact resume from the cursor", () =>
      Effect.gen(function*() {
        const topics = query("posts/m1", "posts/m2", "pages/*")
        const { opening, reader } = yield* open(topics)
        assert.match(opening.text, /^:keepalive\n\nretry: \d+\n\nevent: saacms-welcome\n/)
        assert.deepStrictEqual(welcome(opening.events), { "pages/*": "fresh", "posts/m1": "fresh", "posts/m2": "fresh" })
        yield* publish("posts", "m1", "a1")
        yield* publish("pages", "home", "h1")
        yield* publish("posts", "m3", "ignored")
        yield* publish("posts", "m2", "b1")
        const live = yield* reader.readUntil((received) => records(received.events).length === 3)
        assert.sameMembers(records(live.events), ["posts/m1 a1", "pages/* h1", "posts/m2 b1"])
        const ids = live.events.filter((event) => event.id !== undefined).map((event) => event.id)
        assert.strictEqual(new Set(ids).size, ids.length)
        const cursor = live.events.at(-1)!.id!
        yield* reader.cancel

        yield* publish("posts", "m1", "a2")
        yield* publish("pages", "about", "h2")
        yield* publish("posts", "m2", "b2")
        yield* publish("posts", "m1", "a3")
        const again = yield* open(topics, { "Last-Event-ID": cursor })
        assert.deepStrictEqual(welcome(again.opening.events), { "pages/*": "resumed", "posts/m1": "resumed", "posts/m2": "resumed" })
        const replay = yield* again.reader.readUntil((received) => records(received.events).length === 4)
        const got = records(replay.events)
        assert.deepStrictEqual(got.filter((r) => r.startsWith("posts/m1")), ["posts/m1 a2", "posts/m1 a3"])
        assert.deepStrictEqual(got.filter((r) => r.startsWith("posts/m2")), ["posts/m2 b2"])
        assert.deepStrictEqual(got.filter((r) => r.startsWith("pages")), ["pages/* h2"])
        // Live after the replay, with a cursor that resumes at the head.
        yield* publish("pages", "home", "h3")
        const more = yield* again.reader.readUntil((received) => records(received.events).length === 5)
        assert.strictEqual(records(more.events)[4], "pages/* h3")
      }))

    it.scoped("a collection whose every topic is revoked leaves, and the others go on", () =>
      Effect.gen(function*() {
        const { reader } = yield* open(query("rv-a/1", "rv-b/1"))
        // The objects' recheck hides private records from all but their owner.
        yield* Effect.flatMap(
          request("/publish", {
            method: "POST",
            body: JSON.stringify({ type: "changed", slug: "rv-a", id: "1", etag: "p1", record: { private: true, owner: "x" } })
          }),
          (response) => Effect.sync(() => assert.strictEqual(response.status, 200))
        )
        const revoked = yield* reader.readUntil((received) => received.events.some((e) => e.event === "saacms-revoked"))
        assert.deepStrictEqual(
          JSON.parse(revoked.events.find((e) => e.event === "saacms-revoked")!.data),
          { topic: "rv-a/1", reason: "forbidden" }
        )
        yield* publish("rv-b", "1", "b1")
        const live = yield* reader.readUntil((received) => records(received.events).length === 1)
        assert.deepStrictEqual(records(live.events), ["rv-b/1 b1"])
      }))

    it.scoped("a client that reads late gets every collection's events once and in order", () =>
      Effect.gen(function*() {
        const response = yield* request(query("bp-a/1", "bp-b/*"))
        assert.strictEqual(response.status, 200)
        const body = response.body!.getReader()
        yield* Effect.addFinalizer(() => Effect.promise(() => body.cancel().catch(() => undefined)))
        // More than the Worker holds for a client (64 KiB) from both objects, read only afterwards.
        const big = "x".repeat(8 * 1024)
        for (let n = 1; n <= 40; n++) {
          for (const [slug, id] of [["bp-a", "1"], ["bp-b", `r${n % 3}`]] as const) {
            yield* Effect.flatMap(
              request("/publish", {
                method: "POST",
                body: JSON.stringify({ type: "changed", slug, id, etag: `${slug}-${n}`, record: { n, big } })
              }),
              (response) => Effect.sync(() => assert.strictEqual(response.status, 200))
            )
          }
        }
        const decoder = new TextDecoder()
        let text = ""
        while (records(Sse.parse(text)).length < 80) {
          const chunk = yield* Effect.promise(() => body.read())
          assert.isFalse(chunk.done, "the stream ended early")
          text += decoder.decode(chunk.value, { stream: true })
        }
        const got = records(Sse.parse(text))
        assert.deepStrictEqual(got.filter((r) => r.startsWith("bp-a/1")), Array.from({ length: 40 }, (_, i) => `bp-a/1 bp-a-${i + 1}`))
        assert.deepStrictEqual(got.filter((r) => r.startsWith("bp-b/*")), Array.from({ length: 40 }, (_, i) => `bp-b/* bp-b-${i + 1}`))
      }))

    it.scoped("twenty records of one collection ride one object stream; seven collections are refused", () =>
      Effect.gen(function*() {
        const ids = Array.from({ length: 20 }, (_, i) => `w${i}`)
        const { reader } = yield* open(query(...ids.map((id) => `docs/${id}`)))
        // One object holds the stream's twenty topics.
        const statsResponse = yield* request(`/object/${encodeURIComponent("docs:*")}`, { headers: { Accept: "application/json" } })
        const stats = (yield* Effect.promise(() => statsResponse.json())) as { subscribers: number }
        assert.strictEqual(stats.subscribers, 20)
        for (const id of ids) yield* publish("docs", id, `${id}-1`)
        const live = yield* reader.readUntil((received) => records(received.events).length === 20)
        assert.sameMembers(records(live.events), ids.map((id) => `docs/${id} ${id}-1`))

        const seven = yield* request(query("c1/1", "c2/1", "c3/1", "c4/1", "c5/1", "c6/1", "c7/1"))
        assert.strictEqual(seven.status, 400)
        assert.strictEqual(((yield* Effect.promise(() => seven.json())) as { error: string }).error, "too_many_topics")
      }))
  }
)
