/**
 * Per-record fan-out. A record's topic (its set of subscribers) exists from
 * its first subscriber to its last; while it exists the record is retained in
 * the `ReplayBuffer`, so its sequence numbers never restart under a live
 * subscriber. Publishing batches the one encoded frame; at the end of the
 * turn of the event loop every subscriber's bounded mailbox gets what its
 * record's batch holds, as one shared chunk; publishing to a record nobody
 * watches costs a map lookup. Subscribers that fall behind read the record's
 * history as their clients drain, through one fiber for the whole hub.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import type * as Event from "./Event.js"
import * as Frame from "./Frame.js"
import * as Heartbeat from "./Heartbeat.js"
import * as Mailbox from "./internal/mailbox.js"
import { afterTurn } from "./internal/turn.js"
import * as Metrics from "./Metrics.js"
import * as RealtimeConfig from "./RealtimeConfig.js"
import * as RealtimeError from "./RealtimeError.js"
import * as ReplayBuffer from "./ReplayBuffer.js"

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

interface Topic {
  readonly subscribers: Set<Subscriber>
  /** Set while the record's live source is starting; joiners wait for it. */
  pending: Deferred.Deferred<void, RealtimeError.Unavailable> | undefined
  /** Messages published since the hub last handed them out. */
  batch: Array<Message>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Hub extends Context.Tag("@saacms/realtime/Hub")<Hub, {
  /** Hand `message` to every current subscriber of `key` (at the end of this turn of the event loop). */
  readonly publish: (key: Event.ResourceKey, message: Message) => Effect.Effect<void>
  /** `publish` as a plain call. */
  readonly unsafePublish: (key: Event.ResourceKey, message: Message) => void
  /** A new subscriber of `key`, registered until the scope closes (then its mailbox closes too). */
  readonly subscribe: (
    key: Event.ResourceKey
  ) => Effect.Effect<Subscriber, RealtimeError.TooManySubscribers | RealtimeError.Unavailable, Scope.Scope>
  /**
   * A new subscriber of `key`, registered until its mailbox closes: the client
   * cancels its stream, it stalls, or the hub shuts down. For adapters that
   * hand the mailbox to a socket and hold no fiber per client.
   */
  readonly join: (
    key: Event.ResourceKey,
    options?: JoinOptions | undefined
  ) => Effect.Effect<Subscriber, RealtimeError.TooManySubscribers | RealtimeError.Unavailable>
  /** Current subscribers of `key`. */
  readonly subscriberCount: (key: Event.ResourceKey) => Effect.Effect<number>
  /** Current subscribers over all records. */
  readonly totalSubscribers: Effect.Effect<number>
  /** Records with at least one subscriber. */
  readonly activeKeys: Effect.Effect<number>
  /** Bytes waiting for clients, over all subscribers (each holds at most `maxQueuedBytes`). */
  readonly queuedBytes: Effect.Effect<number>
}>() {}

/**
 * How a subscriber joins. `heartbeat: false` is for a client that keeps its
 * connection alive by other means (a Durable Object's hibernatable socket,
 * answered by the runtime): it gets no `:keepalive`, is never ended as
 * stalled, and does not keep the hub's heartbeat running (a heartbeat would
 * keep the object from hibernating).
 *
 * @since 0.1.0
 * @category models
 */
export interface JoinOptions {
  readonly heartbeat?: boolean | undefined
}

/**
 * Subscribers over all records, as an Effect metric (`Metrics.subscribers`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const subscribersGauge = Metrics.subscribers

/**
 * Times a subscriber fell behind its bound, and subscribers ended as stalled
 * (`Metrics.slowSubscribers`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const slowSubscribers = Metrics.slowSubscribers

/**
 * The bounds a hub enforces (see `RealtimeConfig.Resolved`).
 *
 * @since 0.1.0
 * @category models
 */
export type Limits = Pick<
  RealtimeConfig.Resolved,
  "queueCapacity" | "maxQueuedBytes" | "maxSubscribersPerKey" | "maxSubscribers"
>

/**
 * A hub whose subscribers each hold at most `queueCapacity` frames and
 * `maxQueuedBytes` bytes for their client; one that falls further behind
 * catches up from `buffer` as its client drains, so the publisher never waits
 * and memory stays bounded. Joining beyond `maxSubscribersPerKey` or
 * `maxSubscribers` fails. One heartbeat runs for the whole hub while any
 * record has subscribers.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  limits: Limits,
  buffer: ReplayBuffer.ReplayBuffer["Type"]
): Effect.Effect<Hub["Type"], never, Scope.Scope | Heartbeat.Heartbeat> =>
  Effect.gen(function*() {
    const heartbeat = yield* Heartbeat.Heartbeat
    const hubScope = yield* Effect.scope
    // The hub's own services: what its heartbeat fiber runs with, whichever
    // subscriber's request starts it.
    const hubContext = yield* Effect.context<Scope.Scope | Heartbeat.Heartbeat>()
    const topics = new Map<Event.ResourceKey, Topic>()
    const mailboxLimits: Mailbox.Limits = { maxFrames: limits.queueCapacity, maxBytes: limits.maxQueuedBytes }
    let total = 0

    // Read for subscribers with an expiry, and once per flush for the latency metric.
    const clock = yield* Effect.clock
    const millis = () => Number(clock.unsafeCurrentTimeNanos()) / 1_000_000
    const expired = (subscriber: Subscriber): boolean => {
      if (subscriber.expiresAt === Infinity || subscriber.expiresAt > clock.unsafeCurrentTimeMillis()) return false
      subscriber.finish("expired")
      return true
    }

    // Batching: what is published to a record within one turn of the event
    // loop is handed out together at the end of it (or as soon as the batches
    // hold `maxQueuedBytes`), so a burst reaches each subscriber as one chunk
    // and its socket in one write, while an idle subscriber holds nothing.
    let dirty: Array<Topic> = []
    let dirtyBytes = 0
    let scheduled = false
    const flush = () => {
      scheduled = false
      const ready = dirty
      dirty = []
      dirtyBytes = 0
      let slow = 0
      const batches: Array<ReadonlyArray<Message>> = new Array(ready.length)
      for (let i = 0; i < ready.length; i++) {
        const topic = ready[i]!
        const batch = topic.batch
        batches[i] = batch
        topic.batch = []
        if (batch.length === 1) {
          const message = batch[0]!
          for (const subscriber of topic.subscribers) {
            if (!expired(subscriber) && !subscriber.offer(message)) slow++
          }
        } else {
          const run = new Mailbox.Run(batch)
          for (const subscriber of topic.subscribers) {
            if (!expired(subscriber) && !subscriber.offerRun(run)) slow++
          }
        }
      }
      if (slow > 0) Metrics.slowSubscribers.unsafeUpdate(slow, [])
      // Metrics, once per flush: the frames handed on (counted in plain numbers
      // by the mailboxes), and each published frame's time from publish to here.
      reportDelivered()
      const now = millis()
      for (const batch of batches) {
        for (const message of batch) {
          if (message.at !== undefined) Metrics.publishLatency.unsafeUpdate(now - message.at, [])
        }
      }
    }
    const reportDelivered = () => {
      if (hooks.delivered > 0) {
        Metrics.framesDelivered.unsafeUpdate(hooks.delivered, [])
        hooks.delivered = 0
      }
    }
    const enqueue = (topic: Topic, message: Message) => {
      if (topic.batch.length === 0) dirty.push(topic)
      topic.batch.push(message)
      dirtyBytes += message.frame.byteLength
      if (dirtyBytes >= limits.maxQueuedBytes) flush()
      else if (!scheduled) {
        scheduled = true
        afterTurn(flush)
      }
    }

    const unsafePublish = (key: Event.ResourceKey, message: Message) => {
      const topic = topics.get(key)
      if (topic !== undefined) enqueue(topic, message)
    }

    // One heartbeat for the hub: each beat first ends the subscribers that took
    // nothing over the last interval while frames waited (workerd, for one,
    // never says a client left), then sends `:keepalive` to every active record.
    // An expired grant on a quiet record ends here too.
    const beat = Effect.suspend(() => {
      let stalled = 0
      for (const topic of topics.values()) {
        for (const subscriber of topic.subscribers) {
          if (!subscriber.heartbeat) continue
          if (subscriber.checkStalled()) stalled++
          else if (!expired(subscriber)) subscriber.offer(keepalive)
        }
      }
      return stalled === 0 ? Effect.void : Effect.zipRight(
        Effect.sync(() => Metrics.slowSubscribers.unsafeUpdate(stalled, [])),
        Effect.logDebug("subscribers took nothing for a heartbeat interval; their streams end").pipe(
          Effect.annotateLogs({ stalled })
        )
      )
    })
    // It runs while any subscriber needs it.
    let beaters = 0
    let beating: Scope.CloseableScope | undefined
    const startHeartbeat = Effect.flatMap(Scope.fork(hubScope, ExecutionStrategy.sequential), (scope) => {
      beating = scope
      // Forked in the hub's context, not the subscriber's: the beat fiber
      // keeps nothing of the request that started it (its span, its request).
      return Effect.locally(Scope.extend(heartbeat.keep(beat), scope), FiberRef.currentContext, hubContext)
    })
    const stopHeartbeat = Effect.suspend(() => {
      const scope = beating
      beating = undefined
      return scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
    })
    const beatsFor = (delta: number) => {
      beaters += delta
      return delta > 0 && beaters === delta ? startHeartbeat : delta < 0 && beaters === 0 ? stopHeartbeat : Effect.void
    }
    const beatersIn = (subscribers: Iterable<Subscriber>) => {
      let n = 0
      for (const subscriber of subscribers) if (subscriber.heartbeat) n++
      return n
    }

    // Backfills: subscribers behind read the history through one fiber, woken
    // by a callback (no fiber per client).
    let requests: Array<readonly [Subscriber, number, Mailbox.Limits, number]> = []
    let wakeBackfill: (() => void) | undefined
    const wake = () => {
      const resume = wakeBackfill
      wakeBackfill = undefined
      resume?.()
    }
    const backfill = (subscriber: Subscriber, afterSeq: number, want: Mailbox.Limits, generation: number) => {
      requests.push([subscriber, afterSeq, want, generation])
      wake()
    }
    yield* Effect.forkScoped(serve(() => requests.length > 0, (resume) => (wakeBackfill = resume), Effect.suspend(() => {
      const batch = requests
      requests = []
      // Reads that served frames, counted per read (not per frame), reported per batch.
      let served = 0
      return Effect.zipRight(
        Effect.forEach(batch, ([subscriber, afterSeq, want, generation]) =>
          buffer.read(subscriber.key, afterSeq, want).pipe(
            Effect.match({
              onFailure: () => subscriber.unavailable(generation),
              onSuccess: (read) => {
                if (read._tag === "Entries" && read.entries.length > 0) served++
                subscriber.fill(read, generation)
              }
            })
          ), { discard: true }),
        Effect.sync(() => {
          if (served > 0) Metrics.replaysServed.unsafeUpdate(served, [])
          reportDelivered()
        })
      )
    })))

    // Mailboxes that close on their own (client gone, stalled, revoked) are
    // released by one fiber for the whole hub.
    let closed: Array<Subscriber> = []
    let wakeReaper: (() => void) | undefined
    yield* Effect.forkScoped(serve(() => closed.length > 0, (resume) => (wakeReaper = resume), Effect.suspend(() => {
      const batch = closed
      closed = []
      return Effect.forEach(batch, (subscriber) => leave(subscriber), { discard: true })
    })))

    const hooks: Mailbox.Hooks = {
      delivered: 0,
      resynced: () => Metrics.resyncsSent.unsafeUpdate(1, []),
      backfill,
      closed: (subscriber) => {
        closed.push(subscriber)
        const resume = wakeReaper
        wakeReaper = undefined
        resume?.()
      }
    }

    // Shutdown hands out what is batched, then ends every open stream cleanly;
    // this hub's share of the gauges goes with it.
    let stopped = false
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        flush()
        for (const topic of topics.values()) {
          for (const subscriber of topic.subscribers) subscriber.close()
        }
        stopped = true
        Metrics.subscribers.unsafeModify(-total, [])
        Metrics.activeRecords.unsafeModify(-topics.size, [])
      })
    )

    // The gauges move by this hub's changes, so the hubs of a process add up.
    const count = (delta: number) =>
      Effect.sync(() => {
        total += delta
        if (!stopped) Metrics.subscribers.unsafeModify(delta, [])
      })
    const topicsChanged = (delta: number) => {
      if (!stopped) Metrics.activeRecords.unsafeModify(delta, [])
    }

    // What the record's live source tells its subscribers (frames published
    // elsewhere, a lost history, a reconnect).
    const liveOf = (topic: Topic): ReplayBuffer.Live => ({
      // Timed from its arrival here (it was published elsewhere, or came back from the backend).
      publish: (seq, frame) => enqueue(topic, { seq, frame, at: millis() }),
      reset: (newestId, seq) => {
        for (const subscriber of topic.subscribers) subscriber.reset(newestId, seq)
      },
      resume: (headSeq) => {
        for (const subscriber of topic.subscribers) subscriber.noteHead(headSeq)
      },
      end: () => {
        for (const subscriber of topic.subscribers) subscriber.close()
      }
    })

    // Joining registers synchronously, so first subscribers arriving together
    // always share one topic; the record is retained (its live source started)
    // before any of them reads its history, and later ones wait for that too.
    const register = (key: Event.ResourceKey, subscriber: Subscriber): Effect.Effect<void, RealtimeError.Unavailable> =>
      Effect.suspend(() => {
        const joined = Effect.zipRight(count(1), subscriber.heartbeat ? beatsFor(1) : Effect.void)
        const existing = topics.get(key)
        if (existing !== undefined) {
          existing.subscribers.add(subscriber)
          const pending = existing.pending
          return pending === undefined ? joined : Effect.zipRight(joined, Deferred.await(pending))
        }
        const pending = Deferred.unsafeMake<void, RealtimeError.Unavailable>(FiberId.none)
        const topic: Topic = { subscribers: new Set([subscriber]), pending, batch: [] }
        topics.set(key, topic)
        topicsChanged(1)
        return Effect.zipRight(
          joined,
          Effect.flatMap(Effect.exit(buffer.retain(key, liveOf(topic))), (exit) => {
            topic.pending = undefined
            if (exit._tag === "Success") return Deferred.done(pending, exit)
            // The source could not start: every subscriber that waited for it is refused
            // (the key may have a newer topic already, if they all left meanwhile).
            if (topics.get(key) === topic) {
              topics.delete(key)
              topicsChanged(-1)
            }
            const refused = topic.subscribers
            return Effect.zipRight(
              Effect.all([
                count(-refused.size),
                Deferred.done(pending, exit),
                beatsFor(-beatersIn(refused)),
                Effect.sync(() => refused.forEach((s) => s.close()))
              ], { discard: true }),
              exit
            )
          })
        )
      })

    const leave = (subscriber: Subscriber) =>
      Effect.suspend(() => {
        subscriber.close()
        const key = subscriber.key
        const topic = topics.get(key)
        if (topic === undefined || !topic.subscribers.delete(subscriber)) return Effect.void
        const left = Effect.zipRight(count(-1), subscriber.heartbeat ? beatsFor(-1) : Effect.void)
        if (topic.subscribers.size > 0) return left
        topics.delete(key)
        topicsChanged(-1)
        return Effect.all([
          left,
          // A source still starting is released once it has.
          topic.pending === undefined
            ? buffer.release(key)
            : Effect.forkDaemon(Effect.zipRight(Effect.exit(Deferred.await(topic.pending)), buffer.release(key)))
        ], { discard: true })
      })

    const join = (key: Event.ResourceKey, options?: JoinOptions | undefined) =>
      Effect.suspend((): Effect.Effect<Subscriber, RealtimeError.TooManySubscribers | RealtimeError.Unavailable> => {
        if (total >= limits.maxSubscribers) {
          return Effect.fail(new RealtimeError.TooManySubscribers({ scope: "process", limit: limits.maxSubscribers }))
        }
        if ((topics.get(key)?.subscribers.size ?? 0) >= limits.maxSubscribersPerKey) {
          return Effect.fail(new RealtimeError.TooManySubscribers({ scope: "key", limit: limits.maxSubscribersPerKey }))
        }
        const subscriber = new Mailbox.Mailbox(key, mailboxLimits, hooks, options?.heartbeat !== false)
        return Effect.as(register(key, subscriber), subscriber)
      })

    return Hub.of({
      publish: (key, message) => Effect.sync(() => unsafePublish(key, message)),
      unsafePublish,
      join,
      subscribe: (key) => Effect.acquireRelease(join(key), leave),
      subscriberCount: (key) => Effect.sync(() => topics.get(key)?.subscribers.size ?? 0),
      totalSubscribers: Effect.sync(() => total),
      activeKeys: Effect.sync(() => topics.size),
      queuedBytes: Effect.sync(() => {
        let bytes = 0
        for (const topic of topics.values()) {
          for (const subscriber of topic.subscribers) bytes += subscriber.queuedBytes
        }
        return bytes
      })
    })
  })

// A fiber that runs `work` whenever `ready()` holds, sleeping (no timer) until
// `park` hands it the function that wakes it.
const serve = (ready: () => boolean, park: (resume: () => void) => void, work: Effect.Effect<void>) => {
  const waiting = Effect.async<void>((resume) => {
    if (ready()) return resume(Effect.void)
    park(() => resume(Effect.void))
  })
  return Effect.interruptible(Effect.forever(Effect.zipRight(waiting, work)))
}

/**
 * The hub, with the bounds of `RealtimeConfig`, over the `ReplayBuffer`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Hub, never, Heartbeat.Heartbeat | ReplayBuffer.ReplayBuffer> = Layer.scoped(
  Hub,
  Effect.gen(function*() {
    return yield* make(yield* RealtimeConfig.RealtimeConfig, yield* ReplayBuffer.ReplayBuffer)
  })
)
