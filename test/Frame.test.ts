import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as fc from "fast-check"
import { existsSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import type * as Event from "../src/Event.js"
import * as Frame from "../src/Frame.js"
import * as RealtimeError from "../src/RealtimeError.js"
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
    assert.isTrue(Either.isLeft(deep) && deep.left._tag === "InvalidEvent" && deep.left.reason === `record nests deeper than ${Frame.maxDepth} levels`)
    // 50 000 levels: Bun took over a second to fail inside JSON.stringify.
    assert.isTrue(Either.isLeft(encodeRecord(nest(50_000))))
  })

  // Compare with the published reference's own output through its route, not only
  // with the table above. Where it is: `SAACMS_REFERENCE` (its dist/index.js, as
  // bench/lib/processes.mjs reads it) first; then `../shared/seed` beside the
  // repository (a checkout at /work/main); then /work/shared/seed, because CI
  // (.ci/run) runs on a clone elsewhere (/tmp/ci-check), where `../shared/seed`
  // is not there. A missing reference fails this test: it must not pass unchecked.
  // A SAACMS_REFERENCE that is set is the only place looked at.
  const referenceCandidates = process.env.SAACMS_REFERENCE
    ? [path.resolve(process.env.SAACMS_REFERENCE)]
    : [fileURLToPath(new URL("../../shared/seed/dist/index.js", import.meta.url)), "/work/shared/seed/dist/index.js"]
  it("matches the published reference's route output byte for byte", async () => {
    const reference = referenceCandidates.find((candidate) => existsSync(candidate))
    if (reference === undefined) {
      return assert.fail(
        `the published reference (@saacms/plugin-realtime 0.1.0, dist/index.js) is not at ${referenceCandidates.join(" nor ")}${
          process.env.SAACMS_REFERENCE ? " (from SAACMS_REFERENCE)" : "; set SAACMS_REFERENCE to its dist/index.js"
        }`
      )
    }
    const loaded = await import(pathToFileURL(reference).href).catch((cause: unknown) =>
      assert.fail(`the published reference at ${reference} (SAACMS_REFERENCE to change) did not load: ${
        typeof cause === "object" && cause !== null && "message" in cause ? String(cause.message) : String(cause)
      }`)
    ) as { readonly realtime?: unknown }
    if (typeof loaded.realtime !== "function") {
      return assert.fail(`the module at ${reference} (SAACMS_REFERENCE to change) exports no realtime(): not the reference`)
    }
    const realtime = loaded.realtime as (o?: object) => {
      routes: Record<string, (c: { req: { param(n: string): string } }) => Response>
      services: { realtime: { publish(e: unknown): Promise<void>; stop(): void } }
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

describe("Frame.encode with maxBytes", () => {
  const changed = (record: unknown): Event.RealtimeEvent => ({ type: "changed", slug: "p", id: "x", record })
  /** The frame's length without a limit: what the limit is compared with. */
  const sizeOf = (event: Event.RealtimeEvent, id: string) => Either.getOrThrow(Frame.encode(event, id)).byteLength

  /** Run `f` counting the calls of `JSON.stringify` (restored after). */
  const countingStringify = <A>(f: () => A): { readonly result: A; readonly calls: number } => {
    const stringify = JSON.stringify
    let calls = 0
    JSON.stringify = ((...args: Parameters<typeof JSON.stringify>) => {
      calls++
      return stringify(...args)
    }) as typeof JSON.stringify
    try {
      const result = f()
      return { result, calls }
    } finally {
      JSON.stringify = stringify
    }
  }

  /** The frame at `maxBytes` = its size is the unlimited one; at any limit below, `FrameTooLarge` with `limit < bytes <= size`. */
  const assertLimit = (event: Event.RealtimeEvent, id: string, below: ReadonlyArray<number>) => {
    const unlimited = Either.getOrThrow(Frame.encode(event, id))
    const size = unlimited.byteLength
    assert.deepStrictEqual(Either.getOrThrow(Frame.encode(event, id, size)), unlimited)
    assert.deepStrictEqual(Either.getOrThrow(Frame.encode(event, id, size + 1)), unlimited)
    for (const limit of below) {
      const result = Frame.encode(event, id, limit)
      if (Either.isRight(result) || result.left._tag !== "FrameTooLarge") {
        return assert.fail(`${decoder.decode(unlimited).slice(0, 120)} (${size} bytes) at ${limit}: ${JSON.stringify(result)}`)
      }
      assert.strictEqual(result.left.maxBytes, limit)
      assert.isAbove(result.left.bytes, limit)
      assert.isAtMost(result.left.bytes, size)
    }
  }

  it("takes a frame of exactly maxBytes and refuses one byte more", () => {
    const events: ReadonlyArray<readonly [Event.RealtimeEvent, string]> = [
      ...table.map(([event]) => [event, event.type === "deleted" ? "E" : event.etag!] as const),
      [changed({ title: "Hello", tags: ["a", "b"], n: -1.5e-7, ok: false, none: null }), "1795736404914-1"],
      [changed({ "é": "日本語", emoji: "😀😀", escaped: "\n\t\"\\\u0001\u2028", lone: "\uD800" }), "W/\"é\""],
      [changed({ skipped: undefined, f: () => 1, nulls: [undefined, () => 1, NaN, Infinity], at: new Date(0) }), "e"],
      [changed({ gone: undefined, a: 1, f: () => 1, b: "x", s: Symbol("s"), c: [] }), "e"],
      [changed("x".repeat(5_000)), "e"]
    ]
    for (const [event, id] of events) {
      const size = sizeOf(event, id)
      assertLimit(event, id, [size - 1, Math.floor(size / 2), 0])
    }
  })

  it("writes a BigInt as JSON.stringify does when the host gives BigInt a toJSON (left out, or its text)", () => {
    const prototype = BigInt.prototype as { toJSON?: () => unknown }
    try {
      for (const toJSON of [() => undefined, () => 1, function(this: bigint) { return this.toString() }]) {
        prototype.toJSON = toJSON
        const event = changed({ a: 10n, b: [20n, 1], c: 1 })
        const size = sizeOf(event, "e")
        assertLimit(event, "e", [size - 1])
      }
    } finally {
      delete prototype.toJSON
    }
  })

  it("reports the exact length when the frame is refused after encoding, a lower bound when refused before", () => {
    // Two bytes per character in UTF-8, one per code unit in the bound: refused only by the encoded length.
    const accented = changed({ title: "é".repeat(100) })
    const size = sizeOf(accented, "e")
    const late = countingStringify(() => Frame.encode(accented, "e", size - 1))
    assert.strictEqual(late.calls, 1)
    assert.deepStrictEqual(late.result, Either.left(new RealtimeError.FrameTooLarge({ bytes: size, maxBytes: size - 1 })))
    // Its bound (100 code units) is over a 90-byte budget: refused before JSON.stringify.
    const head = "event: changed\nid: e\ndata: ".length + 2
    const early = countingStringify(() => Frame.encode(accented, "e", head + 90))
    assert.strictEqual(early.calls, 0)
    assert.isTrue(Either.isLeft(early.result) && early.result.left._tag === "FrameTooLarge")
    if (Either.isLeft(early.result) && early.result.left._tag === "FrameTooLarge") {
      assert.isAbove(early.result.left.bytes, head + 90)
      assert.isBelow(early.result.left.bytes, size)
    }
  })

  it("refuses JSON text by its length before encoding it", () => {
    // Each LF is one code unit in the record but two characters (`\\n`) in the JSON text.
    const event = changed("\n".repeat(1_000))
    const size = sizeOf(event, "e")
    const encode = TextEncoder.prototype.encode
    let encoded = 0
    TextEncoder.prototype.encode = function(this: TextEncoder, input?: string) {
      encoded++
      return encode.call(this, input)
    }
    try {
      for (const maxBytes of [size - 1, size - 500]) {
        const result = Frame.encode(event, "e", maxBytes)
        assert.strictEqual(encoded, 0)
        assert.deepStrictEqual(result, Either.left(new RealtimeError.FrameTooLarge({ bytes: size, maxBytes })))
      }
      Frame.encode(event, "e", size)
      assert.strictEqual(encoded, 1, "the spy sees the encoder")
    } finally {
      TextEncoder.prototype.encode = encode
    }
  })

  // Built once: 5 million numbers (about 10 MB of JSON) and 100 000 small records.
  const numbers: ReadonlyArray<number> = new Array<number>(5_000_000).fill(7)
  const records = Array.from({ length: 100_000 }, (_, i) => ({ id: i, title: `post ${i}`, published: true }))

  it("refuses a huge record with FrameTooLarge without ever calling JSON.stringify", () => {
    for (const record of [numbers, { items: numbers }, records, { page: { records } }]) {
      const started = performance.now()
      const { calls, result } = countingStringify(() => Frame.encode(changed(record), "e", 1024 * 1024))
      const elapsed = performance.now() - started
      assert.strictEqual(calls, 0)
      assert.isTrue(Either.isLeft(result) && result.left._tag === "FrameTooLarge")
      if (Either.isLeft(result) && result.left._tag === "FrameTooLarge") {
        assert.strictEqual(result.left.maxBytes, 1024 * 1024)
        assert.isAbove(result.left.bytes, 1024 * 1024)
      }
      assert.isBelow(elapsed, 500, "refused in well under the time JSON.stringify would take")
    }
  })

  it("keeps InvalidEvent for records nested too deep, cyclic, or with a getter that throws", () => {
    let deep: unknown = 1
    for (let i = 0; i < 50_000; i++) deep = [deep]
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    const throwing = { get boom(): never { throw new Error("getter") } }
    for (const record of [deep, cyclic, throwing, [throwing], undefined, () => 1, 10n]) {
      const result = Frame.encode(changed(record), "e", 1024 * 1024)
      assert.isTrue(Either.isLeft(result) && result.left._tag === "InvalidEvent")
    }
  })

  // Text with what JSON escapes (controls, quotes, backslashes, U+2028, lone
  // surrogates) or writes in 2 to 4 UTF-8 bytes (accents, CJK, emoji).
  const trickyUnit = fc.oneof(
    fc.constantFrom("\n", "\r", "\0", "\u0001", "\u001f", "\"", "\\", "\u2028", "é", "日", "😀", "\uD800", "\uDFFF", "\u{10FFFF}", "a"),
    fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
    fc.string({ unit: "grapheme", minLength: 1, maxLength: 1 })
  )
  const trickyString = fc.string({ unit: trickyUnit, maxLength: 30 })
  /** Values JSON.stringify writes in its own way: left out, `null`, `toJSON`, boxed, not plain. */
  class Post {
    readonly title = "t"
    constructor(readonly body: unknown) {}
  }
  const rawJSON = (JSON as { readonly rawJSON?: (text: string) => unknown }).rawJSON
  const special = fc.constantFrom<unknown>(
    undefined, () => 1, Symbol("s"), NaN, -0, Infinity, new Date(0), new Date(Number.NaN), { toJSON: () => undefined },
    { toJSON: () => 1 }, { toJSON: () => "x".repeat(50) }, new Number(1), new String("ab"), new Boolean(false),
    new Map([[1, 2]]), new Set([1]), new Uint8Array([1, 2, 3]), Object.create(null) as unknown, new Post(["x"]),
    Object.assign(Object.create({ inherited: 1 }) as object, { own: 2 }), Object.defineProperty({}, "hidden", { value: 1 }),
    { [Symbol("k")]: 1, k: undefined }, [, 1, , ],
    ...(rawJSON === undefined ? [] : [rawJSON("1"), rawJSON("\"long raw text\"")])
  )
  const value: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
    value: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      fc.jsonValue({ maxDepth: 2 }),
      fc.jsonValue({ maxDepth: 2, stringUnit: "binary" }),
      trickyString,
      special,
      fc.array(tie("value"), { maxLength: 6 }),
      fc.dictionary(trickyString, tie("value"), { maxKeys: 6 })
    )
  })).value

  it("property: the bound never passes the real size (a frame that fits is never refused, one that does not always is)", () => {
    const numRuns = 500
    let sized = 0
    fc.assert(
      fc.property(value, fc.constantFrom("e", "W/\"é😀\"", "1795736404914-1"), fc.nat(), (record, id, cut) => {
        const event = changed(record)
        const unlimited = Frame.encode(event, id)
        // Values JSON cannot write at all (a top-level `undefined`, a function, a
        // symbol) are not about size: InvalidEvent, under any limit they fit.
        if (Either.isLeft(unlimited)) {
          assert.strictEqual(unlimited.left._tag, "InvalidEvent", String(record))
          assert.strictEqual(JSON.stringify(record), undefined, `refused a record JSON writes: ${String(record)}`)
          const limited = Frame.encode(event, id, 1 << 20)
          assert.isTrue(Either.isLeft(limited) && limited.left._tag === "InvalidEvent", JSON.stringify(limited))
          return
        }
        sized++
        const size = sizeOf(event, id)
        assertLimit(event, id, [size - 1, cut % size])
      }),
      { numRuns }
    )
    // The size checks ran on most inputs (about 1 in 35 is a value JSON cannot write).
    assert.isAbove(sized, numRuns * 0.8, `only ${sized} of ${numRuns} runs checked a size`)
  })
})
