/**
 * One subscriber's bounded inbox of frames, filled synchronously by the hub's
 * fan-out and drained by whatever writes to the client (a web `ReadableStream`
 * or an Effect `Stream`). Pure data structure, no Effect.
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
  private overflowed = false
  private wake: (() => void) | undefined = undefined
  private closers: Array<() => void> = []

  constructor(private readonly capacity: number) {}

  /** `true` once the subscriber fell more than `capacity` frames behind. */
  get tooSlow(): boolean {
    return this.overflowed
  }

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
      this.early.push(message)
      return true
    }
    if (message.seq !== 0) {
      // Sequence numbers drop what the history already delivered.
      if (message.seq <= this.lastSeq) return true
      this.lastSeq = message.seq
    }
    if (this.frames.length >= this.capacity) {
      // No silent loss: stop at the last frame before the one we cannot hold.
      this.overflowed = true
      this.close()
      return false
    }
    this.frames.push(message.frame)
    this.notify()
    return true
  }

  /** Take the pending frames (coalesced into one chunk of at most 64 KiB unless one frame is larger). */
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

  /** Call `f` once, the next time a frame arrives or the mailbox closes. */
  onWake(f: (() => void) | undefined): void {
    this.wake = f
  }

  /** Call `f` once when the mailbox closes (now, if it already has). */
  onClose(f: () => void): void {
    if (this.closed) f()
    else this.closers.push(f)
  }

  /** No more frames will be accepted; pending ones can still be polled. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.early = undefined
    this.notify()
    const closers = this.closers
    this.closers = []
    for (const f of closers) f()
  }

  private notify(): void {
    const wake = this.wake
    if (wake !== undefined) {
      this.wake = undefined
      wake()
    }
  }
}

/**
 * A web `ReadableStream` over a mailbox: frames are enqueued as they arrive
 * while the stream wants more, coalesced while the client is behind. Cancelling
 * the stream closes the mailbox.
 */
export const toReadableStream = (mailbox: Mailbox): ReadableStream<Uint8Array> =>
  new ReadableStream<Uint8Array>({
    pull(controller) {
      const chunk = mailbox.poll()
      if (chunk !== undefined) return controller.enqueue(chunk)
      if (mailbox.done) return controller.close()
      return new Promise<void>((resolve) => {
        mailbox.onWake(() => {
          const chunk = mailbox.poll()
          if (chunk !== undefined) controller.enqueue(chunk)
          else if (mailbox.done) controller.close()
          resolve()
        })
      })
    },
    cancel() {
      mailbox.onWake(undefined)
      mailbox.close()
    }
  })
