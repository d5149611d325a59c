/**
 * Per-record fan-out. A record's `PubSub` is created with its first subscriber
 * and released with its last (an `RcMap`), together with its heartbeat.
 * Publishing to a record nobody watches costs a map lookup.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as PubSub from "effect/PubSub"
import type * as Queue from "effect/Queue"
import * as RcMap from "effect/RcMap"
import type * as Scope from "effect/Scope"
import type * as Event from "./Event.js"
import * as Frame from "./Frame.js"
import * as Heartbeat from "./Heartbeat.js"
import * as RealtimeConfig from "./RealtimeConfig.js"

/**
 * What flows to subscribers: an encoded frame and its per-record sequence
 * number (`0` for frames outside the sequence, such as `:keepalive`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Message {
  readonly seq: number
  readonly frame: Uint8Array
}

/**
 * The heartbeat message.
 *
 * @since 0.1.0
 * @category models
 */
export const keepalive: Message = { seq: 0, frame: Frame.keepalive }

/**
 * @since 0.1.0
 * @category tags
 */
export class Hub extends Context.Tag("@saacms/realtime/Hub")<Hub, {
  /** Hand `message` to every current subscriber of `key`. */
  readonly publish: (key: Event.ResourceKey, message: Message) => Effect.Effect<void>
  /** Receive the messages of `key` published from now on, until the scope closes. */
  readonly subscribe: (key: Event.ResourceKey) => Effect.Effect<Queue.Dequeue<Message>, never, Scope.Scope>
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

interface Topic {
  readonly pubsub: PubSub.PubSub<Message>
  subscribers: number
}

/**
 * A hub of sliding `PubSub`s of `queueCapacity` messages: a slow subscriber
 * loses its oldest messages (and notices the sequence gap) instead of blocking
 * the publisher or growing without bound.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Hub["Type"], never, Scope.Scope | Heartbeat.Heartbeat> = Effect.gen(function*() {
  const config = yield* RealtimeConfig.RealtimeConfig
  const heartbeat = yield* Heartbeat.Heartbeat
  const topics = new Map<Event.ResourceKey, Topic>()
  let total = 0

  const rcMap = yield* RcMap.make({
    lookup: (key: Event.ResourceKey) =>
      Effect.gen(function*() {
        const pubsub = yield* Effect.acquireRelease(
          PubSub.sliding<Message>(config.queueCapacity),
          PubSub.shutdown
        )
        const topic: Topic = { pubsub, subscribers: 0 }
        yield* Effect.acquireRelease(
          Effect.sync(() => topics.set(key, topic)),
          () => Effect.sync(() => topics.delete(key))
        )
        yield* heartbeat.keep(PubSub.publish(pubsub, keepalive))
        return topic
      })
  })

  const count = (topic: Topic, delta: number) =>
    Effect.suspend(() => {
      topic.subscribers += delta
      total += delta
      return Metric.set(subscribersGauge, total)
    })

  return Hub.of({
    publish: (key, message) =>
      Effect.suspend(() => {
        const topic = topics.get(key)
        return topic === undefined ? Effect.void : Effect.asVoid(PubSub.publish(topic.pubsub, message))
      }),
    subscribe: (key) =>
      Effect.gen(function*() {
        const topic = yield* RcMap.get(rcMap, key)
        const queue = yield* PubSub.subscribe(topic.pubsub)
        yield* Effect.acquireRelease(count(topic, 1), () => count(topic, -1))
        return queue
      }),
    subscriberCount: (key) => Effect.sync(() => topics.get(key)?.subscribers ?? 0),
    totalSubscribers: Effect.sync(() => total),
    activeKeys: Effect.sync(() => topics.size)
  })
})

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Hub, never, Heartbeat.Heartbeat> = Layer.scoped(Hub, make)
