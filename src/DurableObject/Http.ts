/**
 * The binding requests a `SaacmsRealtimeDO` answers, as Effects over
 * `Realtime`: `GET` + `Accept: text/event-stream` subscribes, `GET` +
 * `Upgrade: websocket` subscribes over a hibernatable socket, `POST` with a
 * JSON event publishes. Errors are JSON bodies with a 4xx status; nothing
 * internal leaves the object.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import type * as Access from "../Access.js"
import * as Effect from "effect/Effect"
import * as Event from "../Event.js"
import * as Frame from "../Frame.js"
import * as Heartbeat from "../Heartbeat.js"
import * as Hub from "../Hub.js"
import * as Multiplex from "../Multiplex.js"
import * as Realtime from "../Realtime.js"
import * as RealtimeConfig from "../RealtimeConfig.js"
import * as RealtimeError from "../RealtimeError.js"
import * as ReplayBuffer from "../ReplayBuffer.js"
import * as Socket from "./Socket.js"
import * as Storage from "./Storage.js"

/**
 * The key of the object's one record inside its core. The binding's subscribe
 * request does not name the record, so the object does not need to know it.
 *
 * @since 0.1.0
 * @category models
 */
export const record = "durable-object:record" as Event.ResourceKey

/**
 * The response headers of a publish: the event's id (percent-encoded, as an
 * etag may hold any character but CR, LF and NUL) and sequence number.
 *
 * @since 0.1.0
 * @category models
 */
export const publishedHeaders = { id: "X-Saacms-Event-Id", seq: "X-Saacms-Event-Seq" } as const

const json = (status: number, error: string, message: string, headers?: Record<string, string>): Response =>
  Response.json({ error, message }, headers === undefined ? { status } : { status, headers })

/**
 * Subscribe: replay after `Last-Event-ID` (or `?lastEventId=`), then live frames.
 *
 * @since 0.1.0
 * @category handlers
 */
export const subscribe = (
  request: Request,
  recheck?: Access.Recheck | undefined,
  name?: string | undefined
): Effect.Effect<Response, never, Realtime.Realtime> =>
  Effect.gen(function*() {
    const realtime = yield* Realtime.Realtime
    const key = (name ?? record) as Event.ResourceKey
    const subscriber = yield* realtime.open(key, lastEventIdOf(request), grantOf(request, recheck, key))
    return new Response(Socket.throughNativePipe(subscriber.toReadableStream()), { headers: Frame.headers })
  }).pipe(refusals)

/**
 * The grants of a multiplexed subscribe's topics, in the order of its
 * `?topic=` list (canonical), as the Worker forwards them: percent-encoded
 * JSON, one `{ "expiresAt"?, "subject"? }` (or `null`: no grant) per topic.
 *
 * @since 0.1.0
 * @category models
 */
export const grantsHeader = "X-Saacms-Grants"

/**
 * A collection object's multiplexed subscribe (`GET ?topic=…` with `Accept:
 * text/event-stream`): one stream of the topics named, which must all be of
 * the object's collection (`name` is `"<collection>:*"`), resumed from the
 * cursor in `Last-Event-ID`, with the grants of `grantsHeader`.
 *
 * @since 0.1.0
 * @category handlers
 */
export const subscribeMany = (
  request: Request,
  recheck: Access.Recheck | undefined,
  name: string
): Effect.Effect<Response, never, Realtime.Realtime> =>
  Effect.gen(function*() {
    const realtime = yield* Realtime.Realtime
    const config = yield* RealtimeConfig.RealtimeConfig
    const topics = yield* Multiplex.parseTopics(new URL(request.url).searchParams.getAll("topic"), config.maxTopics)
    if (topics.some((topic) => topic.collection !== name.slice(0, -2))) {
      return json(409, "wrong_collection", `this object holds ${name}`)
    }
    const grants = grantsOf(request.headers.get(grantsHeader), topics.length)
    if (grants === undefined) return json(400, "invalid_grants", "the grants do not match the topics")
    const requests = topics.map((topic, i): Realtime.TopicRequest => {
      const grant = grants[i]
      if (grant === null || grant === undefined) return { topic }
      const subject = grant.subject
      return {
        topic,
        grant: {
          expiresAt: typeof grant.expiresAt === "number" ? grant.expiresAt : undefined,
          subject,
          canSee: recheck === undefined ? undefined : (event) => recheck(subject, event, Event.keyOf(event))
        }
      }
    })
    const subscriber = yield* realtime.openMany(requests, lastEventIdOf(request))
    return new Response(Socket.throughNativePipe(subscriber.toReadableStream()), { headers: Frame.headers })
  }).pipe(refusals)

type ForwardedGrant = { readonly expiresAt?: unknown; readonly subject?: unknown } | null

const grantsOf = (header: string | null, count: number): ReadonlyArray<ForwardedGrant> | undefined => {
  if (header === null) return Array.from({ length: count }, () => null)
  try {
    const grants = JSON.parse(decodeURIComponent(header)) as unknown
    return Array.isArray(grants) && grants.length === count &&
        grants.every((grant) => grant === null || (typeof grant === "object" && !Array.isArray(grant)))
      ? grants as ReadonlyArray<ForwardedGrant>
      : undefined
  } catch {
    return undefined
  }
}

/**
 * A refusal as the object answers it: `RealtimeError.toHttp`'s status and
 * `{ error, message }`, with the error itself in `detail` (its Schema's JSON),
 * so that the Worker gets back exactly the error the object's core failed with.
 *
 * @since 0.1.0
 * @category constructors
 */
export const refusal = (error: RealtimeError.RealtimeError): Response => {
  const { message, retryAfter, status, error: code } = RealtimeError.toHttp(error)
  return Response.json(
    { error: code, message, detail: RealtimeError.encode(error) },
    retryAfter === undefined ? { status } : { status, headers: { "Retry-After": String(retryAfter) } }
  )
}

// The refusals of a subscribe, SSE or socket.
const refusals = <R>(
  effect: Effect.Effect<Response, Realtime.SubscribeError, R>
): Effect.Effect<Response, never, R> => Effect.catchAll(effect, (error) => Effect.succeed(refusal(error)))

/**
 * Where the object keeps the sockets it accepts: `accept` hands `socket` to
 * the runtime's hibernation API (`state.acceptWebSocket`) with its attachment
 * and remembers which subscriber writes to it.
 *
 * @since 0.1.0
 * @category models
 */
export interface SocketHost {
  /**
   * Hand `socket` to the runtime with its attachment and send `subscriber`'s
   * frames to it, starting with what it holds already (its opening, the start
   * of its replay).
   */
  readonly accept: (socket: Socket.WebSocketLike, subscriber: Realtime.Subscriber, attachment: Socket.Attachment) => void
  /** Sockets open now. */
  readonly count: () => number
  /** This instance of the object (a new one after each eviction or hibernation). */
  readonly instance: string
}

/** workerd's `WebSocketPair` (absent elsewhere). */
const WebSocketPair = (globalThis as {
  readonly WebSocketPair?: new() => Record<0 | 1, Socket.WebSocketLike>
}).WebSocketPair

/**
 * Subscribe over a hibernatable WebSocket (`GET` with `Upgrade: websocket`):
 * the same opening, replay after `Last-Event-ID` and live frames as the SSE
 * subscribe, one binary message per chunk; the grant headers as there. The
 * subscriber needs no heartbeat: the Worker keeps its client's stream alive,
 * and pings the object's runtime answers without waking it.
 *
 * @since 0.1.0
 * @category handlers
 */
export const connect = (
  request: Request,
  sockets: SocketHost,
  recheck?: Access.Recheck | undefined,
  name?: string | undefined
): Effect.Effect<Response, never, Realtime.Realtime> =>
  Effect.gen(function*() {
    if (WebSocketPair === undefined) return json(426, "upgrade_required", "this runtime has no WebSocketPair")
    const realtime = yield* Realtime.Realtime
    const last = lastEventIdOf(request)
    const key = (name ?? record) as Event.ResourceKey
    const grant = grantOf(request, recheck, key)
    const resume = request.headers.get(Socket.resumeHeader) === "1"
    const subscriber = yield* realtime.open(key, last, grant, { heartbeat: false, opening: !resume })
    const pair = new WebSocketPair()
    const client = pair[0]
    const server = pair[1]
    // The subject as the Worker sent it: a woken object reads it back the same way.
    const subject = request.headers.get(grantHeaders.subject) ?? undefined
    try {
      sockets.accept(server, subscriber, { expiresAt: grant.expiresAt, subject })
    } catch (error) {
      // The runtime refused the socket (its limit of hibernatable sockets).
      subscriber.close()
      return yield* new RealtimeError.Unavailable({ reason: `socket not accepted: ${String(error)}` })
    }
    return new Response(null, { status: 101, webSocket: client } as ResponseInit)
  }).pipe(refusals)

const lastEventIdOf = (request: Request): string | undefined => {
  const header = request.headers.get("Last-Event-ID")
  const last = header !== null && header !== "" ? header : new URL(request.url).searchParams.get("lastEventId")
  return last === null || last === "" ? undefined : last
}

/**
 * The headers that carry a subscriber's grant from the Worker, which
 * authorized the client, to the object: its expiry (ms since the epoch) and
 * its subject as JSON, for the object's `recheck`. Binding requests come only
 * from the Worker's own code, so the object trusts them.
 *
 * @since 0.1.0
 * @category models
 */
export const grantHeaders = { expiresAt: "X-Saacms-Grant-Expires-At", subject: "X-Saacms-Grant-Subject" } as const

/**
 * The grant of a socket re-attached from its attachment (after the object woke).
 *
 * @since 0.1.0
 * @category constructors
 */
export const grantFromAttachment = (
  attachment: Socket.Attachment,
  recheck: Access.Recheck | undefined,
  key: Event.ResourceKey
): Realtime.Grant => grantFrom(attachment.expiresAt, attachment.subject, recheck, key)

const grantOf = (request: Request, recheck: Access.Recheck | undefined, key: Event.ResourceKey): Realtime.Grant =>
  grantFrom(Number(request.headers.get(grantHeaders.expiresAt) ?? Number.NaN), request.headers.get(grantHeaders.subject), recheck, key)

// The grant from its expiry and its subject as the Worker sent it (percent-encoded JSON).
const grantFrom = (
  expiresAt: number | undefined,
  subjectJson: string | null | undefined,
  recheck: Access.Recheck | undefined,
  key: Event.ResourceKey
): Realtime.Grant => {
  const expiry = expiresAt !== undefined && Number.isFinite(expiresAt) ? expiresAt : undefined
  let subject: unknown = undefined
  if (subjectJson !== null && subjectJson !== undefined) {
    try {
      subject = JSON.parse(decodeURIComponent(subjectJson))
    } catch {
      // A subject the object cannot read sees nothing a re-check guards.
      return { expiresAt: expiry, canSee: () => false }
    }
  }
  return {
    expiresAt: expiry,
    subject,
    canSee: recheck === undefined ? undefined : (event) => recheck(subject, event, key)
  }
}

// The body as text, or `undefined` once it passes `limit` bytes (the rest is not read).
const readAtMost = async (request: Request, limit: number): Promise<string | undefined> => {
  if (request.body === null) return ""
  const reader = request.body.getReader()
  const chunks: Array<Uint8Array> = []
  let size = 0
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
    size += chunk.value.byteLength
    if (size > limit) {
      await reader.cancel()
      return undefined
    }
    chunks.push(chunk.value)
  }
  const bytes = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    bytes.set(chunk, offset)
    offset += chunk.byteLength
  }
  return new TextDecoder().decode(bytes)
}

/**
 * Publish one event (the request body, JSON); 204 with the event's id and
 * sequence number. `name` is the object's name when the runtime knows it: an
 * event for another record is refused (409), as it would reach the wrong subscribers.
 *
 * @since 0.1.0
 * @category handlers
 */
export const publish = (request: Request, name: string | undefined): Effect.Effect<Response, never, Realtime.Realtime> =>
  Effect.gen(function*() {
    const realtime = yield* Realtime.Realtime
    const config = yield* RealtimeConfig.RealtimeConfig
    // A body that cannot make a frame under the limit is refused unread, or as
    // soon as it passes the limit when it comes without a length.
    const limit = config.maxFrameBytes + 4096
    const length = Number(request.headers.get("Content-Length") ?? 0)
    if (length > limit) return json(413, "frame_too_large", `the body is ${length} bytes, over ${config.maxFrameBytes}`)
    const text = yield* Effect.tryPromise(() => readAtMost(request, limit))
    if (text === undefined) return json(413, "frame_too_large", `the body is over ${limit} bytes`)
    const body = yield* Effect.try(() => JSON.parse(text) as unknown)
    if (name !== undefined) {
      const { event, key } = yield* Event.decode(body)
      // A collection object takes every record of its collection.
      if (Event.isCollectionKey(name) ? Event.collectionKey(event.slug) !== name : key !== name) {
        return json(409, "wrong_record", `this object holds ${name}`)
      }
    }
    const published = yield* realtime.publish(body as typeof Event.RealtimeEvent.Encoded)
    return new Response(null, {
      status: 204,
      headers: {
        [publishedHeaders.id]: encodeURIComponent(published.id),
        [publishedHeaders.seq]: String(published.seq)
      }
    })
  }).pipe(
    Effect.catchAll((error) =>
      Effect.succeed(
        error._tag === "UnknownException" ? json(400, "invalid_json", "the body must be a JSON record event") : refusal(error)
      )
    )
  )

/**
 * What the object holds now, as JSON: subscribers (its hub's, sockets
 * included), open sockets, running heartbeats, events in storage and which
 * instance answers (`GET` with `Accept: application/json`; for monitoring).
 *
 * @since 0.1.0
 * @category handlers
 */
export const stats = (
  storage: Storage.StorageLike,
  sockets?: SocketHost | undefined
): Effect.Effect<Response, never, Hub.Hub | Heartbeat.Heartbeat> =>
  Effect.gen(function*() {
    const hub = yield* Hub.Hub
    const heartbeat = yield* Heartbeat.Heartbeat
    return Response.json({
      subscribers: yield* hub.totalSubscribers,
      sockets: sockets?.count() ?? 0,
      heartbeats: yield* heartbeat.active,
      stored: yield* Storage.stored(storage),
      instance: sockets?.instance
    })
  })

/**
 * Route one binding request. Defects become a bare 500 (logged, never sent).
 *
 * @since 0.1.0
 * @category handlers
 */
export const handle = (
  request: Request,
  name: string | undefined,
  storage: Storage.StorageLike,
  recheck?: Access.Recheck | undefined,
  sockets?: SocketHost | undefined
): Effect.Effect<Response, never, Realtime.Realtime | Hub.Hub | Heartbeat.Heartbeat | ReplayBuffer.ReplayBuffer> => {
  const accept = request.headers.get("Accept") ?? ""
  const upgrade = (request.headers.get("Upgrade") ?? "").toLowerCase() === "websocket"
  const handler: Effect.Effect<Response, never, Realtime.Realtime | Hub.Hub | Heartbeat.Heartbeat | ReplayBuffer.ReplayBuffer> = request.method === "POST"
    ? publish(request, name)
    : request.method === "GET" && upgrade
    ? sockets === undefined
      ? Effect.succeed(json(426, "upgrade_required", "this object cannot accept WebSockets"))
      : connect(request, sockets, recheck, name)
    : request.method !== "GET"
    ? Effect.succeed(json(404, "not_found", "GET with Accept: text/event-stream or Upgrade: websocket subscribes; POST publishes"))
    : accept.includes("text/event-stream")
    ? name !== undefined && Event.isCollectionKey(name)
      ? subscribeMany(request, recheck, name)
      : subscribe(request, recheck, name)
    : accept.includes("application/json")
    ? stats(storage, sockets)
    : Effect.succeed(json(404, "not_found", "GET with Accept: text/event-stream or Upgrade: websocket subscribes; POST publishes"))
  return handler.pipe(
    Effect.catchAllCause((cause) =>
      Effect.as(
        Effect.logError("realtime durable object failed", Cause.pretty(cause)),
        json(500, "internal", "internal error")
      )
    ),
    // Refusals are logged with the object's record and the request's id.
    Effect.tap((response) =>
      response.status >= 400 && response.status < 500
        ? Effect.logInfo("binding request refused").pipe(Effect.annotateLogs({ status: response.status }))
        : Effect.void
    ),
    Effect.annotateLogs({ record: name ?? "", requestId: request.headers.get("cf-ray") ?? request.headers.get("x-request-id") ?? "" })
  )
}

/**
 * The alarm's work: trim the record, which deletes expired entries from
 * storage and schedules the next alarm.
 *
 * @since 0.1.0
 * @category handlers
 */
export const expire: Effect.Effect<void, never, ReplayBuffer.ReplayBuffer> = Effect.flatMap(
  ReplayBuffer.ReplayBuffer,
  (buffer) => Effect.ignoreLogged(buffer.size(record))
)
