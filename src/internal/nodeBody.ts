/**
 * A subscriber's frames as the raw body of a Node response. Its server,
 * `@effect/platform-node`, pipes a raw body that has a `pipe` method into the
 * response with `stream.pipeline`, which takes an async iterable as its
 * source. So a Node stream costs its suspended request fiber and this
 * iterator: an Effect `Stream` run per client holds about 20 KiB more.
 *
 * The iterator ends when the mailbox closes; a consumer that stops (the
 * response failed) closes it. The route also closes the mailbox when its
 * request scope ends (the client left while nothing was published).
 *
 * @internal
 */
/** What a `NodeBody` reads (a mailbox, or a multiplexed stream). */
export interface Pollable {
  readonly done: boolean
  poll(): Array<Uint8Array> | undefined
  drained(): void
  onWake(f: (() => void) | undefined): void
  close(): void
}

const done: IteratorResult<Uint8Array> = { done: true, value: undefined }

/** What `pipe` needs of a destination (a Node `Writable`). */
interface Writable {
  write(chunk: Uint8Array): boolean
  end(): void
  once(event: "drain" | "close", listener: () => void): unknown
}

export class NodeBody implements AsyncIterableIterator<Uint8Array> {
  private chunks: Array<Uint8Array> | undefined = undefined
  private index = 0

  constructor(private readonly mailbox: Pollable) {}

  [Symbol.asyncIterator](): this {
    return this
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    const chunk = this.take()
    if (chunk !== undefined) return Promise.resolve({ done: false, value: chunk })
    if (this.mailbox.done) return Promise.resolve(done)
    // Back for more with nothing waiting: the last chunk was written.
    this.mailbox.drained()
    return new Promise((resolve) => this.mailbox.onWake(() => resolve(this.next())))
  }

  return(): Promise<IteratorResult<Uint8Array>> {
    this.mailbox.onWake(undefined)
    this.mailbox.close()
    return Promise.resolve(done)
  }

  /**
   * Write every chunk to `destination`, waiting for `drain` when it asks to,
   * and end it when the mailbox closes; the mailbox closes if it closes first.
   */
  pipe<W extends Writable>(destination: W): W {
    let closed = false
    destination.once("close", () => {
      closed = true
      void this.return()
    })
    void (async () => {
      for await (const chunk of this) {
        if (closed) return
        if (!destination.write(chunk)) await new Promise<void>((resolve) => destination.once("drain", resolve))
      }
      if (!closed) destination.end()
    })()
    return destination
  }

  private take(): Uint8Array | undefined {
    if (this.chunks === undefined || this.index === this.chunks.length) {
      this.chunks = this.mailbox.poll()
      this.index = 0
      if (this.chunks === undefined) return undefined
    }
    return this.chunks[this.index++]
  }
}
