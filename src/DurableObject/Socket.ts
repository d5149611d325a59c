/**
 * Subscribers of a Durable Object over hibernatable WebSockets: the Worker
 * that holds a client's SSE response connects to the record's object with a
 * WebSocket, which the object accepts with `state.acceptWebSocket`, so the
 * object holds no request and runs no timer while nobody publishes, and the
 * runtime may evict it from memory (hibernate) while its sockets stay open.
 *
 * Each socket carries exactly the SSE bytes its client gets (the opening, what
 * it missed, then live frames), one binary message per chunk. Its grant rides
 * in the socket's attachment, which survives hibernation; a woken object
 * re-attaches every socket at the head of the record (it only hibernated once
 * every socket had been handed everything).
 *
 * @since 0.1.0
 */
import type * as Outlet from "../internal/outlet.js"

/**
 * The part of a workerd `WebSocket` the object uses (structural, so the
 * package entry never imports `cloudflare:workers`).
 *
 * @since 0.1.0
 * @category models
 */
export interface WebSocketLike {
  send(message: ArrayBuffer | ArrayBufferView | string): void
  close(code?: number, reason?: string): void
  serializeAttachment(value: unknown): void
  deserializeAttachment(): unknown
}

/**
 * What a socket's attachment holds: the grant its Worker forwarded, its
 * expiry and its subject as sent (percent-encoded JSON), read again the same
 * way when the object wakes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Attachment {
  readonly expiresAt?: number | undefined
  readonly subject?: string | undefined
}

/**
 * The attachment of `socket`, or none when it holds something else.
 *
 * @since 0.1.0
 * @category utils
 */
export const attachmentOf = (socket: WebSocketLike): Attachment => {
  let value: unknown
  try {
    value = socket.deserializeAttachment()
  } catch {
    return {}
  }
  if (typeof value !== "object" || value === null) return {}
  const { expiresAt, subject } = value as { expiresAt?: unknown; subject?: unknown }
  return {
    expiresAt: typeof expiresAt === "number" ? expiresAt : undefined,
    subject: typeof subject === "string" ? subject : undefined
  }
}

/**
 * A mailbox's sink over a socket. workerd gives no backpressure on a server
 * socket's `send`, so the sink reports nothing queued: the Worker on the other
 * end bounds what its client holds. A mailbox that ends closes the socket
 * (normally after a revocation, 1011 when it was cut).
 *
 * @since 0.1.0
 * @category constructors
 */
export class SocketSink implements Outlet.Sink {
  constructor(readonly socket: WebSocketLike) {}

  queued(): number {
    return 0
  }

  write(chunk: Uint8Array): void {
    this.socket.send(chunk)
  }

  end(): void {
    close(this.socket, 1000, "end of stream")
  }

  abort(): void {
    close(this.socket, 1011, "stream ended")
  }
}

/**
 * The keepalive a Worker sends on its socket, and the answer the object's
 * runtime gives without waking the object.
 *
 * @since 0.1.0
 * @category models
 */
export const ping = "ping"

/**
 * @since 0.1.0
 * @category models
 */
export const pong = "pong"

/**
 * On a socket subscribe request: the client already has its opening (the
 * Worker connects again after a broken socket), so the object sends none.
 *
 * @since 0.1.0
 * @category models
 */
export const resumeHeader = "X-Saacms-Resume"

/** workerd's native byte pipe (absent elsewhere). */
const IdentityTransformStream = (globalThis as {
  readonly IdentityTransformStream?: new() => TransformStream<Uint8Array, Uint8Array>
}).IdentityTransformStream

/**
 * `body` as a client's response body that releases its subscriber when the
 * client leaves. workerd never cancels a JS stream whose client left, and
 * keeps taking from it at times; writes through its native pipe fail instead,
 * and the failed pipe cancels `body`. Elsewhere, `body` itself.
 *
 * @since 0.1.0
 * @category utils
 */
export const throughNativePipe = (body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> => {
  if (IdentityTransformStream === undefined) return body
  const pipe = new IdentityTransformStream()
  body.pipeTo(pipe.writable).catch(() => {
    // Released by the cancel.
  })
  return pipe.readable
}

/**
 * Close `socket`, ignoring one already closed.
 *
 * @since 0.1.0
 * @category utils
 */
export const close = (socket: { close(code?: number, reason?: string): void }, code: number, reason: string): void => {
  try {
    socket.close(code, reason)
  } catch {
    // Already closed.
  }
}
