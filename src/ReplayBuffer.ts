/**
 * Bounded per-record history for `Last-Event-ID` replay. A backend supplies a
 * `Driver` that owns the order: its `append` assigns the record's next
 * sequence number and trims (by count, age and bytes) in one step, so no lock
 * outside it is needed. `make` adds time (`Clock`, so `TestClock` drives
 * retention) and the answers a reconnecting client gets: where it stands
 * (`since`) and, as its connection drains, what follows (`read`), or that
 * its history is gone.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Event from "./Event.js"
import { MemoryStore } from "./internal/memoryStore.js"
import * as Metrics from "./Metrics.js"
import * as RealtimeConfig from "./RealtimeConfig.js"
import type * as RealtimeError from "./RealtimeError.js"

/**
 * One buffered event: its per-record sequence number, its SSE id, its encoded
 * frame (shared by every subscriber) and when it was appended (`Clock` ms).
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry {
  readonly seq: number
  readonly id: string
  readonly frame: Uint8Array
  readonly at: number
}

/**
 * Where a client stands after its last event id: at sequence number
 * `fromSeq` (what follows it is owed, read with `read`), or `Resync` because
 * its id is not held any more. `lastSeq` is the record's newest sequence number.
 *
 * @since 0.1.0
 * @category models
 */
export type Since =
  | { readonly _tag: "Replay"; readonly fromSeq: number; readonly lastSeq: number }
  | { readonly _tag: "Resync"; readonly newestId: string; readonly lastSeq: number }

/**
 * What follows a sequence number: the next entries (dense, oldest first;
 * none when the reader is at the head), or `Gone` when the entry after it was
 * dropped: the reader gets `saacms-resync` with `newestId` and carries on
 * from `lastSeq`.
 *
 * @since 0.1.0
 * @category models
 */
export type Read =
  | { readonly _tag: "Entries"; readonly entries: ReadonlyArray<Entry>; readonly lastSeq: number }
  | { readonly _tag: "Gone"; readonly newestId: string; readonly lastSeq: number }

/**
 * Where a client with a last event id stands in a record's history: `At` the
 * entry of that id (its sequence number), or `Unknown` when the id is not held.
 *
 * @since 0.1.0
 * @category models
 */
export type Position = { readonly _tag: "At"; readonly seq: number } | { readonly _tag: "Unknown" }

/**
 * How much one `read` may return: at most `maxBytes` of frames and
 * `maxFrames` entries, but always at least one entry when one follows.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReadLimits {
  readonly maxBytes: number
  readonly maxFrames: number
}

/**
 * What a buffer holds now (for monitoring and tests; a backend reports what
 * it holds in memory, or in storage for the Durable Object).
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  /** Records held: with history, or followed by a local subscriber. */
  readonly records: number
  /** Records that hold history. */
  readonly recordsWithHistory: number
  /** Entries held over all records. */
  readonly entries: number
  /** Bytes of frames held over all records. */
  readonly bytes: number
}

/**
 * Where a record's live frames from elsewhere go while a local subscriber
 * follows it (see `retain`): another instance's publishes (Redis), and what
 * the source learns about the record's history.
 *
 * @since 0.1.0
 * @category models
 */
export interface Live {
  /** A frame published elsewhere, with its sequence number. */
  readonly publish: (seq: number, frame: Uint8Array) => void
  /** The record's history was lost (a flushed Redis): subscribers resync to `newestId` and go on after `seq`. */
  readonly reset: (newestId: string, seq: number) => void
  /** The record's newest sequence number is `headSeq` (the source reconnected): subscribers behind it catch up. */
  readonly resume: (headSeq: number) => void
  /** The source is gone for now: end the record's streams (their clients reconnect and resume). */
  readonly end: () => void
}

/**
 * @since 0.1.0
 * @category tags
 */
export class ReplayBuffer extends Context.Tag("@saacms/realtime/ReplayBuffer")<ReplayBuffer, {
  /** Append a frame under the record's next sequence number; retention applies in the same step. */
  readonly append: (
    key: Event.ResourceKey,
    event: { readonly id: string; readonly frame: Uint8Array }
  ) => Effect.Effect<Entry, RealtimeError.Unavailable>
  /** Where a client with `lastEventId` (its most recent occurrence) stands; without one, at the head. */
  readonly since: (key: Event.ResourceKey, lastEventId: string | undefined) => Effect.Effect<Since, RealtimeError.Unavailable>
  /** The entries after `afterSeq`, within `limits`, or `Gone`. */
  readonly read: (key: Event.ResourceKey, afterSeq: number, limits: ReadLimits) => Effect.Effect<Read, RealtimeError.Unavailable>
  /**
   * The first local subscriber of `key` arrived: keep its sequence (it must
   * not restart until `release`) and start its live source, whose frames and
   * news go to `live` (memory: the local publish, nothing to start; Redis:
   * the record's channel, subscribed when this succeeds).
   */
  readonly retain: (key: Event.ResourceKey, live: Live) => Effect.Effect<void, RealtimeError.Unavailable>
  /** The last local subscriber of `key` left. */
  readonly release: (key: Event.ResourceKey) => Effect.Effect<void>
  /** How many events the record holds now (after age retention). */
  readonly size: (key: Event.ResourceKey) => Effect.Effect<number, RealtimeError.Unavailable>
  /** What the buffer holds now. */
  readonly stats: Effect.Effect<Stats>
  /**
   * `true` when every append reaches this instance's subscribers through the
   * records' live sources too (Redis: the channel carries each record's
   * appends in order), so `publish` must not hand them the frame itself.
   */
  readonly liveFromSource: boolean
  /**
   * `append` as a plain call, for backends that append in this process
   * without waiting (memory), at the time `now` (`Clock` ms); `undefined`
   * elsewhere. Lets a host's publish skip a fiber (see `Realtime.unsafePublish`).
   */
  readonly unsafeAppend: ((key: Event.ResourceKey, event: { readonly id: string; readonly frame: Uint8Array }, now: number) => Entry) | undefined
}>() {}

/**
 * A backend's storage. Every call takes the current time (`Clock` ms) from
 * `make`; `append` assigns the sequence number and trims atomically.
 *
 * @since 0.1.0
 * @category models
 */
export interface Driver {
  readonly append: (key: Event.ResourceKey, id: string, frame: Uint8Array, now: number) => Effect.Effect<Entry, RealtimeError.Unavailable>
  /** `lastEventId`'s position (`At` its most recent occurrence, or the head's id), and the head. */
  readonly position: (
    key: Event.ResourceKey,
    lastEventId: string,
    now: number
  ) => Effect.Effect<{ readonly position: Position; readonly headSeq: number; readonly headId: string | undefined }, RealtimeError.Unavailable>
  readonly headSeq: (key: Event.ResourceKey, now: number) => Effect.Effect<number, RealtimeError.Unavailable>
  readonly read: (key: Event.ResourceKey, afterSeq: number, limits: ReadLimits, now: number) => Effect.Effect<Read, RealtimeError.Unavailable>
  readonly retain: (key: Event.ResourceKey, live: Live) => Effect.Effect<void, RealtimeError.Unavailable>
  readonly release: (key: Event.ResourceKey) => Effect.Effect<void>
  readonly size: (key: Event.ResourceKey, now: number) => Effect.Effect<number, RealtimeError.Unavailable>
  readonly stats: Effect.Effect<Stats>
  /** See `ReplayBuffer.liveFromSource`. */
  readonly liveFromSource?: boolean | undefined
  /** `append` as a plain call, when it never waits (see `ReplayBuffer.unsafeAppend`). */
  readonly unsafeAppend?: ((key: Event.ResourceKey, id: string, frame: Uint8Array, now: number) => Entry) | undefined
}

/**
 * The buffer over a driver: time from `Clock`, and the reference's resync id
 * (the current time, ISO 8601) for a record with no history.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (driver: Driver): ReplayBuffer["Type"] => {
  // Every call the backend fails with `Unavailable` is counted (`Metrics.backendFailures`).
  const withNow = <A>(f: (now: number) => Effect.Effect<A, RealtimeError.Unavailable>) =>
    counted(Effect.clockWith((clock) => f(clock.unsafeCurrentTimeMillis())))
  const unsafeAppend = driver.unsafeAppend
  return ReplayBuffer.of({
    append: (key, { frame, id }) => withNow((now) => driver.append(key, id, frame, now)),
    since: (key, lastEventId) =>
      withNow((now): Effect.Effect<Since, RealtimeError.Unavailable> =>
        lastEventId === undefined
          ? Effect.map(driver.headSeq(key, now), (seq) => ({ _tag: "Replay", fromSeq: seq, lastSeq: seq }))
          : Effect.map(driver.position(key, lastEventId, now), ({ headId, headSeq, position }) =>
            position._tag === "At"
              ? { _tag: "Replay", fromSeq: position.seq, lastSeq: headSeq }
              : { _tag: "Resync", newestId: headId ?? new Date(now).toISOString(), lastSeq: headSeq })
      ),
    read: (key, afterSeq, limits) =>
      withNow((now) =>
        Effect.map(driver.read(key, afterSeq, limits, now), (read): Read =>
          read._tag === "Gone" && read.newestId === "" ? { ...read, newestId: new Date(now).toISOString() } : read)
      ),
    retain: (key, live) => counted(driver.retain(key, live)),
    release: driver.release,
    size: (key) => withNow((now) => driver.size(key, now)),
    stats: driver.stats,
    liveFromSource: driver.liveFromSource === true,
    unsafeAppend: unsafeAppend === undefined ? undefined : (key, { frame, id }, now) => unsafeAppend(key, id, frame, now)
  })
}

const failed = Effect.sync(() => Metrics.backendFailures.unsafeUpdate(1, []))
const counted = <A>(effect: Effect.Effect<A, RealtimeError.Unavailable>) => Effect.tapError(effect, () => failed)

// The in-memory driver over a `MemoryStore` (see `layerMemory`).
const memoryDriver = (store: MemoryStore): Driver => ({
  append: (key, id, frame, now) => Effect.sync(() => store.append(key, id, frame, now)),
  position: (key, lastEventId, now) => Effect.sync(() => store.position(key, lastEventId, now)),
  headSeq: (key, now) => Effect.sync(() => store.headSeq(key, now)),
  read: (key, afterSeq, limits, now) => Effect.sync(() => store.read(key, afterSeq, limits.maxBytes, limits.maxFrames, now)),
  retain: (key) => Effect.sync(() => store.retain(key)),
  release: (key) => Effect.sync(() => store.release(key)),
  size: (key, now) => Effect.sync(() => store.size(key, now)),
  stats: Effect.sync(() => store.stats()),
  unsafeAppend: (key, id, frame, now) => store.append(key, id, frame, now)
})

/**
 * Retention from the configuration, for drivers.
 *
 * @since 0.1.0
 * @category utils
 */
export const retention = (config: RealtimeConfig.Resolved) => ({
  maxEvents: config.maxEvents,
  maxAgeMs: Duration.toMillis(config.maxAge),
  maxHistoryBytes: config.maxHistoryBytes,
  maxRecords: config.maxRecords
})

/**
 * The in-memory `ReplayBuffer` of one process, bounded by `RealtimeConfig`:
 * per record by count and age, over all records by `maxHistoryBytes` and
 * `maxRecords`. One fiber expires entries as they age, on `Clock`, whether or
 * not anything is published; it sleeps while nothing is held.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<ReplayBuffer> = Layer.scoped(
  ReplayBuffer,
  Effect.gen(function*() {
    const config = yield* RealtimeConfig.RealtimeConfig
    const store = new MemoryStore(retention(config))
    let wake: (() => void) | undefined
    store.onDue = () => wake?.()
    const due = Effect.async<number>((resume) => {
      const next = store.nextDue()
      if (next !== undefined) return resume(Effect.succeed(next))
      wake = () => {
        wake = undefined
        resume(Effect.sync(() => store.nextDue() ?? 0))
      }
      return Effect.sync(() => {
        wake = undefined
      })
    })
    yield* Effect.forkScoped(Effect.interruptible(Effect.forever(Effect.gen(function*() {
      const at = yield* due
      const now = yield* Clock.currentTimeMillis
      if (at > now) yield* Effect.sleep(Duration.millis(at - now))
      store.expire(yield* Clock.currentTimeMillis)
    }))))
    return make(memoryDriver(store))
  })
)
