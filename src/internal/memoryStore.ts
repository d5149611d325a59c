/**
 * The in-memory histories of every record of one process, under a total
 * budget. Pure data structure, no Effect: time comes in as `now` (the caller
 * reads `Clock`).
 *
 * - A record exists while it holds history or a local subscriber retains it
 *   (so its sequence numbers never restart under a live subscriber); one
 *   with neither is removed, so records nobody watches cost nothing.
 * - Records with history are kept in order of their last append: past
 *   `maxHistoryBytes` or `maxRecords`, the least recently published lose their
 *   history first (their subscribers resync on their next reconnect).
 * - Age retention needs one timer for the whole store: a heap of records by
 *   their oldest entry says when the next entry expires (`nextDue`), and
 *   `expire` drops what has.
 *
 * @internal
 */
import { type Entry, entryOverhead, type Position, type Read, RecordHistory } from "./history.js"

export interface Retention {
  readonly maxEvents: number
  readonly maxAgeMs: number
  readonly maxHistoryBytes: number
  readonly maxRecords: number
}

export interface Stats {
  /** Records in memory: with history, or retained by a subscriber. */
  readonly records: number
  /** Records that hold history. */
  readonly recordsWithHistory: number
  /** Entries held over all records. */
  readonly entries: number
  /** Bytes of frames held over all records. */
  readonly bytes: number
}

interface Rec {
  readonly key: string
  readonly history: RecordHistory
  pins: number
  /** Whether the expiry heap holds an item for this record. */
  queued: boolean
}

interface Due {
  readonly rec: Rec
  /** The record's oldest entry's time when queued (its oldest can only be later since). */
  readonly at: number
}

export class MemoryStore {
  private readonly records = new Map<string, Rec>()
  /** Records with history, least recently appended first. */
  private readonly recent = new Map<string, Rec>()
  private readonly heap: Array<Due> = []
  private bytes = 0
  private entries = 0
  /** Called when the first entry is queued for expiry after none was. */
  onDue: (() => void) | undefined = undefined

  constructor(readonly retention: Retention) {}

  private readonly dropped = (entry: Entry): void => {
    this.bytes -= entry.frame.byteLength
    this.entries--
  }

  append(key: string, id: string, frame: Uint8Array, now: number): Entry {
    let rec = this.records.get(key)
    if (rec === undefined) {
      rec = { key, history: new RecordHistory(), pins: 0, queued: false }
      this.records.set(key, rec)
    }
    const entry: Entry = { seq: rec.history.headSeq + 1, id, frame, at: now }
    rec.history.append(entry)
    this.bytes += frame.byteLength
    this.entries++
    this.recent.delete(key)
    this.recent.set(key, rec)
    rec.history.trim(this.retention.maxEvents, now - this.retention.maxAgeMs, this.dropped)
    if (!rec.queued) this.queue(rec)
    this.enforceBudget(rec)
    return entry
  }

  position(key: string, lastEventId: string, now: number): { readonly position: Position; readonly headSeq: number; readonly headId: string | undefined } {
    const rec = this.touch(key, now)
    if (rec === undefined) return { position: { _tag: "Unknown" }, headSeq: 0, headId: undefined }
    return { position: rec.history.position(lastEventId), headSeq: rec.history.headSeq, headId: rec.history.head?.id }
  }

  headSeq(key: string, now: number): number {
    return this.touch(key, now)?.history.headSeq ?? 0
  }

  read(key: string, afterSeq: number, maxBytes: number, maxFrames: number, now: number): Read {
    const rec = this.touch(key, now)
    if (rec === undefined) {
      return afterSeq === 0 ? { _tag: "Entries", entries: [], lastSeq: 0 } : { _tag: "Gone", newestId: "", lastSeq: 0 }
    }
    return rec.history.read(afterSeq, maxBytes, maxFrames)
  }

  size(key: string, now: number): number {
    return this.touch(key, now)?.history.size ?? 0
  }

  /** A local subscriber follows `key`: keep the record (and its sequence) until `release`. */
  retain(key: string): void {
    let rec = this.records.get(key)
    if (rec === undefined) {
      rec = { key, history: new RecordHistory(), pins: 0, queued: false }
      this.records.set(key, rec)
    }
    rec.pins++
  }

  release(key: string): void {
    const rec = this.records.get(key)
    if (rec === undefined || rec.pins === 0) return
    rec.pins--
    this.removeIfUnused(rec)
  }

  stats(): Stats {
    return { records: this.records.size, recordsWithHistory: this.recent.size, entries: this.entries, bytes: this.bytes }
  }

  /** When the oldest entry held expires (`Clock` ms), if any is held. */
  nextDue(): number | undefined {
    const first = this.heap[0]
    return first === undefined ? undefined : first.at + this.retention.maxAgeMs + 1
  }

  /** Drop every entry that has expired by `now`, and the records left with nothing. */
  expire(now: number): void {
    const minAt = now - this.retention.maxAgeMs
    while (this.heap.length > 0 && this.heap[0]!.at < minAt) {
      const { rec } = this.pop()
      rec.queued = false
      if (this.records.get(rec.key) !== rec) continue
      rec.history.trim(this.retention.maxEvents, minAt, this.dropped)
      if (rec.history.size > 0) this.queue(rec)
      else this.removeIfUnused(rec)
    }
  }

  // Age retention on access, so a read never sees an expired entry.
  private touch(key: string, now: number): Rec | undefined {
    const rec = this.records.get(key)
    if (rec === undefined) return undefined
    const oldest = rec.history.oldest()
    if (oldest !== undefined && oldest.at < now - this.retention.maxAgeMs) {
      rec.history.trim(this.retention.maxEvents, now - this.retention.maxAgeMs, this.dropped)
      if (this.removeIfUnused(rec)) return undefined
    }
    return rec
  }

  private removeIfUnused(rec: Rec): boolean {
    if (rec.history.size > 0) return false
    this.recent.delete(rec.key)
    if (rec.pins > 0) return false
    this.records.delete(rec.key)
    return true
  }

  // Past the budget, the least recently published records lose their history;
  // the record just appended keeps at least its newest entry.
  private enforceBudget(current: Rec): void {
    const { maxHistoryBytes, maxRecords } = this.retention
    while (this.bytes + this.entries * entryOverhead > maxHistoryBytes || this.recent.size > maxRecords) {
      const victim = this.recent.values().next().value as Rec
      if (victim === current) {
        if (current.history.size <= 1) return
        this.dropped(current.history.shift()!)
        continue
      }
      while (victim.history.size > 0) this.dropped(victim.history.shift()!)
      this.removeIfUnused(victim)
    }
  }

  // A binary min-heap on `at`, with at most one item per record.
  private queue(rec: Rec): void {
    const oldest = rec.history.oldest()
    if (oldest === undefined) return
    rec.queued = true
    const heap = this.heap
    heap.push({ rec, at: oldest.at })
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (heap[parent]!.at <= heap[i]!.at) break
      ;[heap[parent], heap[i]] = [heap[i]!, heap[parent]!]
      i = parent
    }
    if (heap.length === 1) this.onDue?.()
  }

  private pop(): Due {
    const heap = this.heap
    const top = heap[0]!
    const last = heap.pop()!
    if (heap.length > 0) {
      heap[0] = last
      let i = 0
      for (;;) {
        const left = 2 * i + 1
        const right = left + 1
        let smallest = i
        if (left < heap.length && heap[left]!.at < heap[smallest]!.at) smallest = left
        if (right < heap.length && heap[right]!.at < heap[smallest]!.at) smallest = right
        if (smallest === i) break
        ;[heap[smallest], heap[i]] = [heap[i]!, heap[smallest]!]
        i = smallest
      }
    }
    return top
  }
}
