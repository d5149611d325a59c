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

// Iterative, so that the check itself cannot overflow; a cycle counts as too deep.
const nestsDeeperThan = (value: unknown, max: number): boolean => {
  const stack: Array<readonly [unknown, number]> = [[value, 0]]
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!
    if (typeof current !== "object" || current === null) continue
    if (depth >= max) return true
    for (const child of Array.isArray(current) ? current : Object.values(current)) stack.push([child, depth + 1])
  }
  return false
}

/**
 * Encode one record event with its event id. Fails when the id is not a safe
 * field or the record cannot be written as JSON (`undefined`, a function, a
 * BigInt, a cycle, nesting deeper than `maxDepth`, a getter that throws).
 * JSON text never holds a raw CR, LF or NUL, so `data` is one line.
 *
 * @since 0.1.0
 * @category constructors
 */
export const encode = (
  event: Event.RealtimeEvent,
  id: string
): Either.Either<Uint8Array, RealtimeError.InvalidEvent> => {
  if (!isSafeField(id)) {
    return Either.left(new RealtimeError.InvalidEvent({ reason: "event id must not contain CR, LF or NUL" }))
  }
  let data: string | undefined
  try {
    if (event.type !== "deleted" && nestsDeeperThan(event.record, maxDepth)) {
      return Either.left(new RealtimeError.InvalidEvent({ reason: `record nests deeper than ${maxDepth} levels` }))
    }
    data = JSON.stringify(event.type === "deleted" ? { id: event.id } : event.record)
  } catch {
    return Either.left(new RealtimeError.InvalidEvent({ reason: "record is not serialisable as JSON" }))
  }
  if (data === undefined) {
    return Either.left(new RealtimeError.InvalidEvent({ reason: "record is not serialisable as JSON" }))
  }
  return Either.right(encoder.encode(`event: ${event.type}\nid: ${id}\ndata: ${data}\n\n`))
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
