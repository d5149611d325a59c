/**
 * One subscriber's bounded inbox of frames, filled synchronously by the hub's
 * fan-out and drained by whatever writes to the client (an `Outlet`: frames
 * go straight into an attached `Sink`, a web `ReadableStream`'s queue or a
 * socket, or wait to be polled). Pure data structure, no Effect.
 *
 * What a subscriber holds is bounded in frames and in bytes. Frames are the
 * ones every subscriber shares; nothing is copied per subscriber. A
 * subscriber is live (it takes frames as they are published) or behind: it
 * was too slow for its bound, saw a gap in the sequence, or is replaying
 * after a last event id. A subscriber behind takes no live frames; it reads
 * the record's history as its client drains (`Backfill`), in pieces no larger
 * than its bound, and turns live again once it has caught up. When the
 * history it needs is gone it gets `saacms-resync` and carries on from the
 * newest event: never a silent hole.
 *
 * @internal
 */
import type * as Event from "../Event.js"
import * as Frame from "../Frame.js"
import type * as Hub from "../Hub.js"
import type * as History from "./history.js"
import * as Outlet from "./outlet.js"

/** What flows to subscribers (see `Hub.Message`). */
export type Message = Hub.Message

/** Bounds of one subscriber: frames and bytes waiting for its client. */
export interface Limits {
  readonly maxFrames: number
  readonly maxBytes: number
}

/**
 * Messages of one record published within one turn of the event loop, with
 * consecutive sequence numbers: a subscriber that is live right before the
 * first takes them all as one chunk (concatenated once, shared by every
 * subscriber), so the runtime writes them to its socket in one go.
 */
export class Run {
  readonly first: number
  readonly last: number
  readonly bytes: number
  private joined: Uint8Array | undefined = undefined

  constructor(readonly messages: ReadonlyArray<Message>) {
    this.first = messages[0]!.seq
    this.last = messages[messages.length - 1]!.seq
    let bytes = 0
    for (const message of messages) bytes += message.frame.byteLength
    this.bytes = bytes
  }

  /** The frames as one chunk, built the first time a subscriber takes them whole. */
  get chunk(): Uint8Array {
    return this.joined ??= Frame.concat(this.messages.map((message) => message.frame))
  }
}

/** What the hub does for its mailboxes; one object shared by all of them. */
export interface Hooks {
  /**
   * Record frames handed on (live or replayed) since the hub last took the
   * count: plain arithmetic in the fan-out, reported as a metric once per
   * flush or batch of history reads.
   */
  delivered: number
  /** A `saacms-resync` frame was written. */
  readonly resynced: () => void
  /**
   * Read the history after `afterSeq` for `mailbox`; the answer comes back
   * through `fill` (or `unavailable`), at most one at a time.
   */
  readonly backfill: (mailbox: Mailbox, afterSeq: number, limits: Limits, generation: number) => void
  /** `mailbox` closed (once): release it. */
  readonly closed: (mailbox: Mailbox) => void
}

/**
 * How a mailbox that is one topic of a multiplexed stream writes: its record
 * frames, resyncs and revocations are framed by the stream (with its cursor),
 * and the stream's heartbeat and stall check are the stream's, not each
 * topic's. One object per stream, shared by its topics' mailboxes.
 */
export interface Framing {
  /** The bytes for consecutive record frames of `mailbox` (oldest first), written right after. */
  readonly records: (mailbox: Mailbox, messages: ReadonlyArray<{ readonly seq: number; readonly frame: Uint8Array }>) => Uint8Array
  /** The bytes telling the client `mailbox`'s history is gone, now at `seq` (id `newestId`). */
  readonly resync: (mailbox: Mailbox, newestId: string, seq: number) => Uint8Array
  /** The bytes ending `mailbox`'s topic, whose access ended; the mailbox closes right after. */
  readonly revoked: (mailbox: Mailbox, reason: Reason) => Uint8Array
  /** A heartbeat reached `mailbox`. */
  readonly keepalive: (mailbox: Mailbox) => void
  /** The hub's stall check reached `mailbox`: `true` when it ended the stream. */
  readonly checkStalled: (mailbox: Mailbox) => boolean
}

/** Why a subscription's access ended. */
export type Reason = "expired" | "forbidden"

type State = "opening" | "live" | "behind"

export class Mailbox extends Outlet.Outlet implements Hub.Subscriber {
  private state: State = "opening"
  /** The sequence number of the last record frame handed on. */
  lastSeq = 0
  /** The highest sequence number published so far, as far as this subscriber knows. */
  private liveHigh = 0
  private fetching = false
  /** Bumped by `reset`: an answer to a read asked before it is stale. */
  private generation = 0
  private pendingReset: readonly [string, number] | undefined = undefined
  /** A read came back with nothing that fit: wait until the client has taken everything. */
  private waitEmpty = false
  /** When this subscriber's access ends (`Clock` ms); checked by the hub at each publish and heartbeat. */
  expiresAt = Infinity
  /**
   * Whether this subscriber may see a record event (live: `event` is given;
   * replayed: decode it from `frame`); unset when no re-check is configured.
   */
  canSee: ((event: unknown, frame: Uint8Array) => boolean) | undefined = undefined
  /** Set when this mailbox is one topic of a multiplexed stream (before it begins). */
  framing: Framing | undefined = undefined
  /** Its topic's place in that stream. */
  slot = 0

  /**
   * @param key the record this subscriber follows
   * @param hooks what its hub does for it (one object for all its subscribers)
   * @param heartbeat whether the hub's heartbeat writes to it and checks it for stalls
   */
  constructor(
    readonly key: Event.ResourceKey,
    private readonly limits: Limits,
    private readonly hooks: Hooks,
    readonly heartbeat = true
  ) {
    super()
  }

  /**
   * Start: `opening` goes first, then what follows `fromSeq` (the history up
   * to `headSeq`, read as the client drains, then live frames). Frames
   * published since the subscriber registered are in the history too.
   */
  begin(fromSeq: number, headSeq: number, opening: Uint8Array | undefined): void {
    if (this.closed) return
    this.lastSeq = fromSeq
    this.liveHigh = Math.max(this.liveHigh, headSeq)
    if (opening !== undefined) this.put(opening)
    if (this.liveHigh > this.lastSeq) this.fallBehind()
    else this.state = "live"
    if (this.pendingReset !== undefined) {
      const [newestId, seq] = this.pendingReset
      this.pendingReset = undefined
      this.reset(newestId, seq)
    }
  }

  /**
   * Hand on a run of published messages, whole when this subscriber is live
   * right before it and has room for all of it, else one by one; returns
   * `false` when this made the subscriber fall behind its bound.
   */
  offerRun(run: Run): boolean {
    if (this.closed || run.last <= this.lastSeq) return true
    if (
      this.state !== "live" || this.canSee !== undefined || run.first !== this.lastSeq + 1 ||
      run.last - run.first + 1 !== run.messages.length || !this.room(run.bytes, run.messages.length)
    ) {
      let kept = true
      for (const message of run.messages) kept = this.offer(message) && kept
      return kept
    }
    this.lastSeq = run.last
    this.put(this.framing === undefined ? run.chunk : this.framing.records(this, run.messages), run.messages.length)
    this.hooks.delivered += run.messages.length
    return true
  }

  /** Hand on a published message; returns `false` when this made the subscriber fall behind its bound. */
  offer(message: Message): boolean {
    if (this.closed) return true
    const seq = message.seq
    if (seq === 0) {
      // A keepalive: useless, and not sent, while frames are waiting anyway.
      if (this.framing !== undefined) this.framing.keepalive(this)
      else if (this.state !== "opening" && this.queuedBytes === 0 && this.emptied()) this.put(message.frame)
      return true
    }
    if (this.state !== "live") {
      if (seq > this.liveHigh) this.liveHigh = seq
      return true
    }
    // Sequence numbers drop what was already handed on (history, duplicates).
    if (seq <= this.lastSeq) return true
    if (seq > this.lastSeq + 1) {
      // A gap (frames reordered, or from another instance): repair from the history.
      this.liveHigh = seq
      this.fallBehind()
      return true
    }
    if (!this.room(message.frame.byteLength)) {
      this.liveHigh = seq
      this.fallBehind()
      return false
    }
    if (this.canSee !== undefined && !this.canSee(message.event, message.frame)) {
      this.finish("forbidden")
      return true
    }
    this.lastSeq = seq
    this.put(this.framing === undefined ? message.frame : this.framing.records(this, [message]))
    this.hooks.delivered++
    return true
  }

  /**
   * The record's history was lost (a flushed Redis): send `saacms-resync`
   * with `newestId` and carry on live after `seq`.
   */
  reset(newestId: string, seq: number): void {
    if (this.closed) return
    if (this.state === "opening") {
      // Its position may come from the lost history: applied once it begins.
      this.pendingReset = [newestId, seq]
      return
    }
    this.generation++
    this.fetching = false
    this.waitEmpty = false
    this.put(this.framing === undefined ? Frame.resync(newestId) : this.framing.resync(this, newestId, seq))
    this.hooks.resynced()
    this.lastSeq = seq
    this.liveHigh = seq
    this.state = "live"
  }

  /** Frames up to `headSeq` exist (a source that reconnected may have missed some): catch up if behind. */
  noteHead(headSeq: number): void {
    if (this.closed || headSeq <= this.liveHigh) return
    this.liveHigh = headSeq
    if (this.state === "live" && headSeq > this.lastSeq) this.fallBehind()
  }

  /** The answer to a backfill: write what fits, then turn live or ask for more. */
  fill(read: History.Read, generation: number): void {
    if (generation !== this.generation) return
    if (this.closed) {
      this.fetching = false
      return
    }
    // Still fetching while it writes: a sink that pulls on a write must not
    // ask for the same piece again.
    let wrote = false
    if (read._tag === "Gone") {
      this.put(
        this.framing === undefined ? Frame.resync(read.newestId) : this.framing.resync(this, read.newestId, read.lastSeq)
      )
      this.hooks.resynced()
      this.lastSeq = read.lastSeq
      wrote = true
    } else {
      let written = 0
      for (const entry of read.entries) {
        if (this.closed) break
        if (entry.seq <= this.lastSeq) continue
        if (entry.seq !== this.lastSeq + 1 || !this.room(entry.frame.byteLength)) break
        if (this.canSee !== undefined && !this.canSee(undefined, entry.frame)) {
          this.hooks.delivered += written
          this.fetching = false
          this.finish("forbidden")
          return
        }
        this.lastSeq = entry.seq
        this.put(this.framing === undefined ? entry.frame : this.framing.records(this, [entry]))
        written++
      }
      this.hooks.delivered += written
      wrote = written > 0
    }
    this.fetching = false
    if (this.closed) return
    if (read.lastSeq > this.liveHigh) this.liveHigh = read.lastSeq
    if (this.lastSeq >= this.liveHigh) {
      this.state = "live"
      return
    }
    this.waitEmpty = !wrote
    this.requestFill()
  }

  /** The backend could not answer a backfill: end the stream (the client reconnects and resumes). */
  unavailable(generation: number): void {
    if (generation !== this.generation) return
    this.fetching = false
    this.close()
  }

  /** The client has taken everything it was handed: a subscriber behind reads on. */
  drained(): void {
    this.sinkFrames = 0
    this.waitEmpty = false
    if (this.state === "behind") this.requestFill()
  }

  /** Send `saacms-revoked` with `reason` last, after what is pending, and close. */
  finish(reason: Reason): void {
    if (this.closed) return
    if (this.framing !== undefined) this.put(this.framing.revoked(this, reason))
    else if (this.state !== "opening") this.put(reason === "expired" ? revokedExpired : revokedForbidden)
    this.close()
  }

  /**
   * End this subscriber if its client took nothing since the last call while
   * frames were waiting (see `Outlet.stalled`; for a topic of a multiplexed
   * stream, the stream's check). Called once per heartbeat; returns `true`
   * when it ended the subscriber.
   */
  checkStalled(): boolean {
    if (this.closed) return false
    return this.framing === undefined ? this.stalled() : this.framing.checkStalled(this)
  }

  protected ended(): void {
    this.hooks.closed(this)
  }

  // Room for `frames` frames of `bytes` in all. A subscriber holding nothing
  // takes one frame of any size (or a run within its bounds).
  private room(bytes: number, frames = 1): boolean {
    const queuedBytes = this.queuedBytes
    if (queuedBytes === 0 && (frames === 1 || (bytes <= this.limits.maxBytes && frames <= this.limits.maxFrames))) {
      return this.emptied()
    }
    return queuedBytes + bytes <= this.limits.maxBytes &&
      this.pendingFrames + this.sinkFrames + frames <= this.limits.maxFrames
  }

  // The client has taken everything: no frame is in the sink's queue either.
  private emptied(): true {
    this.sinkFrames = 0
    return true
  }

  private fallBehind(): void {
    this.state = "behind"
    this.requestFill()
  }

  private requestFill(): void {
    if (this.fetching || this.closed || this.state !== "behind") return
    const queued = this.queuedBytes
    if (this.waitEmpty && queued > 0) return
    const room = this.limits.maxBytes - queued
    const frames = this.limits.maxFrames - this.pendingFrames - this.sinkFrames
    if (queued > 0 && (room <= 0 || frames <= 0)) return
    this.fetching = true
    this.hooks.backfill(this, this.lastSeq, {
      maxBytes: Math.max(room, 1),
      maxFrames: Math.max(frames, 1)
    }, this.generation)
  }

}

/**
 * The mailbox behind a hub's subscriber, for the machinery that frames it
 * (a multiplexed stream): `Hub.make` makes only mailboxes, so anything else
 * is a defect (a `Hub` built some other way), closed before it is thrown.
 */
export const fromSubscriber = (subscriber: Hub.Subscriber): Mailbox => {
  if (subscriber instanceof Mailbox) return subscriber
  subscriber.close()
  throw new TypeError("not a subscriber of Hub.make's hub")
}

const revokedForbidden = Frame.revoked("forbidden")
const revokedExpired = Frame.revoked("expired")
