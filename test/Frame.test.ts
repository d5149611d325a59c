import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
import type * as Event from "../src/Event.js"
import * as Frame from "../src/Frame.js"
import * as Sse from "./utils/sse.js"

const decoder = new TextDecoder()
const encode = (event: Event.RealtimeEvent, id: string) => decoder.decode(Either.getOrThrow(Frame.encode(event, id)))

// Inputs with the bytes the reference writes for them (its formatFrame: event, id, data).
const table: ReadonlyArray<readonly [Event.RealtimeEvent, string]> = [
  [{ type: "changed", slug: "posts", id: "1", record: { title: "Hello" }, etag: "\"abc\"" }, "event: changed\nid: \"abc\"\ndata: {\"title\":\"Hello\"}\n\n"],
  [{ type: "snapshot", slug: "posts", id: "1", record: [1, "two", null, true], etag: "W/\"1\"" }, "event: snapshot\nid: W/\"1\"\ndata: [1,\"two\",null,true]\n\n"],
  [{ type: "deleted", slug: "posts", id: "abc-9" }, "event: deleted\nid: E\ndata: {\"id\":\"abc-9\"}\n\n"],
  [{ type: "changed", slug: "p", id: "x", record: "multi\nline\r\ntext\u0000", etag: "e" }, "event: changed\nid: e\ndata: \"multi\\nline\\r\\ntext\\u0000\"\n\n"],
  [{ type: "changed", slug: "p", id: "x", record: { "é": "日本\u2028" }, etag: "e" }, "event: changed\nid: e\ndata: {\"é\":\"日本\u2028\"}\n\n"],
  [{ type: "changed", slug: "p", id: "x", record: 42, etag: "e" }, "event: changed\nid: e\ndata: 42\n\n"]
]

describe("Frame", () => {
  it("encodes the reference's bytes", () => {
    for (const [event, expected] of table) {
      assert.strictEqual(encode(event, event.type === "deleted" ? "E" : event.etag!), expected)
    }
  })

  it("keepalive and resync frames are the reference's", () => {
    assert.strictEqual(decoder.decode(Frame.keepalive), ":keepalive\n\n")
    assert.strictEqual(
      decoder.decode(Frame.resync("\"v7\"")),
      "event: saacms-resync\nid: \"v7\"\ndata: {\"reason\":\"buffer-miss\"}\n\n"
    )
  })

  it("every frame parses back to exactly the event (one event, same id and data)", () => {
    for (const [event] of table) {
      const id = event.type === "deleted" ? "E" : event.etag!
      const parsed = Sse.parse(encode(event, id))
      assert.strictEqual(parsed.length, 1)
      assert.strictEqual(parsed[0]!.event, event.type)
      assert.strictEqual(parsed[0]!.id, id)
      assert.deepStrictEqual(JSON.parse(parsed[0]!.data), event.type === "deleted" ? { id: event.id } : event.record)
    }
  })

  it("rejects ids with CR, LF or NUL and records that are not JSON", () => {
    const event: Event.RealtimeEvent = { type: "changed", slug: "p", id: "x", record: {} }
    for (const id of ["a\nevent: x", "a\rb", "a\0b"]) {
      assert.isTrue(Either.isLeft(Frame.encode(event, id)))
    }
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    for (const record of [undefined, () => 1, 10n, cyclic, Symbol("s")]) {
      const result = Frame.encode({ type: "changed", slug: "p", id: "x", record }, "id")
      assert.isTrue(Either.isLeft(result) && result.left._tag === "InvalidEvent")
    }
  })

  it("refuses records nested deeper than maxDepth before serialising them, and takes those at it", () => {
    const nest = (depth: number) => {
      let value: unknown = 1
      for (let i = 0; i < depth; i++) value = i % 2 === 0 ? [value] : { v: value }
      return value
    }
    const encodeRecord = (record: unknown) => Frame.encode({ type: "changed", slug: "p", id: "x", record }, "id")
    assert.isTrue(Either.isRight(encodeRecord(nest(Frame.maxDepth))))
    const deep = encodeRecord(nest(Frame.maxDepth + 1))
    assert.isTrue(Either.isLeft(deep) && deep.left.reason === `record nests deeper than ${Frame.maxDepth} levels`)
    // 50 000 levels: Bun took over a second to fail inside JSON.stringify.
    assert.isTrue(Either.isLeft(encodeRecord(nest(50_000))))
  })

  // When the published reference sits beside the project (../shared/seed), compare
  // with its own output through its route, not only with the table above.
  const reference = fileURLToPath(new URL("../../shared/seed/dist/index.js", import.meta.url))
  it("matches the published reference's route output byte for byte", async () => {
    if (!existsSync(reference)) return
    const { realtime } = await import(reference) as {
      realtime: (o?: object) => {
        routes: Record<string, (c: { req: { param(n: string): string } }) => Response>
        services: { realtime: { publish(e: unknown): Promise<void>; stop(): void } }
      }
    }
    const plugin = realtime({ heartbeatMs: 3_600_000 })
    try {
      const withEtag = table.filter(([event]) => event.type !== "deleted")
      const response = plugin.routes["GET /api/saacms/v1/:collection/:id/subscribe"]!({
        req: { param: (name) => (name === "collection" ? "p" : "x") }
      })
      assert.deepStrictEqual(Object.fromEntries(response.headers), {
        "cache-control": "no-cache, no-transform",
        connection: "keep-alive",
        "content-type": "text/event-stream"
      })
      for (const [key, value] of response.headers) assert.strictEqual(value, Frame.headers[Object.keys(Frame.headers).find((k) => k.toLowerCase() === key)!])
      for (const [event] of withEtag) await plugin.services.realtime.publish({ ...event, slug: "p", id: "x" })
      const reader = response.body!.getReader()
      let received = ""
      const expected = ":keepalive\n\n" + withEtag.map(([event]) => encode({ ...event, slug: "p", id: "x" }, (event as { etag: string }).etag)).join("")
      while (received.length < expected.length) {
        const { done, value } = await reader.read()
        if (done) break
        received += decoder.decode(value)
      }
      await reader.cancel()
      assert.strictEqual(received, expected)
    } finally {
      plugin.services.realtime.stop()
    }
  })
})
