/**
 * The Worker side of the Durable Object backend: `Realtime` over a
 * `DurableObjectNamespace` binding. Each record is the object
 * `binding.idFromName("<slug>:<id>")`, reached with the reference's binding
 * requests (the client's last event id is forwarded, so replay works here too).
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Event from "../Event.js"
import * as Realtime from "../Realtime.js"
import * as RealtimeConfig from "../RealtimeConfig.js"
import * as RealtimeError from "../RealtimeError.js"
import * as Multiplex from "../Multiplex.js"
import { grantHeaders, grantsHeader, publishedHeaders } from "./Http.js"
import { MultiplexSubscriber } from "./MultiplexSubscriber.js"
import * as Socket from "./Socket.js"
import { type ClientSocketLike, SocketSubscriber } from "./SocketSubscriber.js"

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
export const subscribeRequest = (lastEventId?: string | undefined, grant?: Realtime.Grant | undefined): Request =>
  new Request("https://saacms-realtime-do/subscribe", { method: "GET", headers: grantedHeaders({ Accept: "text/event-stream" }, lastEventId, grant) })

/**
 * Our socket subscribe request (`Upgrade: websocket`), with the same last
 * event id and grant; `resume` asks for no opening (the client has it).
 *
 * @since 0.1.0
 * @category constructors
 */
export const connectRequest = (lastEventId?: string | undefined, grant?: Realtime.Grant | undefined, resume = false): Request =>
  new Request("https://saacms-realtime-do/connect", {
    method: "GET",
    headers: grantedHeaders({ Upgrade: "websocket", ...(resume ? { [Socket.resumeHeader]: "1" } : {}) }, lastEventId, grant)
  })

const grantedHeaders = (
  headers: Record<string, string>,
  lastEventId: string | undefined,
  grant: Realtime.Grant | undefined
): Record<string, string> => {
  if (lastEventId !== undefined) headers["Last-Event-ID"] = lastEventId
  if (grant?.expiresAt !== undefined) headers[grantHeaders.expiresAt] = String(grant.expiresAt)
  if (grant?.subject !== undefined) {
    // Percent-encoded: a header value holds Latin-1 only.
    const json = JSON.stringify(grant.subject)
    if (json !== undefined) headers[grantHeaders.subject] = encodeURIComponent(json)
  }
  return headers
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

const decodeId = (encoded: string): string => {
  try {
    return decodeURIComponent(encoded)
  } catch {
    return encoded
  }
}

/**
 * How the Worker subscribes through the object. `"socket"` (the default): the
 * Worker holds the client's stream and its heartbeat and reads the object
 * through a hibernatable WebSocket, so the object sleeps between events.
 * `"stream"`: the object holds the client's stream (the reference's way; the
 * object then stays in memory while anyone watches).
 *
 * @since 0.1.0
 * @category models
 */
export type Mode = "socket" | "stream"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly mode?: Mode | undefined
  /** The Worker's heartbeat for socket subscribers (ms); 30 000 by default. */
  readonly heartbeatMs?: number | undefined
  /** Bytes a socket subscriber's client may leave unread before the Worker pauses its socket. */
  readonly maxQueuedBytes?: number | undefined
  /** The current time (ms), for socket subscribers' grant expiry; `layer` reads its `Clock`. */
  readonly now: () => number
  /**
   * Also publish each event to its collection's object, which serves
   * multiplexed streams (`openMany`). Default `true`; without it, `openMany`
   * answers `InvalidTopic`.
   */
  readonly collections?: boolean | undefined
  /**
   * Collections one multiplexed stream may name: the Worker holds one stream
   * per collection, and a Worker request may hold 6 connections at once in
   * production. Default 6.
   */
  readonly maxCollections?: number | undefined
  /** The `retry:` hint of multiplexed streams (ms); none by default. */
  readonly retryMs?: number | undefined
}

/**
 * A multiplexed subscribe to a collection's object: the topics (all of that
 * collection, in canonical order), the object's cursor for them, and their grants.
 *
 * @since 0.1.0
 * @category constructors
 */
export const multiplexRequest = (
  topics: ReadonlyArray<Multiplex.Topic>,
  cursor: string | undefined,
  grants: ReadonlyArray<Realtime.Grant | undefined>
): Request => {
  const url = new URL("https://saacms-realtime-do/multiplex")
  for (const topic of topics) url.searchParams.append("topic", topic.topic)
  const headers: Record<string, string> = { Accept: "text/event-stream" }
  if (cursor !== undefined) headers["Last-Event-ID"] = cursor
  if (grants.some((grant) => grant?.expiresAt !== undefined || grant?.subject !== undefined)) {
    headers[grantsHeader] = encodeURIComponent(JSON.stringify(grants.map((grant) =>
      grant === undefined ? null : { expiresAt: grant.expiresAt, subject: grant.subject }
    )))
  }
  return new Request(url, { method: "GET", headers })
}

/**
 * `Realtime` over a Durable Object namespace. Events are validated here first,
 * so bad input costs no round trip; the object validates again.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (binding: DurableObjectNamespaceLike, options: Options): Realtime.Realtime["Type"] => {
  const collections = options.collections !== false
  const maxCollections = options.maxCollections ?? 6
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
        // Then the collection's object, after the record's: one record's events reach it in the record's order.
        if (collections) {
          const collection = Event.collectionKey(key.slice(0, key.indexOf(":")))
          const forwarded = yield* call(collection, publishRequest(body))
          if (forwarded.status !== 204 && forwarded.status !== 200) {
            return yield* new RealtimeError.Unavailable({ reason: `durable object ${collection} answered ${forwarded.status}` })
          }
        }
        // An object that does not say (the reference's) leaves id and seq unknown.
        const id = response.headers.get(publishedHeaders.id)
        return { key, id: id === null ? "" : decodeId(id), seq: Number(response.headers.get(publishedHeaders.seq) ?? 0) }
      }
      // The object's core failed with this error: the same one, read back with its Schema.
      const error = RealtimeError.decode((yield* errorBody(response)).detail)
      switch (error?._tag) {
        case "InvalidEvent":
        case "InvalidResourceKey":
        case "FrameTooLarge":
          return yield* error
        default:
          return yield* new RealtimeError.Unavailable({ reason: `durable object ${key} answered ${response.status}` })
      }
    })

  const socketOptions = {
    heartbeatMs: options.heartbeatMs ?? Duration.toMillis(RealtimeConfig.defaults.heartbeat),
    maxQueuedBytes: options.maxQueuedBytes ?? RealtimeConfig.defaults.maxQueuedBytes,
    now: options.now
  }
  // One socket per client: a request may not use a socket another request opened.
  const connectSocket = (key: Event.ResourceKey, last: string | undefined, grant: Realtime.Grant | undefined, resume: boolean) =>
    binding.get(binding.idFromName(key)).fetch(connectRequest(last, grant, resume)).then((response) => {
      const socket = (response as Response & { readonly webSocket?: ClientSocketLike | null }).webSocket
      if (response.status !== 101 || socket === undefined || socket === null) return { response, socket: undefined }
      socket.accept()
      return { response, socket }
    })

  const open: Realtime.Realtime["Type"]["open"] = (key, lastEventId, grant) =>
    Effect.gen(function*() {
      const last = lastEventId === undefined ? undefined : yield* Event.decodeLastEventId(lastEventId)
      if (options.mode !== "stream") {
        const { response, socket } = yield* Effect.tryPromise({
          try: () => connectSocket(key, last, grant, false),
          catch: (error) => new RealtimeError.Unavailable({ reason: `durable object ${key}: ${String(error)}` })
        })
        if (socket !== undefined) {
          return new SocketSubscriber(
            socket,
            last,
            (lastId, resume) => connectSocket(key, lastId, grant, resume).then(({ socket }) => socket),
            { ...socketOptions, expiresAt: grant?.expiresAt }
          )
        }
        return yield* refused(key, response)
      }
      const response = yield* call(key, yield* Effect.try({
        try: () => subscribeRequest(last, grant),
        catch: () => new RealtimeError.Unavailable({ reason: "the grant subject is not JSON" })
      }))
      if (response.ok && response.body !== null) return new RemoteSubscriber(response.body)
      return yield* refused(key, response)
    })

  const refused = (key: Event.ResourceKey, response: Response) =>
    Effect.gen(function*() {
      const error = RealtimeError.decode((yield* errorBody(response)).detail)
      switch (error?._tag) {
        case "InvalidLastEventId":
        case "InvalidTopic":
        case "TooManySubscribers":
          return yield* error
        default:
          return yield* new RealtimeError.Unavailable({ reason: `durable object ${key} answered ${response.status}` })
      }
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

  // One stream per collection named, from its object, merged in the Worker.
  const openMany: Realtime.Realtime["Type"]["openMany"] = (requests, cursor) =>
    Effect.gen(function*() {
      const topics = requests.map((request) => request.topic)
      const hash = Multiplex.listHash(topics)
      const given = cursor === undefined ? undefined : yield* Multiplex.decodeCursor(cursor, hash, topics.length)
      const positions = given ?? topics.map(() => ({ seq: 0, check: 0 }))
      const groups = new Map<string, Array<number>>()
      const denied = new Map<number, { readonly status: number; readonly reason: string }>()
      requests.forEach((request, i) => {
        if (request.denied !== undefined) {
          denied.set(i, request.denied)
          return
        }
        const group = groups.get(request.topic.collection)
        if (group === undefined) groups.set(request.topic.collection, [i])
        else group.push(i)
      })
      if (!collections) {
        return yield* new RealtimeError.InvalidTopic({ reason: "multiplexed streams need collection objects (collections: false)" })
      }
      if (groups.size > maxCollections) {
        return yield* new RealtimeError.InvalidTopic({
          reason: `at most ${maxCollections} collections per stream on Durable Objects`,
          limit: maxCollections
        })
      }
      const opened = yield* Effect.forEach(groups, ([collection, indexes]) => {
        const part = indexes.map((i) => topics[i]!)
        const partCursor = given === undefined
          ? undefined
          : Multiplex.encodeCursor(Multiplex.listHash(part), indexes.map((i) => positions[i]!))
        const key = Event.collectionKey(collection)
        return Effect.map(
          Effect.either(call(key, multiplexRequest(part, partCursor, indexes.map((i) => requests[i]!.grant)))),
          (response) => ({ key, indexes, part, response })
        )
      }, { concurrency: "unbounded" })
      const failed = opened.find(({ response }) => response._tag === "Left" || !response.right.ok || response.right.body === null)
      if (failed !== undefined) {
        for (const { response } of opened) {
          if (response._tag === "Right" && response !== failed.response) response.right.body?.cancel().catch(() => undefined)
        }
        if (failed.response._tag === "Left") return yield* failed.response.left
        return yield* refused(failed.key, failed.response.right)
      }
      return new MultiplexSubscriber(
        topics,
        positions,
        denied,
        opened.map(({ indexes, part, response }) => ({
          topics: part,
          indexes,
          body: (response as { readonly right: Response }).right.body!
        })),
        options.retryMs
      )
    })

  return Realtime.Realtime.of({ publish, unsafePublish: undefined, open, openMany, subscribe })
}

/**
 * `Realtime` for an Effect app on Workers: publish and subscribe through the
 * record's Durable Object, with the heartbeat and queue bound of
 * `RealtimeConfig` and time from `Clock`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (binding: DurableObjectNamespaceLike, mode?: Mode | undefined): Layer.Layer<Realtime.Realtime> =>
  Layer.effect(
    Realtime.Realtime,
    Effect.gen(function*() {
      const config = yield* RealtimeConfig.RealtimeConfig
      const clock = yield* Effect.clock
      return make(binding, {
        mode,
        heartbeatMs: Duration.toMillis(config.heartbeat),
        maxQueuedBytes: config.maxQueuedBytes,
        collections: config.collectionHistory,
        retryMs: config.retryMs > 0 ? config.retryMs : undefined,
        now: () => clock.unsafeCurrentTimeMillis()
      })
    })
  )
