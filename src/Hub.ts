/**
 * Per-record fan-out. A record's topic (its subscribers and its heartbeat) is
 * created with its first subscriber and released with its last. Publishing hands the one encoded frame to every subscriber's
 * bounded mailbox synchronously; publishing to a record nobody watches costs a
 * map lookup.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type * as Event from "./Event.js"
import * as Frame from "./Frame.js"
import * as Heartbeat from "./Heartbeat.js"
import * as Mailbox from "./internal/mailbox.js"
import * as RealtimeConfig from "./RealtimeConfig.js"
import * as RealtimeError from "./RealtimeError.js"

/**
 * What flows to subscribers: an encoded frame and its per-record sequence
 * number (`0` for frames outside the sequence, such as `:keepalive`).
 *
 * @since 0.1.0
 * @category models
 */
export type Message = Mailbox.Message

/**
 * A subscriber's bounded inbox (see `Realtime.open`).
 *
 * @since 0.1.0
 * @category models
 */
export type Subscriber = Mailbox.Mailbox

/**
 * The heartbeat message.
 *
 * @since 0.1.0
 * @category models
 */
export const keepalive: Message = { seq: 0, frame: Frame.keepalive }

const revokedExpired = Frame.revoked("expired")
const revokedForbidden = Frame.revoked("forbidden")

/**
 * @since 0.1.0
 * @category tags
 */
export class Hub extends Context.Tag("@saacms/realtime/Hub")<Hub, {
  /** Hand `message` to every current subscriber of `key`. */
  readonly publish: (key: Event.ResourceKey, message: Message) => Effect.Effect<void>
  /** A new subscriber of `key`, registered until the scope closes (then its mailbox closes too). */
  readonly subscribe: (key: Event.ResourceKey) => Effect.Effect<Subscriber, RealtimeError.TooManySubscribers, Scope.Scope>
  /**
   * A new subscriber of `key`, registered until its mailbox closes: the client
   * cancels its stream, it falls too far behind, or the hub shuts down. For
   * adapters that hand the mailbox to a socket and hold no fiber per client.
   */
  readonly join: (key: Event.ResourceKey) => Effect.Effect<Subscriber, RealtimeError.TooManySubscribers>
  /** Current subscribers of `key`. */
  readonly subscriberCount: (key: Event.ResourceKey) => Effect.Effect<number>
  /** Current subscribers over all records. */
  readonly totalSubscribers: Effect.Effect<number>
  /** Records with at least one subscriber. */
  readonly activeKeys: Effect.Effect<number>
}>() {}

/**
 * Subscribers over all records, as an Effect metric.
 *
 * @since 0.1.0
 * @category metrics
 */
export const subscribersGauge = Metric.gauge("saacms_realtime_subscribers", {
  description: "Open realtime subscriptions"
})

/**
 * Subscribers whose stream ended because they fell `queueCapacity` frames
 * behind, or took nothing for a whole heartbeat interval while frames waited.
 *
 * @since 0.1.0
 * @category metrics
 */
export const slowSubscribers = Metric.counter("saacms_realtime_slow_subscribers", {
  description: "Streams ended because the subscriber fell too far behind"
})

interface Topic {
  readonly subscribers: Set<Subscriber>
  /** Holds the record's heartbeat (set by the subscribe that created the topic). */
  scope: Scope.CloseableScope | undefined
}

/**
 * The bounds a hub enforces (see `RealtimeConfig.Resolved`).
 *
 * @since 0.1.0
 * @category models
 */
export type Limits = Pick<RealtimeConfig.Resolved, "queueCapacity" | "maxSubscribersPerKey" | "maxSubscribers">

/**
 * A hub whose subscribers each hold at most `queueCapacity` pending frames; one
 * that falls further behind has its mailbox closed at the last frame it can
 * hold (it reconnects and replays), so the publisher never waits and memory
 * stays bounded. Joining beyond `maxSubscribersPerKey` or `maxSubscribers` fails.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (limits: Limits): Effect.Effect<Hub["Type"], never, Scope.Scope | Heartbeat.Heartbeat> =>
  Effect.gen(function*() {
    const heartbeat = yield* Heartbeat.Heartbeat
    const hubScope = yield* Effect.scope
    const topics = new Map<Event.ResourceKey, Topic>()
    let total = 0

    // Read only for subscribers with an expiry: the hot path reads no clock.
    const clock = yield* Effect.clock

    // A subscriber whose access ended gets `saacms-revoked` instead of the frame,
    // then ends. The heartbeat's `:keepalive` goes through here too, so an
    // expired grant on a quiet record ends within one heartbeat interval.
    const admits = (subscriber: Subscriber, message: Message): boolean => {
      if (subscriber.expiresAt !== Infinity && subscriber.expiresAt <= clock.unsafeCurrentTimeMillis()) {
        subscriber.finish(revokedExpired)
        return false
      }
      if (subscriber.canSee !== undefined && message.event !== undefined && !subscriber.canSee(message.event)) {
        subscriber.finish(revokedForbidden)
        return false
      }
      return true
    }

    const publish = (key: Event.ResourceKey, message: Message) =>
      Effect.suspend(() => {
        const topic = topics.get(key)
        if (topic === undefined) return Effect.void
        let slow = 0
        for (const subscriber of topic.subscribers) {
          const admitted = subscriber.expiresAt === Infinity && subscriber.canSee === undefined ||
            admits(subscriber, message)
          if (admitted && !subscriber.offer(message)) slow++
        }
        return slow === 0 ? Effect.void : Effect.zipRight(
          Metric.incrementBy(slowSubscribers, slow),
          Effect.logDebug("subscribers fell behind; their streams end at the last frame they hold").pipe(
            Effect.annotateLogs({ key, slow })
          )
        )
      })

    // Each heartbeat first ends the subscribers that took nothing over the last
    // interval while frames waited (workerd, for one, never says a client left).
    const releaseStalled = (key: Event.ResourceKey) =>
      Effect.suspend(() => {
        const topic = topics.get(key)
        if (topic === undefined) return Effect.void
        let stalled = 0
        for (const subscriber of topic.subscribers) {
          if (subscriber.checkStalled()) stalled++
        }
        return stalled === 0 ? Effect.void : Effect.zipRight(
          Metric.incrementBy(slowSubscribers, stalled),
          Effect.logDebug("subscribers took nothing for a heartbeat interval; their streams end").pipe(
            Effect.annotateLogs({ key, stalled })
          )
        )
      })

    // Shutdown ends every open stream cleanly.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const topic of topics.values()) {
          for (const subscriber of topic.subscribers) subscriber.close()
        }
      })
    )

    const count = (delta: number) =>
      Effect.suspend(() => {
        total += delta
        return Metric.set(subscribersGauge, total)
      })

    // A record's topic lives from its first subscriber to its last, with its
    // heartbeat. Joining is one synchronous step, so first subscribers arriving
    // together always share one topic.
    const register = (key: Event.ResourceKey, subscriber: Subscriber) =>
      Effect.suspend(() => {
        const existing = topics.get(key)
        if (existing !== undefined) {
          existing.subscribers.add(subscriber)
          return count(1)
        }
        const topic: Topic = { subscribers: new Set([subscriber]), scope: undefined }
        topics.set(key, topic)
        return Effect.zipRight(
          count(1),
          // A child of the hub's scope: shutdown stops every heartbeat too.
          Effect.flatMap(Scope.fork(hubScope, ExecutionStrategy.sequential), (scope) => {
            topic.scope = scope
            return Scope.extend(heartbeat.keep(Effect.zipRight(releaseStalled(key), publish(key, keepalive))), scope)
          })
        )
      })

    const leave = (key: Event.ResourceKey, subscriber: Subscriber) =>
      Effect.suspend(() => {
        subscriber.close()
        const topic = topics.get(key)
        if (topic === undefined || !topic.subscribers.delete(subscriber)) return Effect.void
        if (topic.subscribers.size > 0) return count(-1)
        topics.delete(key)
        return topic.scope === undefined ? count(-1) : Effect.zipRight(count(-1), Scope.close(topic.scope, Exit.void))
      })

    // Mailboxes that close on their own (client gone, too slow) are released
    // by one fiber for the whole hub, woken by a callback: no fiber per client.
    let closed: Array<readonly [Event.ResourceKey, Subscriber]> = []
    let wakeReaper: (() => void) | undefined
    const reaped = Effect.async<void>((resume) => {
      if (closed.length > 0) return resume(Effect.void)
      wakeReaper = () => {
        wakeReaper = undefined
        resume(Effect.void)
      }
    })
    yield* Effect.forkScoped(Effect.interruptible(Effect.forever(Effect.zipRight(
      reaped,
      Effect.suspend(() => {
        const batch = closed
        closed = []
        return Effect.forEach(batch, ([key, subscriber]) => leave(key, subscriber), { discard: true })
      })
    ))))

    const join = (key: Event.ResourceKey) =>
      Effect.suspend(() => {
        if (total >= limits.maxSubscribers) {
          return Effect.fail(new RealtimeError.TooManySubscribers({ scope: "process", limit: limits.maxSubscribers }))
        }
        if ((topics.get(key)?.subscribers.size ?? 0) >= limits.maxSubscribersPerKey) {
          return Effect.fail(new RealtimeError.TooManySubscribers({ scope: "key", limit: limits.maxSubscribersPerKey }))
        }
        const subscriber = new Mailbox.Mailbox(limits.queueCapacity)
        subscriber.onClose(() => {
          closed.push([key, subscriber])
          wakeReaper?.()
        })
        return Effect.as(register(key, subscriber), subscriber)
      })

    return Hub.of({
      publish,
      join,
      subscribe: (key) => Effect.acquireRelease(join(key), (subscriber) => leave(key, subscriber)),
      subscriberCount: (key) => Effect.sync(() => topics.get(key)?.subscribers.size ?? 0),
      totalSubscribers: Effect.sync(() => total),
      activeKeys: Effect.sync(() => topics.size)
    })
  })

/**
 * The hub, with the bounds of `RealtimeConfig`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Hub, never, Heartbeat.Heartbeat> = Layer.scoped(
  Hub,
  Effect.flatMap(RealtimeConfig.RealtimeConfig, make)
)
