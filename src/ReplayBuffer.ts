/**
 * Bounded per-record history for `Last-Event-ID` replay. Retention (by count
 * and by age, measured with `Clock`), sequence numbers and the
 * `Replay | Resync` answer live here, in `make`; a backend supplies only a
 * small `Driver` (memory here, Durable Object storage and Redis elsewhere), so
 * backends cannot disagree on semantics.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Event from "./Event.js"
import { RingBuffer } from "./internal/ringBuffer.js"
import * as RealtimeConfig from "./RealtimeConfig.js"

/**
 * One buffered event: its per-record sequence number, its SSE id, its encoded
 * frame and when it was appended (`Clock` milliseconds).
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
 * The newest event ever appended for a record, kept after its entry is evicted.
 *
 * @since 0.1.0
 * @category models
 */
export interface Head {
  readonly seq: number
  readonly id: string
}

/**
 * What a reconnecting client is owed: the entries after its last id (possibly
 * none), or a resync because its history is gone. `lastSeq` is the sequence
 * number the client is at once it has the answer.
 *
 * @since 0.1.0
 * @category models
 */
export type Since =
  | { readonly _tag: "Replay"; readonly entries: ReadonlyArray<Entry>; readonly lastSeq: number }
  | { readonly _tag: "Resync"; readonly newestId: string; readonly lastSeq: number }

/**
 * @since 0.1.0
 * @category tags
 */
export class ReplayBuffer extends Context.Tag("@saacms/realtime/ReplayBuffer")<ReplayBuffer, {
  /** Append a frame under the record's next sequence number, then evict by count and age. */
  readonly append: (key: Event.ResourceKey, event: { readonly id: string; readonly frame: Uint8Array }) => Effect.Effect<Entry>
  /** The entries after `lastEventId` (its most recent occurrence), or `Resync`; without an id, none and the head. */
  readonly since: (key: Event.ResourceKey, lastEventId: string | undefined) => Effect.Effect<Since>
  /** How many events the record holds now (after age eviction). */
  readonly size: (key: Event.ResourceKey) => Effect.Effect<number>
}>() {}

/**
 * The storage a backend provides. Calls for one key never overlap in a way that
 * matters: `Realtime` serialises publishes, and reads tolerate a concurrent append.
 *
 * @since 0.1.0
 * @category models
 */
export interface Driver {
  /** The newest entry ever appended for `key`, if any. */
  readonly head: (key: Event.ResourceKey) => Effect.Effect<Head | undefined>
  /** Store `entry` as the newest of `key` (its `seq` is the head's plus one). */
  readonly append: (key: Event.ResourceKey, entry: Entry) => Effect.Effect<void>
  /** The entries held for `key`, oldest first. */
  readonly entries: (key: Event.ResourceKey) => Effect.Effect<ReadonlyArray<Entry>>
  /** Keep at most `maxEvents` entries of `key`, none appended before `minAt`. */
  readonly trim: (key: Event.ResourceKey, maxEvents: number, minAt: number) => Effect.Effect<void>
  /**
   * Drop the entries appended before `minAt` of one record other than those
   * just touched, taking records in turn, so that records nobody publishes to
   * or reads age out too while others are published. No timer runs.
   */
  readonly sweep: (minAt: number) => Effect.Effect<void>
}

/**
 * Build the buffer's semantics over a driver, with retention from `RealtimeConfig`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (driver: Driver): Effect.Effect<ReplayBuffer["Type"]> =>
  Effect.map(RealtimeConfig.RealtimeConfig, (config) => {
    const maxAgeMs = Duration.toMillis(config.maxAge)
    const trim = (key: Event.ResourceKey) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => driver.trim(key, config.maxEvents, now - maxAgeMs))
    const sweep = Effect.flatMap(Clock.currentTimeMillis, (now) => driver.sweep(now - maxAgeMs))

    return ReplayBuffer.of({
      append: (key, { frame, id }) =>
        Effect.gen(function*() {
          const head = yield* driver.head(key)
          const entry: Entry = { seq: (head?.seq ?? 0) + 1, id, frame, at: yield* Clock.currentTimeMillis }
          yield* driver.append(key, entry)
          yield* trim(key)
          yield* sweep
          return entry
        }),
      since: (key, lastEventId) =>
        Effect.gen(function*() {
          yield* trim(key)
          const head = yield* driver.head(key)
          const headSeq = head?.seq ?? 0
          if (lastEventId === undefined) {
            return { _tag: "Replay", entries: [], lastSeq: headSeq } as const
          }
          const entries = yield* driver.entries(key)
          // Ids resolve to their most recent occurrence (an etag may repeat).
          for (let i = entries.length - 1; i >= 0; i--) {
            if (entries[i]!.id === lastEventId) {
              return { _tag: "Replay", entries: entries.slice(i + 1), lastSeq: headSeq } as const
            }
          }
          if (head !== undefined && head.id === lastEventId) {
            // The client saw the newest event; only its entry has aged out.
            return { _tag: "Replay", entries: [], lastSeq: headSeq } as const
          }
          const newestId = head?.id ?? new Date(yield* Clock.currentTimeMillis).toISOString()
          return { _tag: "Resync", newestId, lastSeq: headSeq } as const
        }),
      size: (key) => Effect.zipRight(trim(key), Effect.map(driver.entries(key), (entries) => entries.length))
    })
  })

/**
 * The in-memory driver: one ring buffer per record. A record's head (sequence
 * number and id of its newest event, a few dozen bytes) stays after its
 * entries age out, so a live subscriber never sees a sequence number reused.
 * Each append sweeps one record, in turn, so buffered frames age out on every
 * record while the process publishes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemoryDriver = (maxEvents: number): Driver => {
  const records = new Map<Event.ResourceKey, { head: Head; ring: RingBuffer<Entry> }>()
  return {
    head: (key) => Effect.sync(() => records.get(key)?.head),
    append: (key, entry) =>
      Effect.sync(() => {
        const record = records.get(key)
        if (record === undefined) {
          const ring = new RingBuffer<Entry>(maxEvents)
          ring.push(entry)
          records.set(key, { head: entry, ring })
        } else {
          record.head = entry
          record.ring.push(entry)
        }
      }),
    entries: (key) => Effect.sync(() => records.get(key)?.ring.sliceFrom(0) ?? []),
    trim: (key, _maxEvents, minAt) =>
      Effect.sync(() => {
        records.get(key)?.ring.dropWhile((entry) => entry.at < minAt)
      }),
    sweep: (minAt) =>
      Effect.sync(() => {
        const first = records.entries().next()
        if (first.done === true) return
        const [key, record] = first.value
        record.ring.dropWhile((entry) => entry.at < minAt)
        // Rotate: the next sweep takes the next record.
        records.delete(key)
        records.set(key, record)
      })
  }
}

/**
 * The in-memory `ReplayBuffer`, sized by `RealtimeConfig`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<ReplayBuffer> = Layer.effect(
  ReplayBuffer,
  Effect.flatMap(RealtimeConfig.RealtimeConfig, (config) => make(makeMemoryDriver(config.maxEvents)))
)
