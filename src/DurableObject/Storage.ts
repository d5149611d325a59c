/**
 * The Durable Object driver of `ReplayBuffer`: one object holds one record, so
 * the record's history lives in the object's `state.storage`, where it survives
 * eviction and restarts. The object reads it back once, when it wakes; after
 * that reads come from memory and every change is written through.
 *
 * Retention holds in storage too: an append deletes what falls out by count,
 * and an alarm set for the oldest entry's expiry deletes what ages out while
 * nobody publishes.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { RingBuffer } from "../internal/ringBuffer.js"
import * as RealtimeConfig from "../RealtimeConfig.js"
import * as ReplayBuffer from "../ReplayBuffer.js"

/**
 * The part of the Workers `DurableObjectStorage` this driver uses, declared
 * structurally so that the package takes no runtime dependency on
 * `cloudflare:workers` (the real `state.storage` satisfies it).
 *
 * @since 0.1.0
 * @category models
 */
export interface StorageLike {
  get<T = unknown>(key: string): Promise<T | undefined>
  list<T = unknown>(options?: { readonly prefix?: string }): Promise<Map<string, T>>
  put<T>(entries: Record<string, T>): Promise<void>
  delete(keys: Array<string>): Promise<number>
  getAlarm(): Promise<number | null>
  setAlarm(scheduledTime: number): Promise<void>
}

const headKey = "saacms-realtime:head"
const entryPrefix = "saacms-realtime:event:"
// Zero-padded so that storage's key order is sequence order.
const entryKey = (seq: number) => `${entryPrefix}${seq.toString().padStart(16, "0")}`

/** What storage holds, decoded on the way back in (storage is a boundary too). */
const StoredHead = Schema.Struct({ seq: Schema.Int, id: Schema.String })
const StoredEntry = Schema.Struct({ id: Schema.String, frame: Schema.Uint8ArrayFromSelf, at: Schema.Number })
const decodeHead = Schema.decodeUnknownOption(StoredHead)
const decodeEntry = Schema.decodeUnknownOption(StoredEntry)

/**
 * Read the record's history from `storage` and return a driver over it.
 * Entries beyond `maxEvents` (the limit was lowered) or that do not decode are
 * deleted here.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeDriver = (
  storage: StorageLike,
  retention: { readonly maxEvents: number; readonly maxAgeMs: number }
): Effect.Effect<ReplayBuffer.Driver> =>
  Effect.gen(function*() {
    const [storedHead, stored, alarm] = yield* Effect.promise(() =>
      Promise.all([storage.get(headKey), storage.list({ prefix: entryPrefix }), storage.getAlarm()])
    )
    let head: ReplayBuffer.Head | undefined = Option.getOrUndefined(decodeHead(storedHead))
    const ring = new RingBuffer<ReplayBuffer.Entry>(retention.maxEvents)
    const dropped: Array<string> = []
    for (const [key, value] of stored) {
      const entry = decodeEntry(value)
      const seq = Number(key.slice(entryPrefix.length))
      if (entry._tag === "None" || !Number.isSafeInteger(seq)) {
        dropped.push(key)
        continue
      }
      const evicted = ring.push({ seq, ...entry.value })
      if (evicted !== undefined) dropped.push(entryKey(evicted.seq))
    }
    const newest = ring.at(ring.size - 1)
    if (newest !== undefined && (head === undefined || head.seq < newest.seq)) head = { seq: newest.seq, id: newest.id }
    if (dropped.length > 0) yield* Effect.promise(() => storage.delete(dropped))
    let scheduled = alarm ?? undefined

    // The alarm fires when the oldest entry expires; the object's alarm handler
    // trims, which schedules the next one.
    const schedule = (now: number) => {
      const oldest = ring.at(0)
      if (oldest === undefined) return Effect.void
      const due = oldest.at + retention.maxAgeMs + 1
      if (scheduled !== undefined && scheduled > now && scheduled <= due) return Effect.void
      scheduled = due
      return Effect.promise(() => storage.setAlarm(due))
    }

    return {
      head: () => Effect.sync(() => head),
      append: (_key, entry) =>
        Effect.suspend(() => {
          head = { seq: entry.seq, id: entry.id }
          const evicted = ring.push(entry)
          const writes: Record<string, unknown> = {
            [headKey]: head,
            [entryKey(entry.seq)]: { id: entry.id, frame: entry.frame, at: entry.at }
          }
          return Effect.promise(() =>
            evicted === undefined
              ? storage.put(writes)
              : Promise.all([storage.put(writes), storage.delete([entryKey(evicted.seq)])]).then(() => undefined)
          )
        }),
      entries: () => Effect.sync(() => ring.sliceFrom(0)),
      trim: (_key, _maxEvents, minAt) =>
        Effect.suspend(() => {
          const expired: Array<string> = []
          ring.dropWhile((entry) => {
            if (entry.at >= minAt) return false
            expired.push(entryKey(entry.seq))
            return true
          })
          const now = minAt + retention.maxAgeMs
          return expired.length === 0
            ? schedule(now)
            : Effect.zipRight(Effect.promise(() => storage.delete(expired)), schedule(now))
        }),
      // One object, one record: `trim` covers it.
      sweep: () => Effect.void
    }
  })

/**
 * How many events `storage` holds now, as stored (for monitoring: retention
 * is enforced in storage, not only in memory).
 *
 * @since 0.1.0
 * @category utils
 */
export const stored = (storage: StorageLike): Effect.Effect<number> =>
  Effect.promise(() => storage.list({ prefix: entryPrefix })).pipe(Effect.map((entries) => entries.size))

/**
 * The `ReplayBuffer` of one Durable Object, over its `state.storage`, with
 * retention from `RealtimeConfig`. Building the layer restores the history.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerDurableObjectStorage = (storage: StorageLike): Layer.Layer<ReplayBuffer.ReplayBuffer> =>
  Layer.effect(
    ReplayBuffer.ReplayBuffer,
    Effect.gen(function*() {
      const config = yield* RealtimeConfig.RealtimeConfig
      const driver = yield* makeDriver(storage, {
        maxEvents: config.maxEvents,
        maxAgeMs: Duration.toMillis(config.maxAge)
      })
      return yield* ReplayBuffer.make(driver)
    })
  )
