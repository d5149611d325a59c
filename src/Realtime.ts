/**
 * The service hosts use: `publish` a record event, `subscribe` to a record's
 * SSE bytes (with replay after a last event id). Composed from `ReplayBuffer`,
 * `Hub` and `Heartbeat`.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"
import * as Event from "./Event.js"
import * as Frame from "./Frame.js"
import * as Heartbeat from "./Heartbeat.js"
import * as Hub from "./Hub.js"
import * as Mailbox from "./internal/mailbox.js"
import * as Mux from "./internal/multiplex.js"
import * as Outlet from "./internal/outlet.js"
import * as Tracing from "./internal/tracing.js"
import * as Metrics from "./Metrics.js"
import * as Multiplex from "./Multiplex.js"
import * as RealtimeConfig from "./RealtimeConfig.js"
import * as RealtimeError from "./RealtimeError.js"
import * as ReplayBuffer from "./ReplayBuffer.js"

/**
 * Where a published event landed in its record's history.
 *
 * @since 0.1.0
 * @category models
 */
export interface Published {
  readonly key: Event.ResourceKey
  readonly id: string
  readonly seq: number
}

/**
 * One open subscription, for adapters that write frames to a client
 * themselves (no fiber per client).
 *
 * @since 0.1.0
 * @category models
 */
export interface Subscriber {
  /** The frames as a web stream (call once); cancelling it ends the subscription. */
  toReadableStream(): ReadableStream<Uint8Array>
  /** End the subscription; its stream ends after the frames it holds. */
  close(): void
}

/**
 * The errors of `publish`.
 *
 * @since 0.1.0
 * @category errors
 */
export type PublishError =
  | RealtimeError.InvalidEvent
  | RealtimeError.InvalidResourceKey
  | RealtimeError.FrameTooLarge
  | RealtimeError.Unavailable

/**
 * What a subscription may see, from the access decision that opened it: when
 * its grant ends (`Clock` ms since the epoch; the stream then gets
 * `saacms-revoked` `{"reason":"expired"}` and ends) and a check run before
 * each live record event goes to it (`false`: `saacms-revoked`
 * `{"reason":"forbidden"}`, and the stream ends). A check that throws refuses.
 *
 * @since 0.1.0
 * @category models
 */
export interface Grant {
  readonly expiresAt?: number | undefined
  readonly canSee?: ((event: Event.RealtimeEvent) => boolean) | undefined
  /** What the check knows of the client (forwarded to a Durable Object as JSON). */
  readonly subject?: unknown
}

/**
 * How `open` attaches a subscriber: `heartbeat` as in `Hub.JoinOptions`;
 * `opening: false` sends no opening (`:keepalive`, `retry:`), for a
 * connection re-attached where its client already is (a hibernated socket
 * whose object woke up).
 *
 * @since 0.1.0
 * @category models
 */
export interface OpenOptions extends Hub.JoinOptions {
  readonly opening?: boolean | undefined
}

/**
 * One topic of a multiplexed stream (`openMany`), with the access decision
 * for it: allowed (with its grant, if any) or `denied` (the stream says so in
 * its own frame and follows the others).
 *
 * @since 0.1.0
 * @category models
 */
export interface TopicRequest {
  readonly topic: Multiplex.Topic
  readonly grant?: Grant | undefined
  readonly denied?: { readonly status: number; readonly reason: string } | undefined
}

/**
 * The errors of `open` and `subscribe`.
 *
 * @since 0.1.0
 * @category errors
 */
export type SubscribeError =
  | RealtimeError.InvalidLastEventId
  | RealtimeError.InvalidTopic
  | RealtimeError.TooManySubscribers
  | RealtimeError.Unavailable

/**
 * @since 0.1.0
 * @category tags
 */
export class Realtime extends Context.Tag("@saacms/realtime/Realtime")<Realtime, {
  /** Validate, encode once, buffer and fan out one record event. */
  readonly publish: (event: typeof Event.RealtimeEvent.Encoded) => Effect.Effect<Published, PublishError>
  /**
   * `publish` as a plain call, where the buffer appends without waiting (in
   * memory); `undefined` elsewhere (Redis, Durable Objects). For hosts that
   * call from outside Effect (the PluginDef): no fiber per publish. Time comes
   * from the `Clock` the service was built with.
   */
  readonly unsafePublish: ((event: typeof Event.RealtimeEvent.Encoded) => Either.Either<Published, PublishError>) | undefined
  /**
   * Register a subscriber of `key`, primed with what it is owed after
   * `lastEventId`, until it closes (its client leaves or stalls for a
   * heartbeat interval, its grant ends, or the service shuts down).
   * The low-level form of `subscribe`, for adapters that write to a socket themselves.
   */
  readonly open: (
    key: Event.ResourceKey,
    lastEventId?: string | undefined,
    grant?: Grant | undefined,
    options?: OpenOptions | undefined
  ) => Effect.Effect<Subscriber, SubscribeError>
  /**
   * One stream for many topics (records and whole collections), in the
   * canonical order of `Multiplex.parseTopics`: `:keepalive`, `retry:`, a
   * `saacms-welcome` naming each topic's standing, then for each topic what
   * its client missed after its position in `cursor` (or its own
   * `saacms-resync`), then live frames; every record frame carries the
   * stream's new cursor as its id. A cursor of another topic list is no
   * position (every topic starts fresh); one no server wrote fails with
   * `InvalidLastEventId`.
   */
  readonly openMany: (
    topics: ReadonlyArray<TopicRequest>,
    cursor?: string | undefined
  ) => Effect.Effect<Subscriber, SubscribeError>
  /**
   * The SSE bytes for one record: `:keepalive`, `retry:`, then what the
   * client missed after `lastEventId` (or one `saacms-resync` frame), read
   * from the history as the stream is pulled, then live frames. A reader too
   * slow for `maxQueuedBytes` / `queueCapacity` catches up from the history
   * (or gets `saacms-resync`). Ends when its grant ends or the service shuts down.
   */
  readonly subscribe: (
    key: Event.ResourceKey,
    lastEventId?: string | undefined,
    grant?: Grant | undefined
  ) => Stream.Stream<Uint8Array, SubscribeError>
}>() {}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<
  Realtime["Type"],
  never,
  ReplayBuffer.ReplayBuffer | Hub.Hub
> = Effect.gen(function*() {
  const config = yield* RealtimeConfig.RealtimeConfig
  const buffer = yield* ReplayBuffer.ReplayBuffer
  const hub = yield* Hub.Hub
  let counter = 0
  const collections = config.collectionHistory
  const noId = Either.right(undefined)
  const noRetry = Effect.succeed(undefined)

  // No lock: the buffer's driver assigns each record's sequence numbers, and a
  // subscriber that sees them out of order (two publishes to one record
  // interleaved) repairs the gap from the history.
  // Validate and encode: the event, its key, id and frame.
  const prepare = (
    input: typeof Event.RealtimeEvent.Encoded,
    now: number
  ): Either.Either<
    { readonly event: Event.RealtimeEvent; readonly key: Event.ResourceKey; readonly id: string; readonly frame: Uint8Array },
    PublishError
  > => {
    const decoded = Event.decode(input)
    if (decoded._tag === "Left") return Either.left(decoded.left)
    const { event, key } = decoded.right
    const etag = event.type === "deleted" ? undefined : event.etag
    const id = etag !== undefined && etag !== "" ? etag : `${now}-${++counter}`
    return Either.map(Frame.encode(event, id, config.maxFrameBytes), (frame) => ({ event, key, id, frame }))
  }

  // The service's clock (the hub's too): when an event was accepted, in ms
  // with sub-ms precision, for the publish-to-write latency.
  const clock = yield* Effect.clock
  const acceptedAt = () => Number(clock.unsafeCurrentTimeNanos()) / 1_000_000

  const publishIn = (input: typeof Event.RealtimeEvent.Encoded, span: Tracer.Span) =>
    Effect.clockWith((fiberClock): Effect.Effect<Published, PublishError> => {
      const at = acceptedAt()
      const prepared = prepare(input, fiberClock.unsafeCurrentTimeMillis())
      if (prepared._tag === "Left") return Effect.fail(prepared.left)
      const { event, frame, id, key } = prepared.right
      span.attribute("saacms.realtime.key", key)
      return Effect.flatMap(buffer.append(key, { id, frame }), (entry) => {
        Metrics.framesPublished.unsafeUpdate(1, [])
        span.attribute("saacms.realtime.seq", entry.seq)
        const published: Published = { key, id, seq: entry.seq }
        // Over Redis the record's channel brings it here too, in order with
        // other instances' publishes: handing it over now would only make gaps.
        const handed = buffer.liveFromSource ? Effect.void : hub.publish(key, { seq: entry.seq, frame, event, at })
        if (!collections) return Effect.as(handed, published)
        // Then the collection's history, after the record's: one record's
        // events reach it in the order the record's history has them.
        const collection = Event.collectionKey(event.slug)
        const entryFrame = Frame.collectionEntry(event, id, frame)
        return Effect.as(
          Effect.zipRight(
            handed,
            Effect.flatMap(buffer.append(collection, { id, frame: entryFrame }), (entry) =>
              buffer.liveFromSource ? Effect.void : hub.publish(collection, { seq: entry.seq, frame: entryFrame, event, at }))
          ),
          published
        )
      })
    })
  // One span per publish (none per frame, none per subscriber); a light one:
  // publish is a hot path, and nothing inside it opens spans of its own.
  const publish: Realtime["Type"]["publish"] = (input) =>
    Tracing.light("saacms.realtime.publish", (span) => publishIn(input, span))

  const append = buffer.liveFromSource ? undefined : buffer.unsafeAppend
  // No fiber, so no span: only the metrics.
  const unsafePublish: Realtime["Type"]["unsafePublish"] = append === undefined ? undefined : (input) => {
    const at = acceptedAt()
    const now = clock.unsafeCurrentTimeMillis()
    return Either.map(prepare(input, now), ({ event, frame, id, key }) => {
      const { seq } = append(key, { id, frame }, now)
      Metrics.framesPublished.unsafeUpdate(1, [])
      hub.unsafePublish(key, { seq, frame, event, at })
      if (collections) {
        const collection = Event.collectionKey(event.slug)
        const entryFrame = Frame.collectionEntry(event, id, frame)
        hub.unsafePublish(collection, {
          seq: append(collection, { id, frame: entryFrame }, now).seq,
          frame: entryFrame,
          event,
          at
        })
      }
      return { key, id, seq }
    })
  }

  // Jittered, so that clients cut off together do not all come back at once.
  const retryFrame = config.retryMs > 0
    ? Effect.map(Random.nextIntBetween(0, config.retryJitterMs + 1), (jitter) => Frame.retry(config.retryMs + jitter))
    : Effect.succeed(undefined)

  // Gapless handoff: the subscriber is registered for live frames first, then
  // its position is read; what follows it (published before or since) comes
  // from the history as its client drains, then live frames, by sequence number.
  const prime = (
    subscriber: Hub.Subscriber,
    key: Event.ResourceKey,
    last: string | undefined,
    grant: Grant | undefined,
    opening = true
  ) => {
    applyGrant(subscriber, key, grant)
    return Effect.zipWith(buffer.since(key, last), opening ? retryFrame : noRetry, (since, retry) => {
      const frames = opening ? [Frame.keepalive] : []
      if (retry !== undefined) frames.push(retry)
      if (since._tag === "Resync") {
        frames.push(Frame.resync(since.newestId))
        Metrics.resyncsSent.unsafeUpdate(1, [])
      }
      // The opening is this subscriber's own (its retry hint is drawn for it): one chunk.
      const from = since._tag === "Resync" ? since.lastSeq : since.fromSeq
      subscriber.begin(from, since.lastSeq, frames.length === 0 ? undefined : Frame.concat(frames))
      return subscriber
    })
  }

  // Where a multiplexed stream's topic starts: at the head (no position), or
  // after its position when the history holds it (its event's id checks
  // out), else at the head with a resync.
  const one = { maxBytes: 1, maxFrames: 1 }
  // A read past any head is `Gone` with the head's number and id.
  const headOf = (key: Event.ResourceKey) =>
    Effect.map(buffer.read(key, Number.MAX_SAFE_INTEGER, one), (read) => ({
      seq: read.lastSeq,
      id: read._tag === "Gone" ? read.newestId : ""
    }))
  const locate = (
    key: Event.ResourceKey,
    position: Multiplex.Position | undefined
  ): Effect.Effect<Located, RealtimeError.Unavailable> => {
    if (position === undefined) {
      return Effect.map(headOf(key), (head) => ({
        status: "fresh",
        from: head.seq,
        head: head.seq,
        check: head.seq === 0 ? 0 : Frame.check(head.id),
        newestId: head.id
      }))
    }
    if (position.seq === 0) {
      return Effect.map(headOf(key), (head) => ({ status: "resumed", from: 0, head: head.seq, check: 0, newestId: head.id }))
    }
    return Effect.flatMap(buffer.read(key, position.seq - 1, one), (read): Effect.Effect<Located, RealtimeError.Unavailable> => {
      if (read._tag === "Entries") {
        const entry = read.entries[0]
        if (entry !== undefined && entry.seq === position.seq && Frame.check(entry.id) === position.check) {
          return Effect.succeed({ status: "resumed", from: position.seq, head: read.lastSeq, check: position.check, newestId: "" })
        }
        return Effect.map(headOf(key), (head) => ({
          status: "resync",
          from: head.seq,
          head: head.seq,
          check: position.check,
          newestId: head.id
        }))
      }
      // The client saw the newest event, whose entry is gone: it missed nothing.
      if (read.lastSeq === position.seq && Frame.check(read.newestId) === position.check) {
        return Effect.succeed({ status: "resumed", from: position.seq, head: read.lastSeq, check: position.check, newestId: "" })
      }
      return Effect.succeed({ status: "resync", from: read.lastSeq, head: read.lastSeq, check: position.check, newestId: read.newestId })
    })
  }

  const openMany: Realtime["Type"]["openMany"] = (requests, cursor) =>
    Effect.suspend((): Effect.Effect<Subscriber, SubscribeError> => {
      const topics = requests.map((request) => request.topic)
      // Without its history a collection topic would have no sequence to follow.
      const collection = collections ? undefined : topics.find((topic) => topic.id === undefined)
      if (collection !== undefined) {
        return Effect.fail(
          new RealtimeError.InvalidTopic({ reason: `${collection.topic}: collection topics need collectionHistory` })
        )
      }
      const hash = Multiplex.listHash(topics)
      const positions = cursor === undefined ? Either.right(undefined) : Multiplex.decodeCursor(cursor, hash, topics.length)
      if (positions._tag === "Left") return Effect.fail(positions.left)
      const given = positions.right
      const slots = topics.map((topic) => new Mux.Slot(topic))
      const stream = new Mux.Stream(slots, hash)
      const allowed: Array<number> = []
      requests.forEach((request, i) => {
        if (request.denied === undefined) allowed.push(i)
      })
      return Effect.uninterruptible(Effect.gen(function*() {
        for (const i of allowed) {
          const subscriber = yield* hub.join(requests[i]!.topic.key)
          applyGrant(subscriber, requests[i]!.topic.key, requests[i]!.grant)
          stream.adopt(slots[i]!, Mailbox.fromSubscriber(subscriber), i)
        }
        const located = yield* Effect.forEach(allowed, (i) => locate(topics[i]!.key, given?.[i]), { concurrency: "unbounded" })
        const retry = yield* retryFrame
        // Positions before any frame: a resync moves its topic on in its own frame.
        slots.forEach((slot, i) => {
          const position = given?.[i]
          if (position !== undefined) slot.moveTo(position.seq, position.check)
        })
        allowed.forEach((i, n) => {
          const at = located[n]!
          if (at.status === "fresh") slots[i]!.moveTo(at.head, at.check)
        })
        const statuses: Array<"fresh" | "resumed" | "resync" | "denied"> = topics.map(() => "denied")
        allowed.forEach((i, n) => {
          statuses[i] = located[n]!.status
        })
        const opening = [Frame.keepalive]
        if (retry !== undefined) opening.push(retry)
        opening.push(Frame.welcome(topics.map((topic, i) => ({ topic: topic.topic, status: statuses[i]! })), stream.cursor()))
        requests.forEach((request) => {
          if (request.denied !== undefined) {
            opening.push(Frame.topicDenied(request.topic.topic, request.denied.status, request.denied.reason))
          }
        })
        stream.write(Frame.concat(opening))
        allowed.forEach((i, n) => {
          const at = located[n]!
          const subscriber = slots[i]!.mailbox
          if (subscriber === undefined) return
          if (at.status === "resync") {
            stream.write(stream.resync(subscriber, at.newestId, at.head))
            Metrics.resyncsSent.unsafeUpdate(1, [])
          }
          subscriber.begin(at.from, at.head, undefined)
        })
        if (allowed.length === 0) stream.close()
        return stream as Subscriber
      }).pipe(Effect.tapErrorCause(() => Effect.sync(() => stream.close()))))
    })

  const lastId = (lastEventId: string | undefined) =>
    lastEventId === undefined ? noId : Event.decodeLastEventId(lastEventId)

  // A subscriber whose position cannot be read is released at once.
  const primed = (
    subscriber: Hub.Subscriber,
    key: Event.ResourceKey,
    last: string | undefined,
    grant: Grant | undefined,
    opening?: boolean
  ) => Effect.tapError(prime(subscriber, key, last, grant, opening), () => Effect.sync(() => subscriber.close()))

  const open: Realtime["Type"]["open"] = (key, lastEventId, grant, options) =>
    Effect.flatMap(lastId(lastEventId), (last) =>
      Effect.uninterruptible(
        Effect.flatMap(hub.join(key, options), (subscriber) => primed(subscriber, key, last, grant, options?.opening !== false))
      ))

  const subscribe: Realtime["Type"]["subscribe"] = (key, lastEventId, grant) =>
    Stream.unwrapScoped(Effect.gen(function*() {
      const last = yield* lastId(lastEventId)
      const subscriber = yield* Effect.flatMap(hub.subscribe(key), (subscriber) => primed(subscriber, key, last, grant))
      return framesOf(subscriber)
    }))

  return Realtime.of({ publish, unsafePublish, open, openMany, subscribe })
})

interface Located {
  readonly status: "fresh" | "resumed" | "resync"
  /** The stream goes on after this sequence number. */
  readonly from: number
  readonly head: number
  /** The check of the position the client holds before any frame of this stream. */
  readonly check: number
  readonly newestId: string
}

// A grant's expiry and per-event check on a subscriber of `key` (a record or a collection).
const applyGrant = (subscriber: Hub.Subscriber, key: Event.ResourceKey, grant: Grant | undefined) => {
  if (grant?.expiresAt !== undefined) subscriber.expiresAt = grant.expiresAt
  const canSee = grant?.canSee
  if (canSee === undefined) return
  const collection = Event.isCollectionKey(key)
  subscriber.canSee = (event, frame) => {
    try {
      // A replayed event is read back from its frame.
      const decoded = event ?? (collection ? Frame.decodeCollectionEntry(frame) : Frame.decode(key, frame))
      return decoded !== undefined && canSee(decoded as Event.RealtimeEvent)
    } catch {
      return false
    }
  }
}

// Each pull takes every frame waiting, as one chunk of the shared frames.
const framesOf = (subscriber: Hub.Subscriber | Outlet.Outlet): Stream.Stream<Uint8Array> => {
  const woken = Effect.async<void>((resume) => {
    subscriber.onWake(() => resume(Effect.void))
    return Effect.sync(() => subscriber.onWake(undefined))
  })
  const pull: Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<never>> = Effect.suspend(() => {
    const frames = subscriber.poll()
    if (frames !== undefined) return Effect.succeed(Chunk.unsafeFromArray(frames))
    if (subscriber.done) return Effect.fail(Option.none())
    // Back for more with nothing waiting: the last chunk was written.
    subscriber.drained()
    return Effect.zipRight(woken, pull)
  })
  return Stream.repeatEffectChunkOption(pull)
}

/**
 * An open subscription's frames as an Effect `Stream`, for servers that write
 * streams (Node); ending the stream (its client left) ends the subscription.
 * Open first, then stream: a refusal is known before the response starts.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toStream = (subscriber: Subscriber): Stream.Stream<Uint8Array, RealtimeError.Unavailable> =>
  (subscriber instanceof Outlet.Outlet
    ? framesOf(subscriber)
    : Stream.fromReadableStream({
      evaluate: () => subscriber.toReadableStream(),
      onError: (error) => new RealtimeError.Unavailable({ reason: String(error) })
    })).pipe(Stream.ensuring(Effect.sync(() => subscriber.close())))

/**
 * `Realtime` over whatever `ReplayBuffer` and `Hub` are provided.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Realtime, never, ReplayBuffer.ReplayBuffer | Hub.Hub> = Layer.effect(Realtime, make)

/**
 * The whole core (`Realtime`, `Hub`, `Heartbeat`) over the given buffer, with
 * the `RealtimeConfig` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerOver = <E, R>(
  buffer: Layer.Layer<ReplayBuffer.ReplayBuffer, E, R>
): Layer.Layer<Realtime | Hub.Hub | ReplayBuffer.ReplayBuffer | Heartbeat.Heartbeat, E, R> =>
  layer.pipe(
    Layer.provideMerge(Hub.layer),
    Layer.provideMerge(Layer.merge(buffer, Heartbeat.layer))
  )

/**
 * The whole core in one process: in-memory buffer, hub and heartbeat, with the
 * `RealtimeConfig` in context (the defaults unless provided).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<Realtime | Hub.Hub | ReplayBuffer.ReplayBuffer | Heartbeat.Heartbeat> = layerOver(
  ReplayBuffer.layerMemory
)
