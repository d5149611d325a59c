/**
 * The Worker side of the Durable Object backend: `Realtime` over a
 * `DurableObjectNamespace` binding. Each record is the object
 * `binding.idFromName("<slug>:<id>")`, reached with the reference's binding
 * requests (the client's last event id is forwarded, so replay works here too).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Event from "../Event.js"
import * as Realtime from "../Realtime.js"
import * as RealtimeError from "../RealtimeError.js"
import { grantHeaders, publishedHeaders } from "./Http.js"

/**
 * Structural mirrors of the Workers binding types (the reference's), so the
 * package takes no runtime dependency on `cloudflare:workers`.
 *
 * @since 0.1.0
 * @category models
 */
export interface DurableObjectIdLike {
  toString(): string
  readonly name?: string | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface DurableObjectStubLike {
  fetch(request: Request): Promise<Response>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface DurableObjectNamespaceLike {
  idFromName(name: string): DurableObjectIdLike
  get(id: DurableObjectIdLike): DurableObjectStubLike
}

/**
 * The reference's subscribe request, plus the client's last event id and its
 * grant (expiry, and subject for the object's `recheck`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const subscribeRequest = (lastEventId?: string | undefined, grant?: Realtime.Grant | undefined): Request => {
  const headers: Record<string, string> = { Accept: "text/event-stream" }
  if (lastEventId !== undefined) headers["Last-Event-ID"] = lastEventId
  if (grant?.expiresAt !== undefined) headers[grantHeaders.expiresAt] = String(grant.expiresAt)
  if (grant?.subject !== undefined) {
    // Percent-encoded: a header value holds Latin-1 only.
    const json = JSON.stringify(grant.subject)
    if (json !== undefined) headers[grantHeaders.subject] = encodeURIComponent(json)
  }
  return new Request("https://saacms-realtime-do/subscribe", { method: "GET", headers })
}

/**
 * The reference's publish request.
 *
 * @since 0.1.0
 * @category constructors
 */
export const publishRequest = (body: string): Request =>
  new Request("https://saacms-realtime-do/publish", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body
  })

/**
 * A subscription held by a Durable Object, as the Worker sees it: the object's
 * response body. If the object goes away mid-stream (evicted, or reset by a
 * deploy) the client's stream ends cleanly instead of failing: the client
 * reconnects with its last id and the woken object replays from storage.
 */
class RemoteSubscriber implements Realtime.Subscriber {
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined = undefined

  constructor(readonly body: ReadableStream<Uint8Array>) {}

  toReadableStream(): ReadableStream<Uint8Array> {
    const reader = this.body.getReader()
    this.#reader = reader
    return new ReadableStream<Uint8Array>({
      pull: (controller) =>
        reader.read().then(
          (chunk) => chunk.done ? controller.close() : controller.enqueue(chunk.value),
          () => controller.close()
        ),
      cancel: (reason) => reader.cancel(reason)
    })
  }

  close(): void {
    const cancelled = this.#reader === undefined ? this.body.cancel() : this.#reader.cancel()
    cancelled.catch(() => {
      // Already ended.
    })
  }
}

const errorBody = (response: Response) =>
  Effect.promise(() =>
    response.json().then(
      (body: unknown) => (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>,
      () => ({}) as Record<string, unknown>
    )
  )

const text = (value: unknown) => (typeof value === "string" ? value : "")

const decodeId = (encoded: string): string => {
  try {
    return decodeURIComponent(encoded)
  } catch {
    return encoded
  }
}

/**
 * `Realtime` over a Durable Object namespace. Events are validated here first,
 * so bad input costs no round trip; the object validates again.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (binding: DurableObjectNamespaceLike): Realtime.Realtime["Type"] => {
  const call = (key: Event.ResourceKey, request: Request) =>
    Effect.tryPromise({
      try: () => binding.get(binding.idFromName(key)).fetch(request),
      catch: (error) => new RealtimeError.Unavailable({ reason: `durable object ${key}: ${String(error)}` })
    })

  const publish: Realtime.Realtime["Type"]["publish"] = (input) =>
    Effect.gen(function*() {
      const { key } = yield* Event.decode(input)
      const body = yield* Effect.try({
        try: () => JSON.stringify(input),
        catch: () => new RealtimeError.InvalidEvent({ reason: "the event cannot be serialised as JSON" })
      })
      const response = yield* call(key, publishRequest(body))
      if (response.status === 204 || response.status === 200) {
        // An object that does not say (the reference's) leaves id and seq unknown.
        const id = response.headers.get(publishedHeaders.id)
        return { key, id: id === null ? "" : decodeId(id), seq: Number(response.headers.get(publishedHeaders.seq) ?? 0) }
      }
      const error = yield* errorBody(response)
      switch (error.error) {
        case "invalid_event":
          return yield* new RealtimeError.InvalidEvent({ reason: text(error.message) })
        case "invalid_resource_key":
          return yield* new RealtimeError.InvalidResourceKey({ field: "id", reason: text(error.message) })
        case "frame_too_large":
          return yield* new RealtimeError.FrameTooLarge({ bytes: Number(error.bytes ?? 0), maxBytes: Number(error.maxBytes ?? 0) })
        default:
          return yield* new RealtimeError.Unavailable({ reason: `durable object ${key} answered ${response.status}` })
      }
    })

  const open: Realtime.Realtime["Type"]["open"] = (key, lastEventId, grant) =>
    Effect.gen(function*() {
      const last = lastEventId === undefined ? undefined : yield* Event.decodeLastEventId(lastEventId)
      const response = yield* call(key, yield* Effect.try({
        try: () => subscribeRequest(last, grant),
        catch: () => new RealtimeError.Unavailable({ reason: "the grant subject is not JSON" })
      }))
      if (response.ok && response.body !== null) return new RemoteSubscriber(response.body)
      const error = yield* errorBody(response)
      return yield* error.error === "invalid_last_event_id"
        ? new RealtimeError.InvalidLastEventId({ reason: text(error.message) })
        : error.error === "too_many_subscribers"
        ? new RealtimeError.TooManySubscribers({ scope: "key", limit: Number(error.limit ?? 0) })
        : new RealtimeError.Unavailable({ reason: `durable object ${key} answered ${response.status}` })
    })

  const subscribe: Realtime.Realtime["Type"]["subscribe"] = (key, lastEventId, grant) =>
    Stream.unwrapScoped(
      Effect.map(
        Effect.acquireRelease(open(key, lastEventId, grant), (subscriber) => Effect.sync(() => subscriber.close())),
        (subscriber) =>
          Stream.fromReadableStream({
            evaluate: () => subscriber.toReadableStream(),
            onError: (error) => new RealtimeError.Unavailable({ reason: String(error) })
          })
      )
    )

  return Realtime.Realtime.of({ publish, unsafePublish: undefined, open, subscribe })
}

/**
 * `Realtime` for an Effect app on Workers: publish and subscribe through the
 * record's Durable Object.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (binding: DurableObjectNamespaceLike): Layer.Layer<Realtime.Realtime> =>
  Layer.sync(Realtime.Realtime, () => make(binding))
