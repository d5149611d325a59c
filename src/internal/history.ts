/**
 * One record's replay history in memory: its entries, oldest first, in an
 * array that grows with use (nothing is preallocated), its head (sequence
 * number and id of the newest event, never its frame) and the bytes its frames
 * hold. Pure data structure, no Effect; the memory and Durable Object drivers
 * both keep their records in it, so they cannot disagree on what a position,
 * a replay or a gap is.
 *
 * @internal
 */
import type * as ReplayBuffer from "../ReplayBuffer.js"

/** One buffered event (see `ReplayBuffer.Entry`). */
export type Entry = ReplayBuffer.Entry

/**
 * What an entry costs beyond its frame (the entry, its id, the frame's
 * object), counted against `maxHistoryBytes` so that many tiny frames cannot
 * pass the budget unseen.
 */
export const entryOverhead = 128

export interface Head {
  readonly seq: number
  readonly id: string
}

/** Where a client with a last event id stands (see `ReplayBuffer.Position`). */
export type Position = ReplayBuffer.Position

/** What follows a sequence number (see `ReplayBuffer.Read`). */
export type Read = ReplayBuffer.Read

export class RecordHistory {
  head: Head | undefined = undefined
  /** Bytes of the frames held. */
  bytes = 0
  private items: Array<Entry | undefined> = []
  private start = 0

  get size(): number {
    return this.items.length - this.start
  }

  get headSeq(): number {
    return this.head?.seq ?? 0
  }

  oldest(): Entry | undefined {
    return this.items[this.start]
  }

  /** Append the record's next event (its `seq` must be the head's plus one). */
  append(entry: Entry): void {
    this.items.push(entry)
    this.bytes += entry.frame.byteLength
    this.head = { seq: entry.seq, id: entry.id }
  }

  /** Drop the oldest entry; returns it. */
  shift(): Entry | undefined {
    const entry = this.items[this.start]
    if (entry === undefined) return undefined
    this.items[this.start] = undefined
    this.start++
    this.bytes -= entry.frame.byteLength
    if (this.start === this.items.length) {
      this.items = []
      this.start = 0
    } else if (this.start >= 32 && this.start * 2 >= this.items.length) {
      // Compact, so dropped slots do not accumulate.
      this.items = this.items.slice(this.start)
      this.start = 0
    }
    return entry
  }

  /** Keep at most `maxEvents` entries and none older than `minAt`; calls `dropped` for each one removed. */
  trim(maxEvents: number, minAt: number, dropped?: (entry: Entry) => void): void {
    while (this.size > maxEvents) {
      const entry = this.shift()!
      dropped?.(entry)
    }
    for (let entry = this.oldest(); entry !== undefined && entry.at < minAt; entry = this.oldest()) {
      this.shift()
      dropped?.(entry)
    }
  }

  /**
   * The position of `lastEventId`: its most recent occurrence among the
   * entries (an etag may repeat), or the head (the client saw the newest
   * event; only its entry is gone).
   */
  position(lastEventId: string): Position {
    for (let i = this.items.length - 1; i >= this.start; i--) {
      const entry = this.items[i]!
      if (entry.id === lastEventId) return { _tag: "At", seq: entry.seq }
    }
    if (this.head !== undefined && this.head.id === lastEventId) return { _tag: "At", seq: this.head.seq }
    return { _tag: "Unknown" }
  }

  /**
   * The entries after `afterSeq`, oldest first, up to `maxBytes` and
   * `maxFrames` (at least one, when any follows); `Gone` when the entry after
   * `afterSeq` is no longer held (or `afterSeq` is ahead of the head, as after
   * a restart that lost the record).
   */
  read(afterSeq: number, maxBytes: number, maxFrames: number): Read {
    const headSeq = this.headSeq
    if (afterSeq === headSeq) return { _tag: "Entries", entries: [], lastSeq: headSeq }
    const oldest = this.oldest()
    if (afterSeq > headSeq || oldest === undefined || oldest.seq > afterSeq + 1) {
      return { _tag: "Gone", newestId: this.head?.id ?? "", lastSeq: headSeq }
    }
    const entries: Array<Entry> = []
    let bytes = 0
    // Dense sequence numbers: the entry after `afterSeq` sits at a known offset.
    for (let i = this.start + (afterSeq + 1 - oldest.seq); i < this.items.length; i++) {
      const entry = this.items[i]!
      if (entries.length > 0 && (bytes + entry.frame.byteLength > maxBytes || entries.length >= maxFrames)) break
      entries.push(entry)
      bytes += entry.frame.byteLength
    }
    return { _tag: "Entries", entries, lastSeq: headSeq }
  }

  /** The entries held, oldest first (a copy). */
  entries(): Array<Entry> {
    return this.items.slice(this.start) as Array<Entry>
  }
}
