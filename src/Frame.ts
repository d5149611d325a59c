/**
 * The only code that writes SSE bytes. A frame is encoded once per publish and
 * the same `Uint8Array` is shared by every subscriber. Output is byte-identical
 * to the reference (`event`, `id`, `data`, blank line) for the same input.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import type * as Event from "./Event.js"
import * as RealtimeError from "./RealtimeError.js"

const encoder = new TextEncoder()

/**
 * The headers of every subscribe response (the reference's three, plus
 * `X-Accel-Buffering: no` so nginx-style proxies do not buffer the stream).
 *
 * @since 0.1.0
 * @category models
 */
export const headers: Readonly<Record<string, string>> = {
  "Content-Type": "text/event-stream",
  "Cache-Control": "no-cache, no-transform",
  Connection: "keep-alive",
  "X-Accel-Buffering": "no"
}

/**
 * The SSE comment sent first on every stream and then on every heartbeat.
 *
 * @since 0.1.0
 * @category models
 */
export const keepalive: Uint8Array = encoder.encode(":keepalive\n\n")

const unsafeField = /[\r\n\0]/

/**
 * `true` when `value` may stand after `event:` or `id:` (no CR, LF or NUL).
 *
 * @since 0.1.0
 * @category utils
 */
export const isSafeField = (value: string): boolean => !unsafeField.test(value)

/**
 * How deep a record may nest (objects and arrays). Deeper ones are refused
 * before `JSON.stringify` sees them: Bun takes over a second of CPU to
 * overflow its stack on 50 000 nested arrays, stalling every stream meanwhile.
 *
 * @since 0.1.0
 * @category models
 */
export const maxDepth = 100

const objectToString = Object.prototype.toString
// `JSON.rawJSON` values (Bun; Node 21+) are written as their raw text, not as objects.
const isRawJSON = (JSON as { readonly isRawJSON?: (value: unknown) => boolean }).isRawJSON

/** An object or array being walked, and the next member to visit. */
interface Level {
  readonly container: Readonly<Record<string, unknown>>
  /** `undefined` for an array: its members are `0 … length - 1`. */
  readonly keys: ReadonlyArray<string> | undefined
  readonly length: number
  readonly depth: number
  /** Whether the members add to the bound (not under a `toJSON` or a boxed primitive). */
  readonly counted: boolean
  index: number
  members: number
}

const tooDeep = -1

// An array's length as `JSON.stringify` reads it (a Proxy may answer anything).
const toLength = (length: unknown): number => Math.min(Math.max(Math.trunc(Number(length)) || 0, 0), Number.MAX_SAFE_INTEGER)

/**
 * A lower bound of the UTF-8 length of `JSON.stringify(value)`, in one
 * iterative walk (so that it cannot overflow), or `tooDeep` when objects and
 * arrays nest deeper than `maxDepth` (a cycle does). It stops as soon as the
 * bound passes `budget`, so refusing a huge record costs little.
 *
 * Never above the real length: a string adds its UTF-16 length + 2 (escaped
 * JSON text takes at least one UTF-8 byte per code unit), a finite number 1,
 * `null`, `true` and `false` their literal (`NaN` and `±Infinity` are `null`),
 * an array `[]`, its commas and at least 1 byte per element (`undefined`,
 * functions and symbols are `null` there), an object `{}` and, for each
 * member whose value is surely written, its key's length + 3 (`"":`) and a
 * comma. A value with a `toJSON` (a `Date`) or a BigInt may become anything
 * or be left out: 1 byte in an array, nothing in an object. Another object
 * that is not `[object Object]` (a boxed primitive, a `Map`) or is a raw JSON
 * value adds 1 byte. What is under those is walked for its depth only.
 */
const jsonBytesAtLeast = (value: unknown, budget: number): number => {
  const stack: Array<Level> = []
  let deep = false
  // The least `value` adds as an array element or object member (-1: it may be
  // left out of an object); objects and arrays are pushed to be walked.
  const enter = (value: unknown, depth: number, inArray: boolean, counted: boolean): number => {
    switch (typeof value) {
      case "string":
        return value.length + 2
      case "number":
        return Number.isFinite(value) ? 1 : 4
      case "boolean":
        return value ? 4 : 5
      case "object":
        if (value === null) return 4
        break
      case "bigint":
        return inArray ? 1 : -1
      default:
        return inArray ? 4 : -1
    }
    if (depth >= maxDepth) {
      deep = true
      return 0
    }
    const container = value as Readonly<Record<string, unknown>>
    const isArray = Array.isArray(container)
    let size: number
    let countMembers = counted
    if (typeof container.toJSON === "function") {
      size = inArray ? 1 : -1
      countMembers = false
    } else if (isArray) {
      const length = toLength(container.length)
      size = length === 0 ? 2 : 2 * length + 1
    } else if (objectToString.call(container) === "[object Object]" && isRawJSON?.call(JSON, container) !== true) {
      size = 2
    } else {
      size = 1
      countMembers = false
    }
    const keys = isArray ? undefined : Object.keys(container)
    const length = keys === undefined ? toLength(container.length) : keys.length
    stack.push({ container, keys, length, depth: depth + 1, counted: countMembers, index: 0, members: 0 })
    return size
  }
  let bytes = Math.max(0, enter(value, 0, false, true))
  while (stack.length > 0 && !deep && bytes <= budget) {
    const level = stack[stack.length - 1]!
    if (level.index >= level.length) {
      stack.pop()
      continue
    }
    const index = level.index++
    if (level.keys === undefined) {
      const size = enter(level.container[index], level.depth, true, level.counted)
      // The array's own size already counted 1 byte for this element.
      if (level.counted) bytes += size - 1
    } else {
      const key = level.keys[index]!
      const size = enter(level.container[key], level.depth, false, level.counted)
      if (level.counted && size >= 0) bytes += key.length + 3 + size + (level.members++ > 0 ? 1 : 0)
    }
  }
  return deep ? tooDeep : bytes
}

/** The UTF-8 length of `text` as `TextEncoder` writes it (a lone surrogate as U+FFFD). */
const utf8Length = (text: string): number => {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i)
    if (unit < 0x80) bytes += 1
    else if (unit < 0x800) bytes += 2
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4
      i++
    } else bytes += 3
  }
  return bytes
}

const notJson = () => new RealtimeError.InvalidEvent({ reason: "record is not serialisable as JSON" })

/**
 * Encode one record event with its event id. Fails when the id is not a safe
 * field or the record cannot be written as JSON (`undefined`, a function, a
 * BigInt, a cycle, nesting deeper than `maxDepth`, a getter that throws).
 * JSON text never holds a raw CR, LF or NUL, so `data` is one line.
 *
 * With `maxBytes`, a frame longer than that fails with `FrameTooLarge`, and
 * the limit is kept while encoding: a walk of the record refuses it as soon as
 * a lower bound of its JSON size is over the limit, before `JSON.stringify`
 * runs, and the JSON text is refused by its length before it is encoded. Such
 * an early refusal reports a lower bound as `bytes` (still over `maxBytes`);
 * otherwise `bytes` is the frame's exact length. A record that is both too
 * large and not serialisable may fail with either error.
 *
 * @since 0.1.0
 * @category constructors
 */
export const encode = (
  event: Event.RealtimeEvent,
  id: string,
  maxBytes?: number
): Either.Either<Uint8Array, RealtimeError.InvalidEvent | RealtimeError.FrameTooLarge> => {
  if (!isSafeField(id)) {
    return Either.left(new RealtimeError.InvalidEvent({ reason: "event id must not contain CR, LF or NUL" }))
  }
  const head = `event: ${event.type}\nid: ${id}\ndata: `
  // The frame's bytes besides the JSON text: the head and the blank line.
  const overhead = maxBytes === undefined ? 0 : utf8Length(head) + 2
  const limit = maxBytes === undefined ? Infinity : maxBytes - overhead
  const value = event.type === "deleted" ? { id: event.id } : event.record
  let data: string | undefined
  try {
    const atLeast = jsonBytesAtLeast(value, limit)
    if (atLeast === tooDeep) {
      return Either.left(new RealtimeError.InvalidEvent({ reason: `record nests deeper than ${maxDepth} levels` }))
    }
    if (maxBytes !== undefined && atLeast > limit) {
      return Either.left(new RealtimeError.FrameTooLarge({ bytes: overhead + atLeast, maxBytes }))
    }
    data = JSON.stringify(value)
  } catch {
    return Either.left(notJson())
  }
  if (data === undefined) return Either.left(notJson())
  // The JSON text is well-formed UTF-16 (JSON.stringify escapes lone
  // surrogates), so it takes at least one UTF-8 byte per code unit.
  if (maxBytes !== undefined && data.length > limit) {
    return Either.left(new RealtimeError.FrameTooLarge({ bytes: overhead + data.length, maxBytes }))
  }
  const frame = encoder.encode(`${head}${data}\n\n`)
  if (maxBytes !== undefined && frame.byteLength > maxBytes) {
    return Either.left(new RealtimeError.FrameTooLarge({ bytes: frame.byteLength, maxBytes }))
  }
  return Either.right(frame)
}

/**
 * The reconnection delay a client should use, in ms (`retry: <ms>`). A
 * non-negative integer, so the field cannot carry anything else.
 *
 * @since 0.1.0
 * @category constructors
 */
export const retry = (ms: number): Uint8Array =>
  encoder.encode(`retry: ${Number.isSafeInteger(ms) && ms >= 0 ? ms : 0}\n\n`)

/**
 * The frame that ends a subscription whose access ended: its grant expired
 * (`"expired"`) or the access check refused a record event (`"forbidden"`).
 * It has no `id:`, so the client keeps its last event id.
 *
 * @since 0.1.0
 * @category constructors
 */
export const revoked = (reason: "expired" | "forbidden"): Uint8Array =>
  encoder.encode(`event: saacms-revoked\ndata: {"reason":"${reason}"}\n\n`)

/**
 * The frame that tells a client its history is gone: refetch, then carry on
 * from `newestId`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resync = (newestId: string): Uint8Array =>
  encoder.encode(`event: saacms-resync\nid: ${isSafeField(newestId) ? newestId : ""}\ndata: {"reason":"buffer-miss"}\n\n`)

const decoder = new TextDecoder()

/**
 * Read back the record event a frame of `key` (`"<slug>:<id>"`) encodes, for
 * access re-checks of replayed history; `undefined` for anything that is not
 * a record event frame. The event's `etag` is the frame's id (an id this
 * library generated reads back as an etag too).
 *
 * @since 0.1.0
 * @category conversions
 */
export const decode = (key: string, frame: Uint8Array): Event.RealtimeEvent | undefined => {
  const text = decoder.decode(frame)
  const match = /^event: (snapshot|changed|deleted)\nid: ([^\n]*)\ndata: ([^\n]*)\n\n$/.exec(text)
  const at = key.indexOf(":")
  if (match === null || at === -1) return undefined
  const [, type, id, data] = match as unknown as [string, "snapshot" | "changed" | "deleted", string, string]
  const slug = key.slice(0, at)
  const recordId = key.slice(at + 1)
  if (type === "deleted") return { type, slug, id: recordId }
  return { type, slug, id: recordId, record: JSON.parse(data) as unknown, etag: id }
}

/**
 * Frames as one chunk (a subscriber's opening: `:keepalive`, `retry:`, a resync).
 *
 * @since 0.1.0
 * @category utils
 */
export const concat = (frames: ReadonlyArray<Uint8Array>): Uint8Array => {
  if (frames.length === 1) return frames[0]!
  let length = 0
  for (const frame of frames) length += frame.byteLength
  const out = new Uint8Array(length)
  let offset = 0
  for (const frame of frames) {
    out.set(frame, offset)
    offset += frame.byteLength
  }
  return out
}

// Multiplexed streams (`GET /api/saacms/v1/subscribe`). Their record frames
// name the record in `data` and carry the stream's cursor as `id:`, so they
// are built per stream from a shared body: what a record's frame says, less
// its id, which every stream follows with its own `id: <cursor>`.

const recordFrame = /^event: (snapshot|changed|deleted)\nid: ([^\n]*)\ndata: ([^\n]*)\n\n$/

/**
 * A frame of a multiplexed stream without its `id:` line and blank line (the
 * same text for every stream), and the check of the event id it replaces
 * (see `check`).
 *
 * @since 0.1.0
 * @category models
 */
export interface TopicBody {
  /** `event: …\ndata: …\n`, to be followed by `id: <cursor>\n\n`. */
  readonly text: string
  readonly check: number
}

/**
 * A 24-bit check of an event id (FNV-1a over its UTF-16 code units): a
 * multiplexed stream's cursor keeps it beside each topic's sequence number, so
 * that a history that started again (a restart, a flushed Redis) is not taken
 * for the one the client left.
 *
 * @since 0.1.0
 * @category utils
 */
export const check = (id: string): number => {
  let hash = 0x811c9dc5
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return (hash >>> 0) & 0xffffff
}

const json = JSON.stringify

/**
 * The entry a record event adds to its collection's history: the same event
 * and id, with `data` naming the topic and the record,
 * `{"topic","collection","id","etag","record"}` (`{"topic","collection","id"}`
 * for `deleted`; `topic` is `collection/*`). `frame` is the event's own frame
 * (`encode(event, eventId)`): the record's JSON is copied from it as bytes,
 * not decoded and encoded again.
 *
 * @since 0.1.0
 * @category constructors
 */
export const collectionEntry = (event: Event.RealtimeEvent, eventId: string, frame: Uint8Array): Uint8Array => {
  const head = `event: ${event.type}\nid: ${eventId}\ndata: `
  const topic = `${event.slug}/*`
  if (event.type === "deleted") return encoder.encode(`${head}${namedDeleted(topic, event.slug, event.id)}\n\n`)
  const before = encoder.encode(`${head}${namedBefore(topic, event.slug, event.id, eventId)}`)
  // The record's JSON: the frame between its head and the closing blank line.
  const record = frame.subarray(utf8Length(head), frame.byteLength - 2)
  const entry = new Uint8Array(before.byteLength + record.byteLength + namedAfter.byteLength)
  entry.set(before)
  entry.set(record, before.byteLength)
  entry.set(namedAfter, before.byteLength + record.byteLength)
  return entry
}

// `data` of a multiplexed frame: the topic it is for (a record's, or its
// collection's), the record, its etag and the record's body.
const namedDeleted = (topic: string, collection: string, id: string): string =>
  `{"topic":${json(topic)},"collection":${json(collection)},"id":${json(id)}}`
const namedBefore = (topic: string, collection: string, id: string, eventId: string): string =>
  `{"topic":${json(topic)},"collection":${json(collection)},"id":${json(id)},"etag":${json(eventId)},"record":`
const namedAfter = encoder.encode("}\n\n")
const named = (type: string, topic: string, collection: string, id: string, eventId: string, data: string): string =>
  type === "deleted" ? namedDeleted(topic, collection, id) : `${namedBefore(topic, collection, id, eventId)}${data}}`

// Bodies of recent frames, in two generations of `bodiesPerGeneration`: a
// burst's frames are built once for all the streams they reach, and an older
// frame's body is built again when a replay needs it, so that the histories
// do not keep a second copy of every frame.
const bodiesPerGeneration = 4096
let bodies = new WeakMap<Uint8Array, TopicBody>()
let olderBodies = new WeakMap<Uint8Array, TopicBody>()
let bodiesCount = 0

/**
 * The shared body of a history frame on a multiplexed stream: a record's
 * frame (`record` names it) gets `data` that names its topic (`collection/id`)
 * and the record, as a collection entry's does; a collection
 * entry already has it. Built once for the streams a recent frame reaches (the
 * last 4 096 to 8 192 frames' bodies are kept).
 * `undefined` for a frame that is not a record event.
 *
 * @since 0.1.0
 * @category constructors
 */
export const topicBody = (
  frame: Uint8Array,
  record: { readonly collection: string; readonly id: string } | undefined
): TopicBody | undefined => {
  const known = bodies.get(frame) ?? olderBodies.get(frame)
  if (known !== undefined) return known
  const match = recordFrame.exec(decoder.decode(frame))
  if (match === null) return undefined
  const [, type, eventId, data] = match as unknown as [string, string, string, string]
  const text = record === undefined
    ? data
    : named(type, `${record.collection}/${record.id}`, record.collection, record.id, eventId, data)
  const body: TopicBody = { text: `event: ${type}\ndata: ${text}\n`, check: check(eventId) }
  bodies.set(frame, body)
  if (++bodiesCount >= bodiesPerGeneration) {
    olderBodies = bodies
    bodies = new WeakMap()
    bodiesCount = 0
  }
  return body
}

/**
 * Text as the bytes of a stream (a multiplexed stream's frames, built per stream).
 *
 * @since 0.1.0
 * @category constructors
 */
export const text = (frames: string): Uint8Array => encoder.encode(frames)

/**
 * What a multiplexed stream says first (after `:keepalive` and `retry:`):
 * each topic's standing (`fresh`: no position, refetch; `resumed`: what it
 * missed follows; `resync`: its history is gone, a `saacms-resync` frame
 * follows; `denied`: a `saacms-denied` frame follows), with the cursor.
 *
 * @since 0.1.0
 * @category constructors
 */
export const welcome = (
  topics: ReadonlyArray<{ readonly topic: string; readonly status: "fresh" | "resumed" | "resync" | "denied" }>,
  cursor: string
): Uint8Array => encoder.encode(`event: saacms-welcome\ndata: ${json({ topics })}\nid: ${cursor}\n\n`)

/**
 * A topic's history is gone: refetch it, then carry on (with the cursor past it).
 *
 * @since 0.1.0
 * @category constructors
 */
export const topicResync = (topic: string, cursor: string): Uint8Array =>
  encoder.encode(`event: saacms-resync\ndata: ${json({ topic, reason: "buffer-miss" })}\nid: ${cursor}\n\n`)

/**
 * A topic's access ended (`expired`, `forbidden`): nothing more of it comes;
 * the stream's other topics go on.
 *
 * @since 0.1.0
 * @category constructors
 */
export const topicRevoked = (topic: string, reason: "expired" | "forbidden"): Uint8Array =>
  encoder.encode(`event: saacms-revoked\ndata: ${json({ topic, reason })}\n\n`)

/**
 * A topic `authorize` refused (401 or 403) on a stream whose other topics were allowed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const topicDenied = (topic: string, status: number, reason: string): Uint8Array =>
  encoder.encode(`event: saacms-denied\ndata: ${json({ topic, status, reason })}\n\n`)

/**
 * Read back the record event of a collection entry (see `collectionEntry`),
 * for access re-checks of replayed history; `undefined` for anything else.
 *
 * @since 0.1.0
 * @category conversions
 */
export const decodeCollectionEntry = (frame: Uint8Array): Event.RealtimeEvent | undefined => {
  const match = recordFrame.exec(decoder.decode(frame))
  if (match === null) return undefined
  const [, type, , data] = match as unknown as [string, "snapshot" | "changed" | "deleted", string, string]
  const named = JSON.parse(data) as { collection: string; id: string; etag?: string; record?: unknown }
  if (type === "deleted") return { type, slug: named.collection, id: named.id }
  return { type, slug: named.collection, id: named.id, record: named.record, etag: named.etag }
}
