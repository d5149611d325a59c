/**
 * The HTTP/1.1 side of a bench stream over a raw loopback socket: the
 * response head (status line, headers) and a chunked or close-delimited body,
 * decoded byte by byte as the socket delivers it. Subclasses read the SSE
 * bytes (`body`) and count what they like (`received`, `chunk`).
 */
const LF = 10
const CR = 13
const SEMICOLON = 59
const HEAD_END = Buffer.from("\r\n\r\n")

const HEAD = 0
const CHUNK_SIZE = 1
const CHUNK_DATA = 2
const CHUNK_END = 3
const IDENTITY = 4
const DONE = 5

export class ResponseReader {
  constructor() {
    this.state = HEAD
    this.head = Buffer.alloc(0)
    this.chunkSize = 0
    this.inExtension = false
    this.remaining = 0
  }

  /** `true` once the response ended or the connection closed. */
  get ended() {
    return this.state === DONE
  }

  /** The connection closed. */
  closed() {
    this.state = DONE
  }

  /** Bytes read from the socket (before anything is decoded). */
  received(_buf) {}

  /** The response head, without its blank line: `false` refuses the response (the reader stops). */
  accept(_text) {
    return true
  }

  /** An HTTP chunk begins. */
  chunk() {}

  /** SSE bytes: `buf[from, to)`. */
  body(_buf, _from, _to) {}

  onData(buf) {
    this.received(buf)
    let i = 0
    if (this.state === HEAD) {
      i = this.readHead(buf)
      if (i < 0) return
    }
    const end = buf.length
    while (i < end) {
      switch (this.state) {
        case CHUNK_SIZE: {
          const byte = buf[i++]
          if (byte === LF) {
            if (this.chunkSize === 0) {
              this.state = DONE
              return
            }
            this.remaining = this.chunkSize
            this.chunkSize = 0
            this.chunk()
            this.inExtension = false
            this.state = CHUNK_DATA
          } else if (byte === SEMICOLON) {
            this.inExtension = true
          } else if (byte !== CR && !this.inExtension) {
            this.chunkSize = this.chunkSize * 16 + hexValue(byte)
          }
          break
        }
        case CHUNK_DATA: {
          const take = Math.min(this.remaining, end - i)
          this.body(buf, i, i + take)
          i += take
          this.remaining -= take
          if (this.remaining === 0) this.state = CHUNK_END
          break
        }
        case CHUNK_END:
          if (buf[i++] === LF) this.state = CHUNK_SIZE
          break
        case IDENTITY:
          this.body(buf, i, end)
          return
        default:
          return
      }
    }
  }

  // Consume the response head; returns where the body starts in `buf`, or -1 while incomplete or refused.
  readHead(buf) {
    const start = this.head.length
    this.head = start === 0 ? buf : Buffer.concat([this.head, buf])
    const end = this.head.indexOf(HEAD_END)
    if (end === -1) return -1
    const text = this.head.toString("latin1", 0, end)
    this.head = undefined
    if (!this.accept(text)) {
      this.state = DONE
      return -1
    }
    this.state = /^transfer-encoding:\s*chunked/im.test(text) ? CHUNK_SIZE : IDENTITY
    return end + 4 - start
  }
}

const hexValue = (byte) => byte <= 57 ? byte - 48 : (byte | 32) - 87
