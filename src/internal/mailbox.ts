/**
 * One subscriber's bounded inbox of frames, filled synchronously by the hub's
 * fan-out and drained by whatever writes to the client: a web `ReadableStream`
 * (frames go straight into its queue) or an Effect `Stream` (frames wait here
 * and are taken coalesced). Pure data structure, no Effect.
 *
 * @internal
 */
export interface Message {
  readonly seq: number
  readonly frame: Uint8Array
}

/** Largest chunk `poll` hands out at once (frames are coalesced up to it). */
const maxChunkBytes = 64 * 1024

export class Mailbox {
  private frames: Array<Uint8Array> = []
  private early: Array<Message> | undefined = []
  private lastSeq = 0
  private closed = false
  private wake: (() => void) | undefined = undefined
  private controller: ReadableStreamDefaultController<Uint8Array> | undefined = undefined
  private closer: (() => void) | undefined = undefined

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
    const controller = this.controller
    if (controller !== undefined) {
      // The stream's own queue holds what the socket has not taken yet.
      if (controller.desiredSize! <= -this.capacity) return this.overflow()
      try {
        controller.enqueue(message.frame)
      } catch {
        // The runtime ended the stream before telling us (a failed write).
        this.controller = undefined
        this.close()
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
    if (this.controller !== undefined) this.endStream()
    this.notify()
    const closer = this.closer
    this.closer = undefined
    closer?.()
  }

  /**
   * A web stream of this mailbox's frames; cancelling it closes the mailbox.
   * Frames go straight into the stream's queue (the runtime writes what has
   * queued up together), at most `capacity` of them waiting.
   */
  toReadableStream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        for (let chunk = this.poll(); chunk !== undefined; chunk = this.poll()) controller.enqueue(chunk)
        if (this.closed) controller.close()
        else this.controller = controller
      },
      cancel: () => {
        this.controller = undefined
        this.close()
      }
    })
  }

  private overflow(): false {
    this.close()
    return false
  }

  private endStream(): void {
    const controller = this.controller
    this.controller = undefined
    try {
      controller?.close()
    } catch {
      // Already closed or errored by the runtime: nothing left to end.
    }
  }

  private notify(): void {
    const wake = this.wake
    if (wake !== undefined) {
      this.wake = undefined
      wake()
    }
  }
}
