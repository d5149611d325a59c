/**
 * One subscriber's bounded inbox of frames, filled synchronously by the hub's
 * fan-out and drained by whatever writes to the client: a `Sink` (a web
 * `ReadableStream`'s queue today, a WebSocket later), where frames go straight
 * through, or an Effect `Stream`, which takes them here coalesced. Pure data
 * structure, no Effect.
 *
 * @internal
 */
export interface Message {
  readonly seq: number
  readonly frame: Uint8Array
  /** The record event the frame encodes, for access re-checks (absent for `:keepalive`). */
  readonly event?: unknown
}

/**
 * Where an attached mailbox writes: frames go to the sink as they arrive, and
 * the sink says how many it holds unwritten (the mailbox ends a subscriber
 * whose backlog reaches its capacity). A `write` that throws, or a sink that
 * reports its client gone through `Mailbox.lost()`, closes the mailbox.
 */
export interface Sink {
  readonly backlog: () => number
  readonly write: (chunk: Uint8Array) => void
  /** The mailbox closed: end the client's stream cleanly. */
  readonly end: () => void
}

/** Largest chunk `poll` hands out at once (frames are coalesced up to it). */
const maxChunkBytes = 64 * 1024

export class Mailbox {
  private frames: Array<Uint8Array> = []
  private early: Array<Message> | undefined = []
  private lastSeq = 0
  private closed = false
  private wake: (() => void) | undefined = undefined
  private sink: Sink | undefined = undefined
  private closer: (() => void) | undefined = undefined
  /** When this subscriber's access ends (`Clock` ms); checked at each publish and heartbeat. */
  expiresAt = Infinity
  /** Whether this subscriber may still see a record event; unset when no re-check is configured. */
  canSee: ((event: unknown) => boolean) | undefined = undefined
  /** Chunks handed to the sink, and how many of them it had taken at the last `checkStalled`. */
  private written = 0
  private takenAtCheck = -1

  constructor(private readonly capacity: number) {}

  /** `true` when no frame is pending and none will come. */
  get done(): boolean {
    return this.closed && this.frames.length === 0
  }

  /**
   * Set the starting point: `opening` goes first, then the messages after
   * `lastSeq`. Messages offered before this call are kept and filtered here
   * (gapless handoff: the subscriber registered before it read the history).
   */
  begin(lastSeq: number, opening: ReadonlyArray<Uint8Array>): void {
    const early = this.early ?? []
    this.early = undefined
    this.lastSeq = lastSeq
    this.frames = [...opening]
    for (const message of early) this.offer(message)
    this.notify()
  }

  /** Add a message; returns `false` when this made the subscriber too slow. */
  offer(message: Message): boolean {
    if (this.closed) return true
    if (this.early !== undefined) {
      if (this.early.length >= this.capacity) return this.overflow()
      this.early.push(message)
      return true
    }
    if (message.seq !== 0) {
      // Sequence numbers drop what the history already delivered.
      if (message.seq <= this.lastSeq) return true
      this.lastSeq = message.seq
    }
    const sink = this.sink
    if (sink !== undefined) {
      // The sink holds what the client has not taken yet.
      if (sink.backlog() >= this.capacity) return this.overflow()
      try {
        sink.write(message.frame)
        this.written++
      } catch {
        // The runtime ended the stream before telling us (a failed write).
        this.lost()
      }
      return true
    }
    // No silent loss: stop at the last frame before the one we cannot hold.
    if (this.frames.length >= this.capacity) return this.overflow()
    this.frames.push(message.frame)
    this.notify()
    return true
  }

  /** Take the pending frames, coalesced into one chunk of at most 64 KiB (or one larger frame). */
  poll(): Uint8Array | undefined {
    const frames = this.frames
    if (frames.length === 0) return undefined
    if (frames.length === 1) {
      this.frames = []
      return frames[0]
    }
    let count = 0
    let length = 0
    while (count < frames.length && (count === 0 || length + frames[count]!.byteLength <= maxChunkBytes)) {
      length += frames[count]!.byteLength
      count++
    }
    const out = new Uint8Array(length)
    let offset = 0
    for (let i = 0; i < count; i++) {
      out.set(frames[i]!, offset)
      offset += frames[i]!.byteLength
    }
    this.frames = count === frames.length ? [] : frames.slice(count)
    return out
  }

  /** Send `frame` last, after what is pending, and close (a revoked subscription). */
  finish(frame: Uint8Array): void {
    if (this.closed) return
    if (this.early === undefined) this.offer({ seq: 0, frame })
    this.close()
  }

  /** Call `f` once, the next time a frame is queued or the mailbox closes. */
  onWake(f: (() => void) | undefined): void {
    this.wake = f
  }

  /** Call `f` once when the mailbox closes (now, if it already has); replaces an earlier `f`. */
  onClose(f: () => void): void {
    if (this.closed) f()
    else this.closer = f
  }

  /** No more frames will be accepted; pending ones can still be polled. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.early = undefined
    const sink = this.sink
    this.sink = undefined
    sink?.end()
    this.notify()
    const closer = this.closer
    this.closer = undefined
    closer?.()
  }

  /**
   * Send this mailbox's frames to `sink` from now on, starting with those
   * pending; if the mailbox has already closed, the sink gets them and ends.
   */
  attach(sink: Sink): void {
    for (let chunk = this.poll(); chunk !== undefined; chunk = this.poll()) {
      sink.write(chunk)
      this.written++
    }
    if (this.closed) sink.end()
    else this.sink = sink
  }

  /**
   * Close this subscriber if its sink took nothing since the last call while
   * frames were waiting: its client is gone without a word (workerd never
   * cancels an object's stream) or stalled. Called once per heartbeat; returns
   * `true` when it closed the subscriber.
   */
  checkStalled(): boolean {
    const sink = this.sink
    if (sink === undefined) return false
    const backlog = sink.backlog()
    const taken = this.written - backlog
    const stalled = backlog > 0 && taken === this.takenAtCheck
    this.takenAtCheck = taken
    // Ended like a too-slow subscriber: a client still there reconnects and replays.
    if (stalled) this.close()
    return stalled
  }

  /** The client went away (its stream was cancelled, or a write threw): drop the sink and close. */
  lost(): void {
    this.sink = undefined
    this.close()
  }

  /**
   * A web stream of this mailbox's frames; cancelling it closes the mailbox.
   * Frames go straight into the stream's queue (the runtime writes what has
   * queued up together), at most `capacity` of them waiting.
   */
  toReadableStream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      start: (controller) =>
        this.attach({
          // One chunk is the stream's high-water mark: past it, frames are waiting.
          backlog: () => -controller.desiredSize!,
          write: (chunk) => controller.enqueue(chunk),
          end: () => {
            try {
              controller.close()
            } catch {
              // Already closed or errored by the runtime: nothing left to end.
            }
          }
        }),
      cancel: () => this.lost()
    })
  }

  private overflow(): false {
    this.close()
    return false
  }

  private notify(): void {
    const wake = this.wake
    if (wake !== undefined) {
      this.wake = undefined
      wake()
    }
  }
}
