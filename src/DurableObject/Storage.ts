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
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as History from "../internal/history.js"
import { RecordHistory } from "../internal/history.js"
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
 * Entries beyond `maxEvents` or `maxHistoryBytes` (the limits were lowered),
 * or that do not decode, are deleted here.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeDriver = (
  storage: StorageLike,
  retention: ReturnType<typeof ReplayBuffer.retention>
): Effect.Effect<ReplayBuffer.Driver> =>
  Effect.gen(function*() {
    const [storedHead, stored, alarm] = yield* Effect.promise(() =>
      Promise.all([storage.get(headKey), storage.list({ prefix: entryPrefix }), storage.getAlarm()])
    )
    const history = new RecordHistory()
    const dropped: Array<string> = []
    const drop = (entry: History.Entry) => dropped.push(entryKey(entry.seq))
    for (const [key, value] of stored) {
      const entry = decodeEntry(value)
      const seq = Number(key.slice(entryPrefix.length))
      if (entry._tag === "None" || !Number.isSafeInteger(seq) || seq <= history.headSeq) {
        dropped.push(key)
        continue
      }
      if (history.size > 0 && seq !== history.headSeq + 1) {
        // A hole (a partial write): what came before it cannot be replayed gaplessly.
        while (history.size > 0) drop(history.shift()!)
      }
      history.append({ seq, ...entry.value })
    }
    const head = Option.getOrUndefined(decodeHead(storedHead))
    if (head !== undefined && head.seq > history.headSeq) {
      // The newest entry was trimmed: the head outlives it (its id stays known).
      while (history.size > 0) drop(history.shift()!)
      history.head = head
    }
    trimBytes(history, retention.maxHistoryBytes, drop)
    history.trim(retention.maxEvents, -Infinity, drop)
    if (dropped.length > 0) yield* Effect.promise(() => storage.delete(dropped.splice(0)))
    let scheduled = alarm ?? undefined

    // The alarm fires when the oldest entry expires; the object's alarm handler
    // trims, which schedules the next one.
    const schedule = (now: number): Promise<unknown> | undefined => {
      const oldest = history.oldest()
      if (oldest === undefined) return undefined
      const due = oldest.at + retention.maxAgeMs + 1
      if (scheduled !== undefined && scheduled > now && scheduled <= due) return undefined
      scheduled = due
      return storage.setAlarm(due)
    }

    // Drop what has aged out (from memory now, from storage in the same turn).
    const expire = (now: number): Promise<unknown> | undefined => {
      history.trim(retention.maxEvents, now - retention.maxAgeMs, drop)
      const writes: Array<Promise<unknown>> = []
      if (dropped.length > 0) writes.push(storage.delete(dropped.splice(0)))
      const alarmSet = schedule(now)
      if (alarmSet !== undefined) writes.push(alarmSet)
      return writes.length === 0 ? undefined : Promise.all(writes)
    }
    const expired = <A>(now: number, answer: () => A) =>
      Effect.suspend(() => {
        const writes = expire(now)
        return writes === undefined ? Effect.sync(answer) : Effect.as(Effect.promise(() => writes), answer())
      })

    return {
      append: (_key, id, frame, now) =>
        Effect.suspend(() => {
          // The object's input gate runs this turn alone: assigning the next
          // sequence number and trimming cannot interleave with another append.
          const entry: History.Entry = { seq: history.headSeq + 1, id, frame, at: now }
          history.append(entry)
          history.trim(retention.maxEvents, now - retention.maxAgeMs, drop)
          trimBytes(history, retention.maxHistoryBytes, drop)
          const writes: Array<Promise<unknown>> = [storage.put({
            [headKey]: history.head,
            [entryKey(entry.seq)]: { id: entry.id, frame: entry.frame, at: entry.at }
          })]
          if (dropped.length > 0) writes.push(storage.delete(dropped.splice(0)))
          const alarmSet = schedule(now)
          if (alarmSet !== undefined) writes.push(alarmSet)
          return Effect.as(Effect.promise(() => Promise.all(writes)), entry)
        }),
      position: (_key, lastEventId, now) =>
        expired(now, () => ({ position: history.position(lastEventId), headSeq: history.headSeq, headId: history.head?.id })),
      headSeq: (_key, now) => expired(now, () => history.headSeq),
      read: (_key, afterSeq, limits, now) => expired(now, () => history.read(afterSeq, limits.maxBytes, limits.maxFrames)),
      // One object, one record: its head stays in storage whoever watches.
      retain: () => Effect.void,
      release: () => Effect.void,
      size: (_key, now) => expired(now, () => history.size),
      stats: Effect.sync(() => ({
        records: history.head === undefined ? 0 : 1,
        recordsWithHistory: history.size > 0 ? 1 : 0,
        entries: history.size,
        bytes: history.bytes
      }))
    }
  })

// The newest entry stays, whatever its size (a publish is never refused for the budget).
const trimBytes = (history: RecordHistory, maxBytes: number, drop: (entry: History.Entry) => void) => {
  while (history.bytes + history.size * History.entryOverhead > maxBytes && history.size > 1) drop(history.shift()!)
}

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
      return ReplayBuffer.make(yield* makeDriver(storage, ReplayBuffer.retention(config)))
    })
  )
