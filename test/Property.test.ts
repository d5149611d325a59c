/**
 * Property tests (fast-check): whatever a host publishes and whatever a client
 * sends as its last event id, the bytes we write parse, with an independent
 * SSE parser (eventsource-parser, every callback observed), to exactly the
 * events the README promises: one event per frame with the documented `event`,
 * `id` and `data`, and no comment, `retry:` or field beyond the documented ones.
 *
 * fast-check runs each property through the test's own runtime (TestClock:
 * no heartbeat fires, generated ids are `0-<n>`).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Stream from "effect/Stream"
import { createParser } from "eventsource-parser"
import * as fc from "fast-check"
import * as Event from "../src/Event.js"
import * as Frame from "../src/Frame.js"
import * as Hub from "../src/Hub.js"
import * as Realtime from "../src/Realtime.js"
import * as ReplayBuffer from "../src/ReplayBuffer.js"
import { key, memory } from "./utils/layers.js"

// ---------------------------------------------------------------------------
// The wire, as an independent parser sees it
// ---------------------------------------------------------------------------

/** Everything eventsource-parser reports, in order: events, comments, `retry:` and parse errors. */
type WireItem =
  | { readonly _tag: "event"; readonly event: string | undefined; readonly id: string | undefined; readonly data: string }
  | { readonly _tag: "comment"; readonly text: string }
  | { readonly _tag: "retry"; readonly ms: number }
  | { readonly _tag: "error"; readonly type: string; readonly line: string | undefined }

const concat = (chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.byteLength, 0))
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.byteLength
  }
  return out
}

/**
 * Parse bytes as an `EventSource` would: strict UTF-8 (we only ever write
 * valid UTF-8), then eventsource-parser with every callback recorded.
 */
const wire = (bytes: Uint8Array | ReadonlyArray<Uint8Array>): { readonly items: Array<WireItem>; readonly text: string } => {
  const all = bytes instanceof Uint8Array ? bytes : concat(bytes)
  const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(all)
  const items: Array<WireItem> = []
  const parser = createParser({
    onEvent: (message) => items.push({ _tag: "event", event: message.event, id: message.id, data: message.data }),
    onComment: (comment) => items.push({ _tag: "comment", text: comment }),
    onRetry: (ms) => items.push({ _tag: "retry", ms }),
    onError: (error) => items.push({ _tag: "error", type: error.type, line: error.line })
  })
  parser.feed(text)
  return { items, text }
}

const eventItem = (event: string, id: string, data: string): WireItem => ({ _tag: "event", event, id, data })
const resyncData = "{\"reason\":\"buffer-miss\"}"

/**
 * What follows a stream's opening: `:keepalive`, then one `retry: <ms>` (README,
 * Wire format; none when `retryMs` is 0). Nothing else may be there, and no
 * `retry:`, comment or parse error may come later.
 */
const afterOpening = (items: ReadonlyArray<WireItem>, label: string): ReadonlyArray<WireItem> => {
  assert.deepStrictEqual(items[0], { _tag: "comment", text: "keepalive" }, `${label}: the first item`)
  const second = items[1]
  const rest = second?._tag === "retry" ? items.slice(2) : items.slice(1)
  if (second?._tag === "retry") {
    assert.isTrue(Number.isSafeInteger(second.ms) && second.ms >= 0, `${label}: retry ${second.ms}`)
  }
  for (const item of rest) {
    assert.strictEqual(item._tag, "event", `${label}: only events after the opening, got ${JSON.stringify(item)}`)
  }
  return rest
}

// ---------------------------------------------------------------------------
// Hostile inputs
// ---------------------------------------------------------------------------

/** Pieces of SSE syntax, line ends, NUL, BOM and other characters that break naive writers or parsers. */
const fragments = [
  "\r", "\n", "\r\n", "\n\n", "\r\r", "\n\r", "\0", ":", " ", "  ", "\t", "event:", "event: x\n", "id:", "id: 1\r\n",
  "data:", "data: {}\n\n", "retry:", "retry: 0\n", ":keepalive\n\n", "\uFEFF", "\u2028", "\u2029", "\u0085", "\v",
  "\f", "\\", "\"", "'", "%0A", "%0D", "%00", "é", "日本", "😀", "\u{10FFFF}", "\u200B", "\x7F", "\x1B[31m"
]
const hostileUnit = fc.oneof(
  fc.constantFrom(...fragments),
  fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 1 })
)
/** U+D800–U+DFFF on their own: not representable in UTF-8. */
const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code))

/**
 * Hostile text, from empty to a few thousand code units, around the 256 limit
 * on purpose. No lone surrogates: they are in records (JSON escapes them) and
 * in the known-issue tests below.
 */
const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: hostileUnit, maxLength: 24 }) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 40 }) },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.constantFrom("x", "é", "😀", "\n", "a\r", "id: x\n", " "), fc.integer({ min: 120, max: 300 }))
      // Whole units only: slicing "😀…" at a code unit would leave a lone surrogate.
      .map(([unit, n]) => unit.repeat(Math.ceil(n / unit.length)))
  },
  { weight: 1, arbitrary: fc.integer({ min: 250, max: 262 }).map((n) => "y".repeat(n)) },
  { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 5_000 }).map((n) => "z\n".repeat(n)) }
)

const validSlug = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/)
const validRecordId = fc.stringMatching(/^[A-Za-z0-9._~-]{1,128}$/)
const slugOrNot: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: validSlug },
  { weight: 2, arbitrary: hostileString },
  { weight: 1, arbitrary: fc.constantFrom<unknown>("po:sts", "-posts", "p".repeat(65), "", "posts\n", "pösts", 1, null) }
)
const recordIdOrNot: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: validRecordId },
  { weight: 2, arbitrary: hostileString },
  {
    weight: 1,
    arbitrary: fc.constantFrom<unknown>("a:b", "..", ".", "~", "i".repeat(128), "i".repeat(129), "", "1\0", "%2F", "a/b", 7)
  }
)
const etagOrNot: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: hostileString },
  { weight: 2, arbitrary: fc.stringMatching(/^(W\/)?"[A-Za-z0-9_-]{1,22}"$/) },
  { weight: 2, arbitrary: fc.constantFrom<unknown>("", null, undefined, 42, "x".repeat(256), "x".repeat(257), " ", "\"\"") }
)
const anythingHostile = fc.anything({
  maxDepth: 3,
  stringUnit: "binary",
  withBigInt: true,
  withBoxedValues: true,
  withDate: true,
  withMap: true,
  withSet: true,
  withNullPrototype: true,
  withObjectString: true,
  withSparseArray: true,
  withTypedArray: true
})

/** Values JSON cannot write, or writes in surprising ways (built once: the deep one is costly). */
const specialRecords: ReadonlyArray<unknown> = (() => {
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  // Deep enough to overflow JSON.stringify on Node (V8), not on Bun (JSC). 50 000
  // levels would overflow JSC too, after about 1.4 s of CPU per attempt.
  let deep: Array<unknown> = [1]
  for (let i = 0; i < 10_000; i++) deep = [deep]
  Object.defineProperty(deep, fc.toStringMethod, { value: () => "<10 000-deep array>" })
  return [
    undefined, null, NaN, -0, Infinity, 10n, Symbol("s"), () => 1, cyclic, deep,
    { toJSON: () => undefined }, { toJSON: () => "a\r\nevent: evil\n\ndata: x" },
    { toJSON: () => { throw new Error("toJSON") } },
    { get boom() { throw new Error("getter") } },
    Object.defineProperty({}, "__proto__", { value: { polluted: true }, enumerable: true }),
    { "a\nb": "c\r\nd", "\0": "\u2028", "id: x": "event: y" },
    new Date(Number.NaN), new Map([[1, 2]]), Object.assign(Object.create(null) as object, { x: 1 }),
    "\uD800", ["\uDFFF", "a\uD800b"], { [Symbol("k")]: 1, k: undefined, f: () => 1 }
  ]
})()

const recordOrNot: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 2, arbitrary: fc.dictionary(hostileString, fc.oneof(hostileString, fc.jsonValue({ maxDepth: 1 })), { maxKeys: 4 }) },
  { weight: 2, arbitrary: hostileString },
  { weight: 1, arbitrary: fc.string({ unit: fc.oneof(hostileUnit, loneSurrogate), maxLength: 20 }) },
  { weight: 2, arbitrary: anythingHostile },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: specialRecords.length - 1 }).map((i) => specialRecords[i]) }
)
const typeOrNot: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom("snapshot", "changed", "deleted") },
  { weight: 1, arbitrary: fc.constantFrom<unknown>("moved", "", "Changed", "saacms-resync", "changed\n", " changed", undefined, 1) }
)

/** A publish input: the right shape with hostile fields (any key may be missing). */
const eventLike = (slug = slugOrNot, id = recordIdOrNot) =>
  fc.record({ type: typeOrNot, slug, id, record: recordOrNot, etag: etagOrNot }, { requiredKeys: ["type", "slug", "id"] })

// ---------------------------------------------------------------------------
// The contract, written independently of src/
// ---------------------------------------------------------------------------

const slugPattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/
const recordIdPattern = /^[A-Za-z0-9._~-]{1,128}$/
/** What no event id may hold: CR, LF, NUL, or a lone surrogate (UTF-8 cannot carry it). */
const unsafe = /[\r\n\0]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
const isRecordId = (id: string) => recordIdPattern.test(id) && id !== "." && id !== ".."

/** Objects and arrays nested more than 100 deep are refused (README: Errors and limits). */
const depthOf = (value: unknown): number => {
  let deepest = 0
  const stack: Array<[unknown, number]> = [[value, 0]]
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!
    if (typeof current !== "object" || current === null) continue
    if (depth + 1 > deepest) deepest = depth + 1
    if (deepest > 101) return deepest
    for (const child of Object.values(current)) stack.push([child, depth + 1])
  }
  return deepest
}

const jsonOf = (value: unknown): string | undefined => {
  try {
    return depthOf(value) > 100 ? undefined : JSON.stringify(value)
  } catch {
    return undefined
  }
}

type Expected =
  | { readonly ok: true; readonly type: string; readonly key: string; readonly data: string; readonly etag: string | undefined }
  | { readonly ok: false; readonly tag: "InvalidEvent" | "InvalidResourceKey" }

/** What the README's "Errors and limits" says of one input (frame size aside). */
const expected = (input: unknown): Expected => {
  const invalidEvent = { ok: false, tag: "InvalidEvent" } as const
  if (typeof input !== "object" || input === null) return invalidEvent
  const event = input as Record<string, unknown>
  const { id, slug, type } = event
  if (type !== "snapshot" && type !== "changed" && type !== "deleted") return invalidEvent
  if (typeof slug !== "string" || typeof id !== "string") return invalidEvent
  const hasEtag = Object.prototype.hasOwnProperty.call(event, "etag") && event.etag !== undefined && event.etag !== null
  if (type !== "deleted" && hasEtag) {
    const etag = event.etag
    if (typeof etag !== "string" || etag.length > 256 || unsafe.test(etag)) return invalidEvent
  }
  if (!slugPattern.test(slug) || !isRecordId(id)) return { ok: false, tag: "InvalidResourceKey" }
  const data = jsonOf(type === "deleted" ? { id } : event.record)
  if (data === undefined) return invalidEvent
  const etag = type !== "deleted" && typeof event.etag === "string" && event.etag !== "" ? event.etag : undefined
  return { ok: true, type, key: `${slug}:${id}`, data, etag }
}

const frameLength = (type: string, id: string, data: string) =>
  new TextEncoder().encode(`event: ${type}\nid: ${id}\ndata: ${data}\n\n`).byteLength

/** Run fast-check on the test's runtime. */
const check = <Ts extends [unknown, ...Array<unknown>]>(
  arbitraries: { [K in keyof Ts]: fc.Arbitrary<Ts[K]> },
  property: (...args: Ts) => Effect.Effect<void, unknown>,
  numRuns: number
) =>
  Effect.gen(function*() {
    const run = Runtime.runPromise(yield* Effect.runtime<never>())
    yield* Effect.promise(() =>
      fc.assert(fc.asyncProperty<Ts>(...arbitraries, (...args: Ts) => run(property(...args))), { numRuns })
    )
  })

// ---------------------------------------------------------------------------
// Reading subscribers
// ---------------------------------------------------------------------------

class StreamEnded extends Error {}

/** The frames one subscriber received so far, and how to get more. */
interface Watcher {
  readonly label: string
  readonly chunks: Array<Uint8Array>
  readonly more: Effect.Effect<void, StreamEnded>
}

/** `Realtime.subscribe` (the Node server's path), pulled by hand; registered once this returns. */
const streamWatcher = (realtime: Realtime.Realtime["Type"], k: Event.ResourceKey, lastEventId?: string) =>
  Effect.gen(function*() {
    const pull = yield* Stream.toPull(realtime.subscribe(k, lastEventId))
    const chunks: Array<Uint8Array> = []
    const more = pull.pipe(
      Effect.map((chunk) => {
        chunks.push(...Chunk.toReadonlyArray(chunk))
      }),
      Effect.mapError(() => new StreamEnded(`${k}: the stream ended`))
    )
    // The first pull registers the subscriber and takes its opening.
    yield* Effect.orDie(more)
    return { label: `stream ${k}`, chunks, more } satisfies Watcher
  })

/** `Realtime.open` + its web stream (Bun's and the plugin's path). */
const webWatcher = (realtime: Realtime.Realtime["Type"], k: Event.ResourceKey, lastEventId?: string) =>
  Effect.gen(function*() {
    const subscriber = yield* realtime.open(k, lastEventId)
    const reader = yield* Effect.acquireRelease(
      Effect.sync(() => subscriber.toReadableStream().getReader()),
      (reader) => Effect.promise(() => reader.cancel().catch(() => undefined))
    )
    const chunks: Array<Uint8Array> = []
    const more = Effect.flatMap(Effect.promise(() => reader.read()), (result) => {
      if (result.done) return Effect.fail(new StreamEnded(`${k}: the web stream ended`))
      chunks.push(result.value)
      return Effect.void
    })
    return { label: `web ${k}`, chunks, more } satisfies Watcher
  })

const sentinelData = "{\"sentinel\":true}"

/**
 * Read until the sentinel event (`publishSentinel`) has arrived; then what
 * arrived, parsed. Everything published before it is then there too: the core
 * hands frames over synchronously, in sequence order.
 */
const readUntilSentinel = (watcher: Watcher, sentinel: Realtime.Published) =>
  Effect.gen(function*() {
    while (true) {
      const parsed = wire(watcher.chunks)
      const arrived = parsed.items.some((item) =>
        item._tag === "event" && item.id === sentinel.id && item.data === sentinelData
      )
      if (arrived) return parsed
      yield* watcher.more
    }
  })

/** A closing event on `k` with a generated id: when it has arrived, everything before it has. */
const publishSentinel = (realtime: Realtime.Realtime["Type"], k: Event.ResourceKey) => {
  const [slug, id] = k.split(":") as [string, string]
  return Effect.orDie(realtime.publish({ type: "changed", slug, id, record: JSON.parse(sentinelData) as unknown }))
}

// ---------------------------------------------------------------------------

describe("Property: Event.decode + Frame.encode", () => {
  it.effect("an event is rejected with the documented typed error, or its frame parses to exactly that one event", () =>
    Effect.gen(function*() {
      const runSync = Runtime.runSync(yield* Effect.runtime<never>())
      const numRuns = 500
      let valid = 0
      fc.assert(
        fc.property(eventLike(), fc.nat(), (input, n) => {
          const want = expected(input)
          const decoded = runSync(Effect.either(Event.decode(input)))
          // Frame.encode is given the id Realtime.publish would choose.
          const id = want.ok && want.etag !== undefined ? want.etag : `1795736404914-${n}`
          const encoded = Either.flatMap(decoded, ({ event }) => Frame.encode(event, id))
          if (!want.ok) {
            assert.isTrue(Either.isLeft(encoded), `accepted ${JSON.stringify(jsonOf(input))}`)
            if (Either.isLeft(encoded)) assert.strictEqual(encoded.left._tag, want.tag)
            return
          }
          valid++
          if (Either.isLeft(encoded)) {
            return assert.fail(`rejected (${encoded.left._tag}: ${JSON.stringify(encoded.left)}) a valid event`)
          }
          assert.strictEqual(Either.getOrThrow(decoded).key, want.key)
          const { items, text } = wire(encoded.right)
          assert.deepStrictEqual(items, [eventItem(want.type, id, want.data)])
          // Byte for byte the reference's shape: three fields, one line each.
          assert.strictEqual(text, `event: ${want.type}\nid: ${id}\ndata: ${want.data}\n\n`)
          const data = (items[0] as { readonly data: string }).data
          const record = (input as { readonly record?: unknown; readonly id: unknown }).record
          assert.deepStrictEqual(
            JSON.parse(data),
            want.type === "deleted" ? { id: (input as { readonly id: unknown }).id } : JSON.parse(JSON.stringify(record))
          )
        }),
        { numRuns }
      )
      // The frame checks ran, not only the rejections (about 3 in 10 inputs are valid).
      assert.isAtLeast(valid, numRuns / 10, `only ${valid} of ${numRuns} inputs were valid events`)
    }))
})

describe("Property: Realtime.publish against a hostile publisher", () => {
  const maxFrameBytes = 2048
  const watched = [key("posts", "1"), key("posts", "x.y~z"), key("p-1", "1"), key("p-1", "x.y~z")]
  const batchSlug = fc.oneof({ weight: 4, arbitrary: fc.constantFrom<unknown>("posts", "p-1") }, { weight: 1, arbitrary: slugOrNot })
  const batchId = fc.oneof({ weight: 4, arbitrary: fc.constantFrom<unknown>("1", "x.y~z") }, { weight: 1, arbitrary: recordIdOrNot })
  const bigRecord = fc.integer({ min: 1_900, max: 2_100 }).map((n) => ({ big: "b".repeat(n) }))
  const input = fc.oneof(
    { weight: 6, arbitrary: eventLike(batchSlug, batchId) },
    { weight: 1, arbitrary: fc.record({ type: fc.constant("changed"), slug: fc.constant("posts"), id: fc.constant("1"), record: bigRecord }) },
    { weight: 1, arbitrary: anythingHostile }
  )

  const runBatch = (inputs: ReadonlyArray<unknown>, concurrent: boolean) =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const buffer = yield* ReplayBuffer.ReplayBuffer
      const watchers = yield* Effect.forEach(watched, (k) =>
        Effect.all([streamWatcher(realtime, k), webWatcher(realtime, k)]).pipe(Effect.map((pair) => ({ key: k, pair }))))

      const exits = yield* Effect.forEach(inputs, (event) => Effect.exit(realtime.publish(event as never)), {
        concurrency: concurrent ? "unbounded" : 1
      })
      const accepted: Array<{ readonly published: Realtime.Published; readonly want: Extract<Expected, { ok: true }> }> = []
      exits.forEach((exit, i) => {
        const event = inputs[i]
        const want = expected(event)
        const label = `input ${i}: ${String(jsonOf(event)).slice(0, 200)}`
        if (Exit.isFailure(exit)) {
          const failure = Cause.failureOption(exit.cause)
          // A defect or an interruption is a broken contract, not a rejection.
          if (Option.isNone(failure)) return assert.fail(`${label}: publish did not fail with a typed error: ${Cause.pretty(exit.cause)}`)
          const error = failure.value
          assert.include(["InvalidEvent", "InvalidResourceKey", "FrameTooLarge"], error._tag, label)
          if (!want.ok) return assert.strictEqual(error._tag, want.tag, label)
          assert.strictEqual(error._tag, "FrameTooLarge", label)
          if (error._tag === "FrameTooLarge") {
            assert.strictEqual(error.maxBytes, maxFrameBytes, label)
            assert.isAbove(error.bytes, maxFrameBytes, label)
            // Refused while encoding: the size found so far, never above the frame's.
            if (want.etag !== undefined) assert.isAtMost(error.bytes, frameLength(want.type, want.etag, want.data), label)
          }
          return
        }
        assert.isTrue(want.ok, `${label}: accepted, expected ${JSON.stringify(want)}`)
        if (!want.ok) return
        const published = exit.value
        assert.strictEqual(published.key, want.key, label)
        if (want.etag !== undefined) assert.strictEqual(published.id, want.etag, label)
        else assert.match(published.id, /^\d+-\d+$/, label)
        assert.isAtMost(frameLength(want.type, published.id, want.data), maxFrameBytes, label)
        accepted.push({ published, want })
      })
      const generated = accepted.filter(({ want }) => want.etag === undefined).map(({ published }) => published.id)
      assert.strictEqual(new Set(generated).size, generated.length, "generated ids are unique")

      for (const { key: k, pair } of watchers) {
        const mine = accepted.filter(({ published }) => published.key === k).sort((a, b) => a.published.seq - b.published.seq)
        assert.deepStrictEqual(mine.map(({ published }) => published.seq), mine.map((_, i) => i + 1), `${k}: sequence numbers`)
        const sentinel = yield* publishSentinel(realtime, k)
        assert.strictEqual(sentinel.seq, mine.length + 1)
        assert.strictEqual(yield* buffer.size(k), mine.length + 1, `${k}: buffered`)
        const want = [
          ...mine.map(({ published, want }) => eventItem(want.type, published.id, want.data)),
          eventItem("changed", sentinel.id, sentinelData)
        ]
        for (const watcher of pair) {
          const { items, text } = yield* readUntilSentinel(watcher, sentinel)
          // `want.data` is JSON.stringify of the host's record, computed here: equal
          // data strings are the record as JSON sees it (a repeated etag is one id, two events).
          assert.deepStrictEqual(afterOpening(items, watcher.label), want, watcher.label)
          assert.isTrue(text.endsWith("\n\n"), `${watcher.label}: ends mid-frame`)
        }
      }
    })

  it.effect("publish fails with a typed error and changes nothing, or succeeds; subscribers get exactly the accepted events, in order, once", () =>
    check(
      [fc.array(input, { minLength: 1, maxLength: 10 }), fc.boolean()],
      (inputs, concurrent) =>
        runBatch(inputs, concurrent).pipe(Effect.scoped, Effect.provide(memory({ maxFrameBytes, retention: { maxEvents: 1000 } }))),
      200
    ))
})

describe("Property: Last-Event-ID", () => {
  const lastEventIdInput: fc.Arbitrary<string> = fc.oneof(
    { weight: 6, arbitrary: hostileString },
    { weight: 1, arbitrary: fc.string({ unit: fc.oneof(hostileUnit, loneSurrogate), maxLength: 20 }) },
    { weight: 1, arbitrary: fc.integer({ min: 126, max: 130 }).map((n) => "😀".repeat(n)) }
  )

  it.effect("decodeLastEventId rejects exactly the ids over 256 characters or with CR, LF or NUL", () =>
    Effect.gen(function*() {
      const runSync = Runtime.runSync(yield* Effect.runtime<never>())
      fc.assert(
        fc.property(lastEventIdInput, (id) => {
          const result = runSync(Effect.either(Event.decodeLastEventId(id)))
          const acceptable = id.length <= 256 && !unsafe.test(id)
          if (acceptable) assert.deepStrictEqual(result, Either.right(id))
          else assert.isTrue(Either.isLeft(result) && result.left._tag === "InvalidLastEventId", JSON.stringify(id))
        }),
        { numRuns: 500 }
      )
    }))

  const pool = ["\"v1\"", "\"v2\"", "W/\"v3\"", " spaced ", "é😀", "x".repeat(256), "id: y", "data:{}", ":c"]
  const history = fc.array(fc.option(fc.constantFrom(...pool), { nil: undefined }), { maxLength: 12 })
  // What the client sends: an id of the history (by position), or anything.
  const pick: fc.Arbitrary<Choice> = fc.oneof(
    { weight: 2, arbitrary: fc.nat().map((index) => ({ _tag: "index", index }) as const) },
    { weight: 2, arbitrary: lastEventIdInput.map((id) => ({ _tag: "raw", id }) as const) },
    { weight: 1, arbitrary: fc.constantFrom(...pool).map((id) => ({ _tag: "raw", id }) as const) }
  )

  type Choice = { readonly _tag: "index"; readonly index: number } | { readonly _tag: "raw"; readonly id: string }

  const subscribeAfter = (
    etags: ReadonlyArray<string | undefined>,
    choice: Choice,
    maxEvents: number
  ) =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const hub = yield* Hub.Hub
      const k = key("posts", "1")
      const published: Array<{ readonly id: string; readonly n: number }> = []
      for (const [n, etag] of etags.entries()) {
        const p = yield* Effect.orDie(
          realtime.publish({ type: "changed", slug: "posts", id: "1", record: { n }, ...(etag === undefined ? {} : { etag }) })
        )
        published.push({ id: p.id, n })
      }
      const lastEventId = choice._tag === "index"
        ? published.length === 0 ? "" : published[choice.index % published.length]!.id
        : choice.id

      if (lastEventId.length > 256 || unsafe.test(lastEventId)) {
        // Refused before anything is registered, on both paths.
        const streamError = yield* Effect.flip(Stream.runDrain(realtime.subscribe(k, lastEventId)))
        const openError = yield* Effect.flip(realtime.open(k, lastEventId))
        assert.strictEqual(streamError._tag, "InvalidLastEventId")
        assert.strictEqual(openError._tag, "InvalidLastEventId")
        assert.strictEqual(yield* hub.totalSubscribers, 0)
        return "refused" as const
      }

      // The model: the buffer holds the last `maxEvents`; a known id resumes
      // after its most recent occurrence; anything else resyncs to the newest id.
      const buffered = published.slice(-maxEvents)
      const position = buffered.map((entry) => entry.id).lastIndexOf(lastEventId)
      const watchers = yield* Effect.all([streamWatcher(realtime, k, lastEventId), webWatcher(realtime, k, lastEventId)])
      const sentinel = yield* publishSentinel(realtime, k)
      const live = eventItem("changed", sentinel.id, sentinelData)
      for (const watcher of watchers) {
        const label = `${watcher.label} after ${JSON.stringify(lastEventId)} (history ${JSON.stringify(published.map((p) => p.id))}, maxEvents ${maxEvents})`
        const { items } = yield* readUntilSentinel(watcher, sentinel)
        const rest = afterOpening(items, label)
        if (position >= 0) {
          const replay = buffered.slice(position + 1).map(({ id, n }) => eventItem("changed", id, JSON.stringify({ n })))
          assert.deepStrictEqual(rest, [...replay, live], label)
        } else {
          assert.strictEqual(rest.length, 2, label)
          const [resync, last] = rest as [WireItem, WireItem]
          assert.deepStrictEqual(last, live, label)
          const newest = published.at(-1)?.id
          if (newest !== undefined) {
            assert.deepStrictEqual(resync, eventItem("saacms-resync", newest, resyncData), label)
          } else {
            // No history: the current time, ISO 8601.
            assert.isTrue(resync._tag === "event" && resync.event === "saacms-resync" && resync.data === resyncData, label)
            const id = resync._tag === "event" ? resync.id ?? "" : ""
            assert.strictEqual(new Date(id).toISOString(), id, label)
          }
        }
      }
      return position >= 0 ? "replayed" as const : "resynced" as const
    })

  it.effect("a subscriber opened with an accepted id gets exactly its replay or one saacms-resync naming the newest id", () => {
    const numRuns = 200
    const outcomes = { refused: 0, replayed: 0, resynced: 0 }
    return check(
      [history, pick, fc.integer({ min: 1, max: 6 })],
      (etags, choice, maxEvents) =>
        subscribeAfter(etags, choice, maxEvents).pipe(
          Effect.flatMap((outcome) => Effect.sync(() => void outcomes[outcome]++)),
          Effect.scoped,
          Effect.provide(memory({ retention: { maxEvents } }))
        ),
      numRuns
    ).pipe(Effect.tap(() =>
      Effect.sync(() => {
        // Most runs subscribe (about 8 in 10), and both answers are seen (replays about 1 in 4).
        const label = JSON.stringify(outcomes)
        assert.isAtLeast(outcomes.replayed + outcomes.resynced, numRuns / 2, label)
        assert.isAtLeast(outcomes.replayed, numRuns / 20, label)
        assert.isAtLeast(outcomes.resynced, numRuns / 20, label)
      })
    ))
  })
})

describe("Property: keepalive and resync frames", () => {
  it("keepalive is one comment; resync parses to one event whose id is the given id, for every accepted id", () => {
    assert.deepStrictEqual(wire(Frame.keepalive).items, [{ _tag: "comment", text: "keepalive" }])
    fc.assert(
      fc.property(hostileString.filter((id) => id.length <= 256 && !unsafe.test(id)), (id) => {
        const { items, text } = wire(Frame.resync(id))
        assert.deepStrictEqual(items, [eventItem("saacms-resync", id, resyncData)])
        assert.strictEqual(text, `event: saacms-resync\nid: ${id}\ndata: ${resyncData}\n\n`)
        // As they reach a client: the opening, the resync, a heartbeat.
        assert.deepStrictEqual(wire([Frame.keepalive, Frame.resync(id), Frame.keepalive]).items, [
          { _tag: "comment", text: "keepalive" },
          eventItem("saacms-resync", id, resyncData),
          { _tag: "comment", text: "keepalive" }
        ])
      }),
      { numRuns: 500 }
    )
  })
})

// Found by the properties above, fixed since; each stays as a regression test.
describe("Property: inputs that once broke something", () => {
  // Event.EventId checked length and CR/LF/NUL, but not that the string is
  // well-formed UTF-16. TextEncoder writes a lone surrogate as U+FFFD, so the
  // client's id was not the id the server stored: Last-Event-ID then missed (a
  // resync instead of a replay), and distinct etags collided on the wire.
  it.effect("an etag with a lone surrogate is refused (it cannot reach the client as itself)", () => {
    const numRuns = 20
    let lone = 0
    return check(
      // At most 127 + 1 + 128 code units: the surrogate is never cut off by the 256 limit.
      [fc.tuple(hostileString, loneSurrogate, hostileString).map(([a, s, b]) => `${a.slice(0, 127)}${s}${b.slice(0, 128)}`)],
      (etag) =>
        Effect.gen(function*() {
          const realtime = yield* Realtime.Realtime
          const result = yield* Effect.either(realtime.publish({ type: "changed", slug: "posts", id: "1", record: 1, etag }))
          if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(etag)) {
            lone++
            assert.isTrue(Either.isLeft(result) && result.left._tag === "InvalidEvent", `accepted ${JSON.stringify(etag)}`)
            return
          }
          // A neighbour paired the surrogate: an ordinary etag, refused only for CR, LF or NUL.
          if (unsafe.test(etag)) {
            assert.isTrue(Either.isLeft(result) && result.left._tag === "InvalidEvent", `accepted ${JSON.stringify(etag)}`)
            return
          }
          assert.isTrue(Either.isRight(result), `refused ${JSON.stringify(etag)}: ${JSON.stringify(result)}`)
          const watcher = yield* webWatcher(realtime, key("posts", "1"), "unknown")
          const sentinel = yield* publishSentinel(realtime, key("posts", "1"))
          const { items } = yield* readUntilSentinel(watcher, sentinel)
          // The resync names the newest id, which is the etag just published.
          assert.deepStrictEqual(afterOpening(items, "resync")[0], eventItem("saacms-resync", etag, resyncData))
        }).pipe(Effect.scoped, Effect.provide(memory())),
      numRuns
    ).pipe(Effect.tap(() =>
      // Pairing needs a neighbour that is itself half a pair: most runs have a lone surrogate.
      Effect.sync(() => assert.isAtLeast(lone, numRuns / 2, `only ${lone} of ${numRuns} etags had a lone surrogate`))
    ))
  })

  // Event.decode runs Schema on the host's object; a property read that threw
  // escaped as a defect, so publish died (and the plugin's publish rejected
  // with a FiberFailure) instead of failing with InvalidEvent.
  it.effect("an event whose property reads throw is rejected with InvalidEvent (it was a defect)", () =>
    Effect.gen(function*() {
      const throwing = Object.defineProperty({ type: "changed", slug: "posts", id: "1" }, "record", {
        enumerable: true,
        get: () => {
          throw new Error("getter")
        }
      })
      const revocable = Proxy.revocable({}, {})
      revocable.revoke()
      const trap = new Proxy({ type: "changed", slug: "posts", id: "1", record: 1 }, {
        getOwnPropertyDescriptor: () => {
          throw new Error("trap")
        }
      })
      const realtime = yield* Realtime.Realtime
      for (const input of [throwing, revocable.proxy, trap]) {
        const exit = yield* Effect.exit(realtime.publish(input as never))
        const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
        assert.isTrue(
          Option.isSome(failure) && failure.value._tag === "InvalidEvent",
          Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "published"
        )
      }
    }).pipe(Effect.provide(memory())))
})
