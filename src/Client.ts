/**
 * A typed client for browsers, Bun and Node (`@saacms/realtime/client`):
 * subscribe to many topics over one multiplexed stream (or to one record),
 * get typed events decoded with the server's own Schemas, and resume across
 * reconnects from the last cursor (or last event id), so each event reaches
 * the caller once. It reads the stream with `fetch`, so it can send an
 * `Authorization` header (`EventSource` cannot), waits the server's `retry:`
 * before reconnecting (backing off, with jitter, while it cannot connect),
 * and stops cleanly when cancelled.
 *
 * Two faces: `subscribe` / `subscribeRecord`, an Effect `Stream` (time from
 * `Clock`, so `TestClock` drives the reconnects), and `connect` /
 * `connectRecord`, callbacks and a `close()` for code that knows no Effect.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Event from "./Event.js"
import { type Message, Parser } from "./internal/sse.js"

/**
 * What the client needs of `fetch`.
 *
 * @since 0.1.0
 * @category models
 */
export type Fetch = (input: URL, init: RequestInit) => Promise<Response>

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Where the server is; in a browser, the page's origin by default. */
  readonly baseUrl?: string | URL | undefined
  /** Headers for every connection (an `Authorization`, say), or a function asked before each. */
  readonly headers?: HeadersInit | (() => HeadersInit | PromiseLike<HeadersInit>) | undefined
  /** The `fetch` to use (the global one by default). */
  readonly fetch?: Fetch | undefined
  /** Where to resume from: a cursor (or, for one record, an event id) this client handed out before. */
  readonly lastEventId?: string | undefined
  /** How long to wait before reconnecting until the server says (`retry:`), in ms. Default 3 000. */
  readonly retryMs?: number | undefined
  /** The longest wait between attempts while the server cannot be reached, in ms. Default 30 000. */
  readonly maxRetryMs?: number | undefined
}

/**
 * Where a topic stands when a stream opens (see the server's README):
 * `fresh` (fetch it), `resumed` (what it missed follows), `resync` (a
 * `Resync` follows), `denied`.
 *
 * @since 0.1.0
 * @category models
 */
export type TopicStatus = "fresh" | "resumed" | "resync" | "denied"

/**
 * What a subscription yields. `State` says how the connection is; `Record`
 * is a record event of `topic` (`collection/id` or `collection/*`), decoded
 * with `Event.RealtimeEvent`; `Resync` asks to refetch `topic`; `Welcome`
 * opens each multiplexed stream; `Revoked` and `Denied` end a topic's access.
 * `lastEventId` is where a new subscription would resume after this event.
 *
 * @since 0.1.0
 * @category models
 */
export type ClientEvent =
  | { readonly _tag: "State"; readonly state: "connecting" | "live" | "reconnecting" }
  | {
    readonly _tag: "Welcome"
    readonly topics: ReadonlyArray<{ readonly topic: string; readonly status: TopicStatus }>
    readonly lastEventId: string
  }
  | { readonly _tag: "Record"; readonly topic: string; readonly event: Event.RealtimeEvent; readonly lastEventId: string }
  | { readonly _tag: "Resync"; readonly topic: string; readonly lastEventId: string }
  | { readonly _tag: "Revoked"; readonly topic: string; readonly reason: string }
  | { readonly _tag: "Denied"; readonly topic: string; readonly status: number; readonly reason: string }

/**
 * The server refused the subscription (`status` and its JSON `error`, such
 * as 401 `unauthorized` or 400 `invalid_topic`), or answered with something
 * that is not this protocol (`error: "protocol"`). Not retried: connection
 * failures and 5xx answers are, with backoff.
 *
 * @since 0.1.0
 * @category errors
 */
export class ClientError extends Data.TaggedError("ClientError")<{
  readonly status: number | undefined
  readonly error: string
  readonly message: string
}> {}

const decodeEvent = Schema.decodeUnknownEither(Event.RealtimeEvent)

const protocol = (message: string) => new ClientError({ status: undefined, error: "protocol", message })

// One SSE message of the multiplexed route as a client event.
const fromMultiplexed = (message: Message): ClientEvent | undefined => {
  const json = (): Record<string, unknown> => {
    const value: unknown = JSON.parse(message.data)
    if (typeof value !== "object" || value === null) throw new Error("not an object")
    return value as Record<string, unknown>
  }
  switch (message.event) {
    case "saacms-welcome":
      return {
        _tag: "Welcome",
        topics: json().topics as ReadonlyArray<{ topic: string; status: TopicStatus }>,
        lastEventId: message.lastEventId
      }
    case "changed":
    case "snapshot":
    case "deleted": {
      const data = json()
      const event = decodeEvent(
        message.event === "deleted"
          ? { type: "deleted", slug: data.collection, id: data.id }
          : { type: message.event, slug: data.collection, id: data.id, record: data.record, etag: data.etag }
      )
      if (event._tag === "Left") throw new Error(`a ${message.event} event that does not decode`)
      return { _tag: "Record", topic: String(data.topic), event: event.right, lastEventId: message.lastEventId }
    }
    case "saacms-resync":
      return { _tag: "Resync", topic: String(json().topic), lastEventId: message.lastEventId }
    case "saacms-revoked": {
      const data = json()
      return { _tag: "Revoked", topic: String(data.topic), reason: String(data.reason) }
    }
    case "saacms-denied": {
      const data = json()
      return { _tag: "Denied", topic: String(data.topic), status: Number(data.status), reason: String(data.reason) }
    }
    default:
      return undefined
  }
}

// One SSE message of a record's route as a client event of topic `collection/id`.
const fromRecord = (collection: string, id: string) => {
  const topic = `${collection}/${id}`
  return (message: Message): ClientEvent | undefined => {
    switch (message.event) {
      case "changed":
      case "snapshot":
      case "deleted": {
        const event = decodeEvent(
          message.event === "deleted"
            ? { type: "deleted", slug: collection, id }
            : { type: message.event, slug: collection, id, record: JSON.parse(message.data), etag: message.lastEventId }
        )
        if (event._tag === "Left") throw new Error(`a ${message.event} event that does not decode`)
        return { _tag: "Record", topic, event: event.right, lastEventId: message.lastEventId }
      }
      case "saacms-resync":
        return { _tag: "Resync", topic, lastEventId: message.lastEventId }
      case "saacms-revoked":
        return { _tag: "Revoked", topic, reason: String((JSON.parse(message.data) as { reason?: unknown }).reason) }
      default:
        return undefined
    }
  }
}

const baseOf = (options: Options): URL => {
  if (options.baseUrl !== undefined) return new URL(options.baseUrl)
  const origin = (globalThis as { location?: { origin?: string } }).location?.origin
  if (origin === undefined) throw new TypeError("Client: baseUrl is required outside a browser")
  return new URL(origin)
}

/**
 * The URL of the multiplexed route for `topics`.
 *
 * @since 0.1.0
 * @category utils
 */
export const multiplexedUrl = (topics: ReadonlyArray<string>, options: Options = {}): URL => {
  const url = new URL("/api/saacms/v1/subscribe", baseOf(options))
  for (const topic of topics) url.searchParams.append("topic", topic)
  return url
}

/**
 * Subscribe to `topics` (`collection/id`, `collection/*`) over one stream.
 * The stream ends only when it is interrupted or the server refuses it
 * (`ClientError`); dropped connections are resumed from the last cursor.
 *
 * @since 0.1.0
 * @category constructors
 */
export const subscribe = (topics: ReadonlyArray<string>, options: Options = {}): Stream.Stream<ClientEvent, ClientError> =>
  Stream.suspend(() => events(multiplexedUrl(topics, options), fromMultiplexed, options))

/**
 * Subscribe to one record over its own route (`GET
 * /api/saacms/v1/:collection/:id/subscribe`); its events have topic
 * `collection/id`, and it resumes from the last event id.
 *
 * @since 0.1.0
 * @category constructors
 */
export const subscribeRecord = (collection: string, id: string, options: Options = {}): Stream.Stream<ClientEvent, ClientError> =>
  Stream.suspend(() =>
    events(
      new URL(`/api/saacms/v1/${encodeURIComponent(collection)}/${encodeURIComponent(id)}/subscribe`, baseOf(options)),
      fromRecord(collection, id),
      options
    )
  )

const states = {
  connecting: Chunk.of<ClientEvent>({ _tag: "State", state: "connecting" }),
  live: Chunk.of<ClientEvent>({ _tag: "State", state: "live" }),
  reconnecting: Chunk.of<ClientEvent>({ _tag: "State", state: "reconnecting" })
}

// The reconnecting loop: connect (after a wait when it is not the first
// attempt), read and parse until the body ends, then again. A pull returns
// what one step produced, so the caller's pace is the reader's.
const events = (
  url: URL,
  read: (message: Message) => ClientEvent | undefined,
  options: Options
): Stream.Stream<ClientEvent, ClientError> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const fetch: Fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init))
    const maxRetryMs = options.maxRetryMs ?? 30_000
    let parser = new Parser(options.lastEventId ?? "")
    let retryMs = options.retryMs ?? 3_000
    let body: ReadableStreamDefaultReader<Uint8Array> | undefined
    let decoder = new TextDecoder()
    let controller: AbortController | undefined
    let attempts = 0
    let failures = 0
    let retryAfterMs: number | undefined
    yield* Effect.addFinalizer(() => Effect.sync(() => controller?.abort()))

    // After a stream that ended: the server's hint. After failures: doubling up to the cap, jittered.
    const wait = Effect.suspend(() => {
      if (attempts === 0) return Effect.void
      const base = failures === 0 ? retryMs : Math.min(maxRetryMs, retryMs * 2 ** (failures - 1))
      const floor = Math.max(base, retryAfterMs ?? 0)
      return Effect.flatMap(Random.nextIntBetween(0, Math.floor(floor / 2) + 1), (jitter) =>
        Effect.sleep(Math.min(maxRetryMs, floor) + (failures === 0 ? 0 : jitter)))
    })

    const failed = (after?: number) =>
      Effect.sync(() => {
        failures++
        retryAfterMs = after
        return states.reconnecting
      })

    const connect: Effect.Effect<Chunk.Chunk<ClientEvent>, ClientError> = Effect.gen(function*() {
      yield* wait
      attempts++
      retryAfterMs = undefined
      const given = options.headers
      const headers = new Headers(typeof given === "function" ? yield* Effect.promise(async () => await given()) : given)
      headers.set("Accept", "text/event-stream")
      if (parser.lastEventId !== "") headers.set("Last-Event-ID", parser.lastEventId)
      controller = new AbortController()
      const signal = controller.signal
      const response = yield* Effect.either(Effect.tryPromise(() => fetch(url, { headers, signal, cache: "no-store" })))
      if (response._tag === "Left") return yield* failed()
      const answer = response.right
      if (!answer.ok || answer.body === null) {
        const retryAfter = Number(answer.headers.get("Retry-After"))
        if (answer.status >= 500 || answer.status === 429 || answer.status === 408) {
          yield* Effect.promise(() => answer.body?.cancel().catch(() => undefined) ?? Promise.resolve())
          return yield* failed(Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined)
        }
        const error = yield* Effect.promise(() =>
          answer.json().then(
            (json: unknown) => (typeof json === "object" && json !== null ? json : {}) as { error?: unknown; message?: unknown },
            () => ({}) as { error?: unknown; message?: unknown }
          )
        )
        return yield* new ClientError({
          status: answer.status,
          error: typeof error.error === "string" ? error.error : "refused",
          message: typeof error.message === "string" ? error.message : `the server answered ${answer.status}`
        })
      }
      if (!(answer.headers.get("Content-Type") ?? "").startsWith("text/event-stream")) {
        yield* Effect.promise(() => answer.body!.cancel().catch(() => undefined))
        return yield* protocol(`expected text/event-stream, got ${answer.headers.get("Content-Type")}`)
      }
      failures = 0
      body = answer.body.getReader()
      decoder = new TextDecoder()
      // What a dropped connection left half-read is not an event: a new parser, the same position.
      const next = new Parser(parser.lastEventId)
      next.retry = parser.retry
      parser = next
      return states.live
    })

    const take: Effect.Effect<Chunk.Chunk<ClientEvent>, ClientError> = Effect.suspend(() => {
      const reader = body!
      return Effect.flatMap(Effect.either(Effect.tryPromise(() => reader.read())), (chunk) => {
        if (chunk._tag === "Left" || chunk.right.done) {
          body = undefined
          return Effect.succeed(states.reconnecting)
        }
        const messages = parser.push(decoder.decode(chunk.right.value, { stream: true }))
        if (parser.retry !== undefined) retryMs = parser.retry
        const out: Array<ClientEvent> = []
        for (const message of messages) {
          try {
            const event = read(message)
            if (event !== undefined) out.push(event)
          } catch (error) {
            return Effect.fail(protocol(`${message.event}: ${String(error)}`))
          }
        }
        return Effect.succeed(Chunk.unsafeFromArray(out))
      })
    })

    let first = true
    const pull = Effect.suspend((): Effect.Effect<Chunk.Chunk<ClientEvent>, Option.Option<ClientError>> => {
      if (first) {
        first = false
        return Effect.succeed(states.connecting)
      }
      return Effect.mapError(body === undefined ? connect : take, Option.some)
    })
    return Stream.repeatEffectChunkOption(pull)
  }))

/**
 * What `connect` calls; each is optional. `onEvent` gets every event,
 * before the specific callback.
 *
 * @since 0.1.0
 * @category models
 */
export interface Handlers {
  readonly onEvent?: ((event: ClientEvent) => void) | undefined
  readonly onRecord?: ((topic: string, event: Event.RealtimeEvent) => void) | undefined
  /** Refetch `topic`: its history is gone, or it starts fresh (from the welcome). */
  readonly onResync?: ((topic: string) => void) | undefined
  readonly onState?: ((state: "connecting" | "live" | "reconnecting") => void) | undefined
  readonly onRevoked?: ((topic: string, reason: string) => void) | undefined
  readonly onDenied?: ((topic: string, status: number, reason: string) => void) | undefined
  /** The subscription ended on a refusal (it does not retry those). */
  readonly onError?: ((error: ClientError) => void) | undefined
}

/**
 * A running subscription of `connect`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Subscription {
  /** Where a new subscription would resume from now. */
  readonly lastEventId: () => string | undefined
  /** Stop: the connection is aborted; resolves once it is. */
  readonly close: () => Promise<void>
  /** Settles when the subscription ends: resolves on `close`, rejects with the `ClientError` that ended it. */
  readonly done: Promise<void>
}

const run = (stream: Stream.Stream<ClientEvent, ClientError>, handlers: Handlers): Subscription => {
  let last: string | undefined
  const handle = (event: ClientEvent) =>
    Effect.sync(() => {
      if ("lastEventId" in event && event.lastEventId !== "") last = event.lastEventId
      handlers.onEvent?.(event)
      switch (event._tag) {
        case "State":
          return handlers.onState?.(event.state)
        case "Welcome":
          for (const { status, topic } of event.topics) if (status === "fresh") handlers.onResync?.(topic)
          return
        case "Record":
          return handlers.onRecord?.(event.topic, event.event)
        case "Resync":
          return handlers.onResync?.(event.topic)
        case "Revoked":
          return handlers.onRevoked?.(event.topic, event.reason)
        case "Denied":
          return handlers.onDenied?.(event.topic, event.status, event.reason)
      }
    })
  const fiber = Effect.runFork(Stream.runForEach(stream, handle))
  const done = new Promise<void>((resolve, reject) =>
    fiber.addObserver((exit) => {
      if (Exit.isSuccess(exit) || Exit.isInterrupted(exit)) return resolve()
      const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
      if (failure !== undefined) handlers.onError?.(failure)
      reject(failure ?? new Error("the subscription failed"))
    })
  )
  // A rejection nobody listens to is still reported through `onError`.
  done.catch(() => undefined)
  return {
    lastEventId: () => last,
    close: () => Effect.runPromise(Fiber.interrupt(fiber)).then(() => undefined),
    done
  }
}

/**
 * `subscribe` with callbacks: no Effect needed. A topic that starts `fresh`
 * (in the welcome) or gets a resync calls `onResync`, so refetching there
 * keeps the app's copy right.
 *
 * @since 0.1.0
 * @category constructors
 */
export const connect = (topics: ReadonlyArray<string>, options: Options & Handlers = {}): Subscription =>
  run(subscribe(topics, options), options)

/**
 * `subscribeRecord` with callbacks.
 *
 * @since 0.1.0
 * @category constructors
 */
export const connectRecord = (collection: string, id: string, options: Options & Handlers = {}): Subscription =>
  run(subscribeRecord(collection, id, options), options)
