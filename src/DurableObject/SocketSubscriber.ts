/**
 * The Worker side of a hibernatable subscription: the Worker holds the
 * client's SSE response and its heartbeat, and reads the record's object
 * through one WebSocket per client (workerd does not let a request use a
 * socket another request opened). The object sends exactly the client's SSE
 * bytes; the Worker remembers the last event id it forwarded, so that when the
 * socket breaks, or is dropped because the client stopped reading, it connects
 * again with that id and the object replays what followed (or sends
 * `saacms-resync`): no gap, no duplicate.
 *
 * @since 0.1.0
 */
import * as Frame from "../Frame.js"
import * as Realtime from "../Realtime.js"
import * as Socket from "./Socket.js"
import { everyInterval } from "./timer.js"

/**
 * The part of a workerd client `WebSocket` the Worker uses.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClientSocketLike {
  accept(): void
  send(message: string): void
  close(code?: number, reason?: string): void
  addEventListener(type: "message", listener: (event: { readonly data: unknown }) => void): void
  addEventListener(type: "close", listener: (event: { readonly code: number }) => void): void
  addEventListener(type: "error", listener: () => void): void
}

/**
 * What a subscription needs from its Worker: a socket to the record's object,
 * resumed after `lastEventId` (the opening is sent only on the first).
 *
 * @since 0.1.0
 * @category models
 */
export type Connect = (lastEventId: string | undefined, resume: boolean) => Promise<ClientSocketLike | undefined>

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `:keepalive` to the client and a `ping` to the object, this often. */
  readonly heartbeatMs: number
  /** Bytes the client may leave unread before the socket is dropped, to be resumed when it reads again. */
  readonly maxQueuedBytes: number
  /** When the grant ends (`Clock` ms): `saacms-revoked` at the next heartbeat. */
  readonly expiresAt?: number | undefined
  /** The current time (`Clock` ms). */
  readonly now: () => number
}

const idLine = new TextEncoder().encode("\nid: ")
const decoder = new TextDecoder()

/** The id of the last frame in `chunk` that has one (a `:keepalive` has none). */
const lastIdIn = (chunk: Uint8Array): string | undefined => {
  outer: for (let i = chunk.length - idLine.length; i >= 0; i--) {
    for (let j = 0; j < idLine.length; j++) {
      if (chunk[i + j] !== idLine[j]) continue outer
    }
    const start = i + idLine.length
    const end = chunk.indexOf(10, start)
    return decoder.decode(chunk.subarray(start, end === -1 ? chunk.length : end))
  }
  return undefined
}

/**
 * One client's subscription through its own socket to the record's object.
 *
 * @since 0.1.0
 * @category constructors
 */
export class SocketSubscriber implements Realtime.Subscriber {
  #socket: ClientSocketLike | undefined
  #lastId: string | undefined
  #controller: ReadableStreamDefaultController<Uint8Array> | undefined = undefined
  #stopTimer: (() => void) | undefined = undefined
  #ended = false
  /** The socket was dropped while the client was behind: connect again when it reads. */
  #paused = false
  #connecting = false

  constructor(
    socket: ClientSocketLike,
    lastEventId: string | undefined,
    private readonly connect: Connect,
    private readonly options: Options
  ) {
    this.#socket = socket
    this.#lastId = lastEventId
  }

  toReadableStream(): ReadableStream<Uint8Array> {
    return Socket.throughNativePipe(new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller
        this.#listen(this.#socket!)
        // The Worker's heartbeat: the request that holds the stream runs it.
        this.#stopTimer = everyInterval(this.options.heartbeatMs, () => this.#beat())
      },
      pull: () => this.#resume(),
      cancel: () => this.close()
    }, { highWaterMark: 1, size: (chunk) => chunk?.byteLength ?? 0 }))
  }

  close(): void {
    if (this.#ended) return
    this.#ended = true
    this.#stopTimer?.()
    const socket = this.#socket
    this.#socket = undefined
    if (socket !== undefined) Socket.close(socket, 1000, "client gone")
    try {
      this.#controller?.close()
    } catch {
      // Already closed or cancelled.
    }
  }

  #listen(socket: ClientSocketLike): void {
    socket.addEventListener("message", (event) => {
      if (this.#socket !== socket || this.#ended) return
      const data = event.data
      if (typeof data === "string") return // the object's `pong`
      const chunk = data instanceof Uint8Array ? data : new Uint8Array(data as ArrayBuffer)
      const id = lastIdIn(chunk)
      if (id !== undefined) this.#lastId = id
      this.#write(chunk)
      const desired = this.#controller?.desiredSize
      if (desired !== undefined && desired !== null && 1 - desired > this.options.maxQueuedBytes) {
        // The client is behind: drop the socket, resume from its last id when it reads.
        this.#paused = true
        this.#socket = undefined
        Socket.close(socket, 1000, "client behind")
      }
    })
    const lost = () => {
      if (this.#socket !== socket || this.#ended) return
      // The object went away (evicted without hibernating, redeployed) or the
      // socket broke: connect again after the last id forwarded.
      this.#socket = undefined
      void this.#reconnect()
    }
    socket.addEventListener("close", (event) => {
      // 1000: the object ended the subscription itself (a revoked grant, its
      // shutdown), after the frame that says why.
      if (event.code === 1000 && this.#socket === socket) this.close()
      else lost()
    })
    socket.addEventListener("error", lost)
  }

  #resume(): void {
    if (!this.#paused || this.#ended) return
    this.#paused = false
    void this.#reconnect()
  }

  async #reconnect(): Promise<void> {
    if (this.#connecting || this.#ended) return
    this.#connecting = true
    const socket = await this.connect(this.#lastId, true).catch(() => undefined)
    this.#connecting = false
    if (this.#ended) {
      if (socket !== undefined) Socket.close(socket, 1000, "client gone")
      return
    }
    if (socket === undefined) {
      // The object cannot be reached: end cleanly; the client reconnects with its last id.
      this.close()
      return
    }
    this.#socket = socket
    this.#listen(socket)
  }

  #beat(): void {
    if (this.#ended) return
    const expiresAt = this.options.expiresAt
    if (expiresAt !== undefined && expiresAt <= this.options.now()) {
      this.#write(Frame.revoked("expired"))
      this.close()
      return
    }
    if ((this.#controller?.desiredSize ?? 0) > 0) this.#write(Frame.keepalive)
    try {
      this.#socket?.send(Socket.ping)
    } catch {
      // A broken socket says so through its close event.
    }
  }

  #write(chunk: Uint8Array): void {
    try {
      this.#controller?.enqueue(chunk)
    } catch {
      this.close()
    }
  }
}
