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
import type * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as Event from "./Event.js"
import type * as Heartbeat from "./Heartbeat.js"
import * as Beating from "./internal/beating.js"
import * as Drain from "./internal/drain.js"
import * as Fanout from "./internal/fanout.js"
import * as Mailbox from "./internal/mailbox.js"
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
export interface Message {
  readonly seq: number
  readonly frame: Uint8Array
  /** The record event the frame encodes, for access re-checks (absent for `:keepalive`). */
  readonly event?: unknown
  /**
   * When it was published (ms on the hub's `Clock`, from `unsafeCurrentTimeNanos`),
   * for the publish-to-write latency; a message without it is not timed.
   */
  readonly at?: number
}

/**
 * One subscriber of a record: a bounded inbox of the frames its client is
 * owed, filled by the hub and drained by whatever writes to the client (a
 * web stream, an Effect `Stream`, a socket). It holds at most its bounds; one
 * that falls behind reads the record's history as its client drains.
 *
 * @since 0.1.0
 * @category models
 */
export interface Subscriber {
  /** The record it follows. */
  readonly key: Event.ResourceKey
  /** Whether the hub's heartbeat writes to it and ends it when it stalls (see `JoinOptions`). */
  readonly heartbeat: boolean
  /** Bytes waiting for its client. */
  readonly queuedBytes: number
  /** `true` once it has closed and handed on every frame. */
  readonly done: boolean
  /** When its access ends (`Clock` ms): it then gets `saacms-revoked` `{"reason":"expired"}` and closes. */
  expiresAt: number
  /**
   * Whether it may see a record event (live: `event` is given; replayed: read
   * it from `frame`); `false` sends `saacms-revoked` `{"reason":"forbidden"}`
   * and closes it. Unset: it sees every event.
   */
  canSee: ((event: unknown, frame: Uint8Array) => boolean) | undefined
  /**
   * Start it: `opening` first, then what follows `fromSeq` (the history up
   * to `headSeq`, read as its client drains, then live frames). Frames
   * published since it joined are in the history too.
   */
  begin(fromSeq: number, headSeq: number, opening: Uint8Array | undefined): void
  /** Take the frames waiting (shared with other subscribers, not copied), if any. */
  poll(): Array<Uint8Array> | undefined
  /** Its client has taken everything it was handed: a subscriber behind reads on. */
  drained(): void
  /** Call `f` once, the next time a frame waits or it closes. */
  onWake(f: (() => void) | undefined): void
  /** Its frames as a web stream (call once, instead of `poll`); cancelling the stream ends it. */
  toReadableStream(): ReadableStream<Uint8Array>
  /** Send `saacms-revoked` with `reason` after what waits, and close. */
  finish(reason: "expired" | "forbidden"): void
  /** Accept no more frames; what waits still reaches its client. */
  close(): void
}

/**
 * The heartbeat message.
 *
 * @since 0.1.0
 * @category models
 */
export const keepalive: Message = Beating.keepalive

interface Topic extends Fanout.Recipients {
  /** Set while the record's live source is starting; joiners wait for it. */
  pending: Deferred.Deferred<void, RealtimeError.Unavailable> | undefined
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
    const topics = new Map<Event.ResourceKey, Topic>()
    const gauges = new Gauges()
    const mailboxLimits: Mailbox.Limits = { maxFrames: limits.queueCapacity, maxBytes: limits.maxQueuedBytes }
    const clock = yield* Effect.clock
    const millis = () => Number(clock.unsafeCurrentTimeNanos()) / 1_000_000
    const expired = expiry(clock)

    // The hub's jobs besides membership, each in its own module: the fan-out
    // of what is published, the heartbeat, the history reads of subscribers
    // behind, and the release of subscribers that closed on their own (client
    // gone, stalled, revoked). The last two are one fiber each for the hub.
    const hooks: Mailbox.Hooks = {
      delivered: 0,
      resynced: () => Metrics.resyncsSent.unsafeUpdate(1, []),
      backfill: (mailbox, afterSeq, want, generation) => backfill([mailbox, afterSeq, want, generation]),
      closed: (mailbox) => release(mailbox)
    }
    const fanout = new Fanout.Fanout(limits.maxQueuedBytes, expired, millis, hooks)
    const beating = yield* Beating.make(topics, expired)
    const backfill = yield* Drain.make(readHistories(buffer, hooks))
    const release = yield* Drain.make((closed: ReadonlyArray<Mailbox.Mailbox>) =>
      Effect.forEach(closed, leave, { discard: true })
    )

    // Shutdown hands out what is batched, then ends every open stream cleanly;
    // this hub's share of the gauges goes with it.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        fanout.flush()
        for (const topic of topics.values()) {
          for (const subscriber of topic.subscribers) subscriber.close()
        }
        gauges.stop(topics.size)
      })
    )

    const unsafePublish = (key: Event.ResourceKey, message: Message) => {
      const topic = topics.get(key)
      if (topic !== undefined) fanout.enqueue(topic, message)
    }

    // What the record's live source tells its subscribers (frames published
    // elsewhere, a lost history, a reconnect).
    const liveOf = (topic: Topic): ReplayBuffer.Live => ({
      // Timed from its arrival here (it was published elsewhere, or came back from the backend).
      publish: (seq, frame) => fanout.enqueue(topic, { seq, frame, at: millis() }),
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

    // Membership: `delta` subscribers joined (or left), counted and beaten for.
    const counted = (delta: number, heartbeats: number) =>
      Effect.zipRight(Effect.sync(() => gauges.joined(delta)), heartbeats === 0 ? Effect.void : beating.change(heartbeats))

    // Joining registers synchronously, so first subscribers arriving together
    // always share one topic; the record is retained (its live source started)
    // before any of them reads its history, and later ones wait for that too.
    const register = (key: Event.ResourceKey, subscriber: Mailbox.Mailbox): Effect.Effect<void, RealtimeError.Unavailable> =>
      Effect.suspend(() => {
        const joined = counted(1, subscriber.heartbeat ? 1 : 0)
        const existing = topics.get(key)
        if (existing !== undefined) {
          existing.subscribers.add(subscriber)
          const pending = existing.pending
          return pending === undefined ? joined : Effect.zipRight(joined, Deferred.await(pending))
        }
        const pending = Deferred.unsafeMake<void, RealtimeError.Unavailable>(FiberId.none)
        const topic: Topic = { subscribers: new Set([subscriber]), pending, batch: [] }
        topics.set(key, topic)
        gauges.records(1)
        return Effect.zipRight(
          joined,
          Effect.flatMap(Effect.exit(buffer.retain(key, liveOf(topic))), (exit) => {
            topic.pending = undefined
            if (exit._tag === "Success") return Deferred.done(pending, exit)
            // The source could not start: every subscriber that waited for it is refused
            // (the key may have a newer topic already, if they all left meanwhile).
            if (topics.get(key) === topic) {
              topics.delete(key)
              gauges.records(-1)
            }
            const refused = topic.subscribers
            let heartbeats = 0
            for (const s of refused) if (s.heartbeat) heartbeats--
            return Effect.zipRight(
              Effect.all([
                counted(-refused.size, heartbeats),
                Deferred.done(pending, exit),
                Effect.sync(() => refused.forEach((s) => s.close()))
              ], { discard: true }),
              exit
            )
          })
        )
      })

    const leave = (subscriber: Mailbox.Mailbox) =>
      Effect.suspend(() => {
        subscriber.close()
        const key = subscriber.key
        const topic = topics.get(key)
        if (topic === undefined || !topic.subscribers.delete(subscriber)) return Effect.void
        const left = counted(-1, subscriber.heartbeat ? -1 : 0)
        if (topic.subscribers.size > 0) return left
        topics.delete(key)
        gauges.records(-1)
        return Effect.all([
          left,
          // A source still starting is released once it has.
          topic.pending === undefined
            ? buffer.release(key)
            : Effect.forkDaemon(Effect.zipRight(Effect.exit(Deferred.await(topic.pending)), buffer.release(key)))
        ], { discard: true })
      })

    // The bounds are checked before anything is registered.
    const join = (key: Event.ResourceKey, options?: JoinOptions | undefined) =>
      Effect.suspend((): Effect.Effect<Mailbox.Mailbox, RealtimeError.TooManySubscribers | RealtimeError.Unavailable> => {
        if (gauges.subscribers >= limits.maxSubscribers) {
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
      totalSubscribers: Effect.sync(() => gauges.subscribers),
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

// A subscriber whose grant has ended is ended (`saacms-revoked`) when the hub
// next reaches it: a publish to its record, or a heartbeat.
const expiry = (clock: Clock.Clock) => (subscriber: Mailbox.Mailbox): boolean => {
  if (subscriber.expiresAt === Infinity || subscriber.expiresAt > clock.unsafeCurrentTimeMillis()) return false
  subscriber.finish("expired")
  return true
}

// What a subscriber behind asks for: the history of its record after a
// sequence number, within its room, for its current generation.
type HistoryRead = readonly [Mailbox.Mailbox, number, Mailbox.Limits, number]

// The hub's backfill fiber reads the histories asked for since it last woke;
// each answer goes back to its subscriber (`fill`), a failed read ends it.
// Reads that served frames are counted per read, not per frame.
const readHistories = (buffer: ReplayBuffer.ReplayBuffer["Type"], hooks: Mailbox.Hooks) =>
(
  batch: ReadonlyArray<HistoryRead>
): Effect.Effect<void> => {
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
      Fanout.reportDelivered(hooks)
    })
  )
}

// The gauges move by this hub's changes, so the hubs of a process add up; a
// hub that stopped has taken its share back.
class Gauges {
  /** This hub's subscribers. */
  subscribers = 0
  private stopped = false

  joined(delta: number): void {
    this.subscribers += delta
    if (!this.stopped) Metrics.subscribers.unsafeModify(delta, [])
  }

  records(delta: number): void {
    if (!this.stopped) Metrics.activeRecords.unsafeModify(delta, [])
  }

  stop(records: number): void {
    this.stopped = true
    Metrics.subscribers.unsafeModify(-this.subscribers, [])
    Metrics.activeRecords.unsafeModify(-records, [])
  }
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
