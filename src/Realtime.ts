/**
 * The service hosts use: `publish` a record event, `subscribe` to a record's
 * SSE bytes (with replay after a last event id). Composed from `ReplayBuffer`,
 * `Hub` and `Heartbeat`.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Stream from "effect/Stream"
import * as Event from "./Event.js"
import * as Frame from "./Frame.js"
import * as Heartbeat from "./Heartbeat.js"
import * as Hub from "./Hub.js"
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
 * The errors of `open` and `subscribe`.
 *
 * @since 0.1.0
 * @category errors
 */
export type SubscribeError =
  | RealtimeError.InvalidLastEventId
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
   * Register a subscriber of `key`, primed with what it is owed after
   * `lastEventId`, until it closes (its client leaves, it falls
   * `queueCapacity` frames behind, its grant ends, or the service shuts down).
   * The low-level form of `subscribe`, for adapters that write to a socket themselves.
   */
  readonly open: (
    key: Event.ResourceKey,
    lastEventId?: string | undefined,
    grant?: Grant | undefined
  ) => Effect.Effect<Subscriber, SubscribeError>
  /**
   * The SSE bytes for one record: `:keepalive`, `retry:`, then what the
   * client missed after `lastEventId` (or one `saacms-resync` frame), then
   * live frames. Ends when the subscriber falls `queueCapacity` frames behind
   * (it reconnects and replays), when its grant ends, or when the service shuts down.
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
  // Publishes are serialised so that every record's sequence numbers reach the
  // hub in the order the buffer assigned them (subscribers rely on it).
  const lock = yield* Effect.makeSemaphore(1)
  let counter = 0

  const publish: Realtime["Type"]["publish"] = (input) =>
    Effect.gen(function*() {
      const { event, key } = yield* Event.decode(input)
      const etag = event.type === "deleted" ? undefined : event.etag
      const id = etag !== undefined && etag !== "" ? etag : `${yield* Clock.currentTimeMillis}-${++counter}`
      const frame = yield* Either.match(Frame.encode(event, id), { onLeft: Effect.fail, onRight: Effect.succeed })
      if (frame.byteLength > config.maxFrameBytes) {
        return yield* new RealtimeError.FrameTooLarge({ bytes: frame.byteLength, maxBytes: config.maxFrameBytes })
      }
      const entry = yield* lock.withPermits(1)(
        Effect.tap(buffer.append(key, { id, frame }), (entry) => hub.publish(key, { seq: entry.seq, frame, event }))
      )
      return { key, id, seq: entry.seq }
    })

  // Gapless handoff: the subscriber is registered for live frames first, then
  // the history is read; it drops live frames the history covered (by sequence number).
  const prime = (subscriber: Hub.Subscriber, key: Event.ResourceKey, last: string | undefined, grant: Grant | undefined) =>
    Effect.gen(function*() {
      if (grant?.expiresAt !== undefined) subscriber.expiresAt = grant.expiresAt
      const canSee = grant?.canSee
      if (canSee !== undefined) {
        subscriber.canSee = (event) => {
          try {
            return canSee(event as Event.RealtimeEvent)
          } catch {
            return false
          }
        }
      }
      const since = yield* buffer.since(key, last)
      const opening = [Frame.keepalive]
      if (config.retryMs > 0) {
        // Jittered, so that clients cut off together do not all come back at once.
        opening.push(Frame.retry(config.retryMs + (yield* Random.nextIntBetween(0, config.retryJitterMs + 1))))
      }
      subscriber.begin(
        since.lastSeq,
        since._tag === "Resync"
          ? [...opening, Frame.resync(since.newestId)]
          : [...opening, ...since.entries.map((entry) => entry.frame)]
      )
      return subscriber
    })

  const lastId = (lastEventId: string | undefined) =>
    lastEventId === undefined ? Effect.succeed(undefined) : Event.decodeLastEventId(lastEventId)

  const open: Realtime["Type"]["open"] = (key, lastEventId, grant) =>
    Effect.flatMap(lastId(lastEventId), (last) =>
      Effect.uninterruptible(Effect.flatMap(hub.join(key), (subscriber) => prime(subscriber, key, last, grant))))

  const subscribe: Realtime["Type"]["subscribe"] = (key, lastEventId, grant) =>
    Stream.unwrapScoped(Effect.gen(function*() {
      const last = yield* lastId(lastEventId)
      const subscriber = yield* Effect.flatMap(hub.subscribe(key), (subscriber) => prime(subscriber, key, last, grant))
      return Stream.repeatEffectOption(Effect.async<Uint8Array, Option.Option<never>>((resume) => {
        const take = () => {
          const chunk = subscriber.poll()
          if (chunk !== undefined) resume(Effect.succeed(chunk))
          else if (subscriber.done) resume(Effect.fail(Option.none()))
          else subscriber.onWake(take)
        }
        take()
        return Effect.sync(() => subscriber.onWake(undefined))
      }))
    }))

  return Realtime.of({ publish, open, subscribe })
})

/**
 * `Realtime` over whatever `ReplayBuffer` and `Hub` are provided.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Realtime, never, ReplayBuffer.ReplayBuffer | Hub.Hub> = Layer.effect(Realtime, make)

/**
 * The whole core in one process: in-memory buffer, hub and heartbeat, with the
 * `RealtimeConfig` in context (the defaults unless provided).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<Realtime | Hub.Hub | ReplayBuffer.ReplayBuffer | Heartbeat.Heartbeat> = layer.pipe(
  Layer.provideMerge(Layer.merge(ReplayBuffer.layerMemory, Hub.layer)),
  Layer.provideMerge(Heartbeat.layer)
)
