/**
 * What a client's connection drains: chunks of frames waiting for it, handed
 * straight to a `Sink` once one is attached (a web stream's queue, a socket)
 * or taken with `poll` (an Effect `Stream`, a Node body). A subscriber's
 * mailbox is one; a multiplexed stream, which its topics' mailboxes write
 * into, is another. Pure data structure, no Effect.
 *
 * It counts what it handed on against what its client took, which is how a
 * client that stopped reading is found (`stalled`), and the frames in what
 * waits (a mailbox's bound is in frames as well as bytes).
 *
 * @internal
 */

/**
 * Where an attached outlet writes. The sink says how many bytes it holds
 * that its client has not taken; a `write` that throws, or a sink that
 * reports its client gone through `lost()`, ends the outlet.
 */
export interface Sink {
  readonly queued: () => number
  readonly write: (chunk: Uint8Array) => void
  /** The outlet closed: end the client's stream after what it holds. */
  readonly end: () => void
  /** The outlet was aborted: drop what the sink holds and end the client's stream now. */
  readonly abort: () => void
}

export abstract class Outlet {
  /** Chunks not yet handed to a sink (or polled), and the frames and bytes they hold. */
  protected pending: Array<Uint8Array> = []
  protected pendingFrames = 0
  protected pendingBytes = 0
  protected sink: Sink | undefined = undefined
  /** Frames handed to the sink since it was last seen empty. */
  protected sinkFrames = 0
  protected closed = false
  private wake: (() => void) | undefined = undefined
  /** Bytes handed on, and how many of them the client had taken at the last `stalled`. */
  private written = 0
  private takenAtCheck = -1

  /** The client has taken everything it was handed. */
  abstract drained(): void

  /** The outlet has closed (`aborted`: what was pending was dropped), its sink has ended. */
  protected abstract ended(aborted: boolean): void

  /** `true` when no chunk is pending and none will come. */
  get done(): boolean {
    return this.closed && this.pending.length === 0
  }

  /** Bytes waiting for the client: pending here and held by the sink. */
  get queuedBytes(): number {
    return this.pendingBytes + (this.sink === undefined ? 0 : this.sink.queued())
  }

  /**
   * Take the pending chunks (shared, not copied). The reader calls `drained`
   * when it comes back for more and finds none: only then has its client
   * taken what it was handed.
   */
  poll(): Array<Uint8Array> | undefined {
    const chunks = this.pending
    if (chunks.length === 0) return undefined
    this.pending = []
    this.pendingFrames = 0
    this.pendingBytes = 0
    return chunks
  }

  /** Call `f` once, the next time a chunk is queued or the outlet closes. */
  onWake(f: (() => void) | undefined): void {
    this.wake = f
  }

  /**
   * Write to `sink` from now on, starting with what is pending; if the
   * outlet has already closed, the sink gets it and ends.
   */
  attach(sink: Sink): void {
    const chunks = this.pending
    this.pending = []
    this.sinkFrames = this.pendingFrames
    this.pendingFrames = 0
    this.pendingBytes = 0
    for (const chunk of chunks) sink.write(chunk)
    if (this.closed) sink.end()
    else this.sink = sink
  }

  /** No more chunks will be accepted; what is pending still reaches the client. */
  close(): void {
    if (this.closed) return
    this.closed = true
    const sink = this.sink
    this.sink = undefined
    sink?.end()
    this.notify()
    this.ended(false)
  }

  /** End now and drop what is waiting (the client's stream fails; its memory goes at once). */
  abort(): void {
    if (this.closed) return
    this.closed = true
    this.pending = []
    this.pendingFrames = 0
    this.pendingBytes = 0
    const sink = this.sink
    this.sink = undefined
    sink?.abort()
    this.notify()
    this.ended(true)
  }

  /** The client went away (its stream was cancelled, or a write threw): drop the sink and end. */
  lost(): void {
    this.sink = undefined
    this.abort()
  }

  /**
   * A web stream of the outlet's chunks (call once, instead of `poll`);
   * cancelling it ends the outlet. Chunks go straight into the stream's
   * queue (the runtime writes what has queued up together); the queue counts
   * bytes, and the runtime pulls when it is empty, which is `drained`.
   */
  toReadableStream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>(new StreamSource(this), byteCount)
  }

  /** `chunk`, holding `frames` frames (a run), or one, goes to the client. */
  protected put(chunk: Uint8Array, frames = 1): void {
    this.written += chunk.byteLength
    const sink = this.sink
    if (sink === undefined) {
      this.pending.push(chunk)
      this.pendingFrames += frames
      this.pendingBytes += chunk.byteLength
      this.notify()
      return
    }
    try {
      sink.write(chunk)
      this.sinkFrames += frames
    } catch {
      // The runtime ended the stream before telling us (a failed write).
      this.lost()
    }
  }

  /**
   * Abort if the client took nothing since the last call while chunks were
   * waiting: it is gone without a word (workerd never cancels an object's
   * stream) or stalled; a client still there reconnects and resumes. Called
   * once per heartbeat; `true` when it aborted.
   */
  protected stalled(): boolean {
    const queued = this.queuedBytes
    const taken = this.written - queued
    const stalled = queued > 0 && taken === this.takenAtCheck
    this.takenAtCheck = taken
    if (stalled) this.abort()
    return stalled
  }

  private notify(): void {
    const wake = this.wake
    if (wake !== undefined) {
      this.wake = undefined
      wake()
    }
  }
}

// A high-water mark of one byte: desiredSize is 1 minus the bytes queued.
const byteCount: QueuingStrategy<Uint8Array> = { highWaterMark: 1, size: (chunk) => chunk?.byteLength ?? 0 }

/**
 * The web stream's source and the outlet's sink at once: chunks go straight
 * into the stream's queue, the runtime pulls when the queue is empty (the
 * outlet is drained), cancelling ends the outlet. A class, so that an outlet
 * holds no closures of its own.
 */
class StreamSource implements UnderlyingDefaultSource<Uint8Array>, Sink {
  private controller: ReadableStreamDefaultController<Uint8Array> | undefined = undefined

  constructor(private readonly outlet: Outlet) {}

  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.controller = controller
    this.outlet.attach(this)
  }

  pull(): void {
    this.outlet.drained()
  }

  cancel(): void {
    this.outlet.lost()
  }

  queued(): number {
    const desired = this.controller!.desiredSize
    return desired === null ? 0 : Math.max(0, 1 - desired)
  }

  write(chunk: Uint8Array): void {
    this.controller!.enqueue(chunk)
  }

  end(): void {
    try {
      this.controller!.close()
    } catch {
      // Already closed or errored by the runtime: nothing left to end.
    }
  }

  abort(): void {
    try {
      // No reason: Bun logs the reason of a failed response body.
      this.controller!.error()
    } catch {
      // Already closed or errored.
    }
  }
}
