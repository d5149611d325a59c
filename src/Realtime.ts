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
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
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
 * @since 0.1.0
 * @category tags
 */
export class Realtime extends Context.Tag("@saacms/realtime/Realtime")<Realtime, {
  /** Validate, encode once, buffer and fan out one record event. */
  readonly publish: (
    event: typeof Event.RealtimeEvent.Encoded
  ) => Effect.Effect<Published, RealtimeError.InvalidEvent | RealtimeError.InvalidResourceKey | RealtimeError.FrameTooLarge>
  /**
   * The SSE bytes for one record: `:keepalive`, then what the client missed
   * after `lastEventId` (or one `saacms-resync` frame), then live frames.
   * Ends when the subscriber falls behind the record's queue (it reconnects and
   * replays) or when the service shuts down.
   */
  readonly subscribe: (
    key: Event.ResourceKey,
    lastEventId?: string | undefined
  ) => Stream.Stream<Uint8Array, RealtimeError.InvalidLastEventId>
}>() {}

/**
 * Subscribers whose stream ended because they fell behind.
 *
 * @since 0.1.0
 * @category metrics
 */
export const slowSubscribers = Metric.counter("saacms_realtime_slow_subscribers", {
  description: "Streams ended at a sequence gap (subscriber too slow)"
})

const maxBatch = 1024

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
        Effect.tap(buffer.append(key, { id, frame }), (entry) => hub.publish(key, entry))
      )
      return { key, id, seq: entry.seq }
    })

  const subscribe: Realtime["Type"]["subscribe"] = (key, lastEventId) =>
    Stream.unwrapScoped(Effect.gen(function*() {
      const last = lastEventId === undefined ? undefined : yield* Event.decodeLastEventId(lastEventId)
      // Gapless handoff: register for live frames first, then read the history,
      // then drop live frames the history already covered (by sequence number).
      const queue = yield* hub.subscribe(key)
      const since = yield* buffer.since(key, last)
      const opening = since._tag === "Resync"
        ? [Frame.keepalive, Frame.resync(since.newestId)]
        : [Frame.keepalive, ...since.entries.map((entry) => entry.frame)]
      let lastSeq = since.lastSeq
      let ended = false

      const next = Effect.catchAllCause(
        Queue.takeBetween(queue, 1, maxBatch),
        (cause) => Effect.flatMap(Queue.isShutdown(queue), (down) => down ? Effect.as(Effect.void, undefined) : Effect.failCause(cause))
      )
      const live = Stream.repeatEffectOption(Effect.gen(function*() {
        if (ended) return yield* Effect.fail(Option.none())
        const messages = yield* next
        if (messages === undefined) return yield* Effect.fail(Option.none())
        const frames: Array<Uint8Array> = []
        for (const message of messages) {
          if (message.seq === 0) {
            frames.push(message.frame)
          } else if (message.seq === lastSeq + 1) {
            frames.push(message.frame)
            lastSeq = message.seq
          } else if (message.seq > lastSeq + 1) {
            // No silent loss: the queue slid past frames this subscriber never
            // got. End the stream at the gap; the client replays from the buffer.
            ended = true
            yield* Metric.increment(slowSubscribers)
            yield* Effect.logDebug("subscriber fell behind; ending its stream at the gap").pipe(
              Effect.annotateLogs({ key, lastSeq, nextSeq: message.seq })
            )
            break
          }
        }
        if (frames.length === 0) {
          return ended ? yield* Effect.fail(Option.none()) : new Uint8Array(0)
        }
        return concat(frames)
      })).pipe(Stream.filter((bytes) => bytes.byteLength > 0))

      return Stream.concat(Stream.succeed(concat(opening)), live)
    }))

  return Realtime.of({ publish, subscribe })
})

const concat = (frames: ReadonlyArray<Uint8Array>): Uint8Array => {
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
