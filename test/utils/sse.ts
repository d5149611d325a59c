/**
 * SSE helpers for the end-to-end tests: parse bytes with `eventsource-parser`
 * (never a hand-written parser) and read a `fetch` response body until a
 * condition holds, within a bounded time.
 */
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { createParser } from "eventsource-parser"

/** One parsed SSE event (`event` / `id` are `undefined` when the frame has no such field). */
export interface SseEvent {
  readonly event: string | undefined
  readonly id: string | undefined
  readonly data: string
}

/** Everything a stream has carried so far: raw bytes, their text, and the parse. */
export interface Received {
  readonly bytes: Uint8Array
  readonly text: string
  readonly events: ReadonlyArray<SseEvent>
  /** Comment lines without the leading `:` (`"keepalive"` for `:keepalive`). */
  readonly comments: ReadonlyArray<string>
  /** `true` once the server ended the body. */
  readonly done: boolean
}

const decoder = new TextDecoder()
const encoder = new TextEncoder()

/** SSE input: a whole text, bytes, or byte chunks in order. */
export type Input = string | Uint8Array | Iterable<Uint8Array>

/** One parsed item, in stream order: an event, or a comment (`:keepalive` → `"keepalive"`). */
export type Item = { readonly _tag: "event"; readonly message: SseEvent } | { readonly _tag: "comment"; readonly text: string }

/** Decode SSE input to text. */
export const text = (input: Input): string => {
  if (typeof input === "string") return input
  if (input instanceof Uint8Array) return decoder.decode(input)
  let out = ""
  for (const chunk of input) out += decoder.decode(chunk, { stream: true })
  return out
}

/** Parse SSE input into its events and comments, in order. */
export const items = (input: Input): Array<Item> => {
  const out: Array<Item> = []
  const parser = createParser({
    onEvent: (message) => out.push({ _tag: "event", message: { event: message.event, id: message.id, data: message.data } }),
    onComment: (comment) => out.push({ _tag: "comment", text: comment })
  })
  parser.feed(text(input))
  return out
}

/** Parse SSE input into events and comments. */
export const parseAll = (input: Input): {
  readonly events: Array<SseEvent>
  readonly comments: Array<string>
} => {
  const parsed = items(input)
  return {
    events: parsed.flatMap((item) => item._tag === "event" ? [item.message] : []),
    comments: parsed.flatMap((item) => item._tag === "comment" ? [item.text] : [])
  }
}

/** Parse SSE input into its events. */
export const parse = (input: Input): Array<SseEvent> => parseAll(input).events

/** UTF-8 bytes of `text`, for byte-for-byte comparisons. */
export const bytes = (text: string): Uint8Array => encoder.encode(text)

/** The body could not be read, or the condition did not hold in time. */
export class ReadError extends Data.TaggedError("ReadError")<{
  readonly reason: "timeout" | "ended" | "failed"
  readonly received: string
  readonly cause?: unknown
}> {
  override get message(): string {
    const why = this.reason === "timeout"
      ? "condition not met in time"
      : this.reason === "ended"
      ? "body ended before the condition held"
      : `body failed: ${String(this.cause)}`
    return `${why}; received ${JSON.stringify(this.received)}`
  }
}

/** An open response body being read incrementally. */
export interface Reader {
  /** Everything received so far. */
  readonly received: Effect.Effect<Received>
  /**
   * Read until `until(received)` holds (checked on what is already there
   * first). Fails with `ReadError` when the body ends or fails first, or after
   * `timeout` (a read cut short by the timeout loses its chunk: do not reuse
   * the reader after a failure).
   */
  /** Cancel the body now (the client leaves); the scope would do it at its end. */
  readonly cancel: Effect.Effect<void>
  readonly readUntil: (
    until: (received: Received) => boolean,
    timeout?: Duration.DurationInput
  ) => Effect.Effect<Received, ReadError>
}

const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(a.byteLength + b.byteLength)
  out.set(a, 0)
  out.set(b, a.byteLength)
  return out
}

/**
 * Read `response`'s body incrementally. Closing the scope cancels the body
 * (which closes the client's side of the connection).
 */
export const reader = (response: Response): Effect.Effect<Reader, never, Scope.Scope> =>
  Effect.gen(function*() {
    const body = response.body
    if (body === null) return yield* Effect.die(new Error("response has no body"))
    const source = yield* Effect.acquireRelease(
      Effect.sync(() => body.getReader()),
      (source) => Effect.promise(() => source.cancel().catch(() => undefined))
    )
    let buffer: Uint8Array = new Uint8Array(0)
    let done = false
    const snapshot = (): Received => {
      const { comments, events } = parseAll(buffer)
      return { bytes: buffer, text: decoder.decode(buffer), events, comments, done }
    }
    const readChunk = Effect.tryPromise({
      try: () => source.read(),
      catch: (cause) => new ReadError({ reason: "failed", received: decoder.decode(buffer), cause })
    }).pipe(Effect.map((chunk) => {
      if (chunk.done) done = true
      else buffer = concat(buffer, chunk.value)
    }))
    const readUntil: Reader["readUntil"] = (until, timeout = "5 seconds") =>
      Effect.gen(function*() {
        while (true) {
          const received = snapshot()
          if (until(received)) return received
          if (done) return yield* new ReadError({ reason: "ended", received: received.text })
          yield* readChunk
        }
      }).pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new ReadError({ reason: "timeout", received: decoder.decode(buffer) })
        })
      )
    const cancel = Effect.promise(() => source.cancel().catch(() => undefined))
    return { received: Effect.sync(snapshot), readUntil, cancel }
  })

/** A `readUntil` condition: the `:keepalive` and at least `n` events received. */
export const hasEvents = (n: number) => (received: Received): boolean =>
  received.comments.length > 0 && received.events.length >= n

/**
 * `text` without the `retry:` block every stream sends after its opening
 * `:keepalive` (its value is jittered). Throws unless the block is there, once,
 * right after the keepalive, with a value within `[min, max]` (the defaults:
 * 3 000 ms plus up to 2 000 ms of jitter).
 */
export const stripRetry = (text: string, range: { readonly min: number; readonly max: number } = { min: 3000, max: 5000 }): string => {
  const match = /^:keepalive\n\nretry: (\d+)\n\n/.exec(text)
  if (match === null) throw new Error(`expected :keepalive then retry: at the start of ${JSON.stringify(text.slice(0, 80))}`)
  const retry = Number(match[1])
  if (retry < range.min || retry > range.max) throw new Error(`retry: ${retry} outside [${range.min}, ${range.max}]`)
  const rest = text.slice(match[0].length)
  if (/^retry:/m.test(rest)) throw new Error("more than one retry: field")
  return ":keepalive\n\n" + rest
}

/**
 * Read a response body as text until `done(text)` holds, then cancel it; or
 * until the body ends (`ended`). No timeout: run it in a fiber, or where the
 * body is known to end.
 */
export const readText = (response: Response, done: (text: string) => boolean) =>
  Effect.promise(async () => {
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let text = ""
    while (!done(text)) {
      const chunk = await reader.read()
      if (chunk.done) return { text, ended: true }
      text += decoder.decode(chunk.value)
    }
    await reader.cancel()
    return { text, ended: false }
  })
