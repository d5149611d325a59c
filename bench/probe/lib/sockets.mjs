/**
 * Raw loopback HTTP/1.1 over `node:net`, no HTTP library: a keep-alive
 * connection with pipelined requests (`Conn`), a pool of them for bulk PUTs
 * (`Pool`), an SSE reader that can stop reading (`Stream`), and plain
 * connections that never send a request (`openIdle`). Response bodies are
 * counted, not kept (a PUT answer echoes the record).
 */
import net from "node:net"

const HOST = "127.0.0.1"
const HEAD_END = Buffer.from("\r\n\r\n")
const LF = 10

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** `promise`, or a rejection after `ms`. */
export const within = (promise, ms, what) => {
  let timer
  return Promise.race([
    promise,
    new Promise((_, reject) => timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms))
  ]).finally(() => clearTimeout(timer))
}

const connect = (port, timeoutMs = 10_000) =>
  new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port })
    const timer = setTimeout(() => socket.destroy(new Error(`connect: no answer within ${timeoutMs} ms`)), timeoutMs)
    socket.once("connect", () => {
      clearTimeout(timer)
      socket.removeListener("error", reject)
      resolve(socket)
    })
    socket.once("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
  })

const requestHead = (method, path, headers, length) =>
  `${method} ${path} HTTP/1.1\r\nHost: ${HOST}\r\n` +
  Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("") +
  (length === undefined ? "" : `Content-Type: application/json\r\nContent-Length: ${length}\r\n`) + "\r\n"

/**
 * Incremental HTTP/1.1 response body decoder (Content-Length, chunked, or
 * until close): hands the body bytes to `onBody` and calls `onEnd` when a
 * response is complete.
 */
class Decoder {
  constructor(onBody, onEnd) {
    this.onBody = onBody
    this.onEnd = onEnd
    this.mode = "none"
  }

  /** Start a body after a head: `length` bytes, `"chunked"`, or `"close"`. */
  begin(mode, length = 0) {
    this.mode = mode
    this.remaining = length
    this.sizeLine = ""
    if (mode === "length" && length === 0) this.finish()
  }

  finish() {
    this.mode = "none"
    this.onEnd()
  }

  /** Consume `buf` from `i`; returns where the next response starts (or buf.length). */
  push(buf, i) {
    while (i < buf.length && this.mode !== "none") {
      switch (this.mode) {
        case "close":
          this.onBody(buf.subarray(i))
          return buf.length
        case "length":
        case "data": {
          const take = Math.min(this.remaining, buf.length - i)
          this.onBody(buf.subarray(i, i + take))
          i += take
          this.remaining -= take
          if (this.remaining === 0) {
            if (this.mode === "length") this.finish()
            else this.mode = "crlf"
          }
          break
        }
        case "crlf":
          if (buf[i++] === LF) this.mode = "chunked"
          break
        case "chunked": {
          const eol = buf.indexOf(LF, i)
          if (eol === -1) {
            this.sizeLine += buf.latin1Slice(i, buf.length)
            return buf.length
          }
          const line = this.sizeLine + buf.latin1Slice(i, eol)
          this.sizeLine = ""
          i = eol + 1
          const size = Number.parseInt(line.trim().split(";")[0], 16)
          if (size === 0) this.mode = "trailer"
          else {
            this.remaining = size
            this.mode = "data"
          }
          break
        }
        case "trailer": {
          // Trailers (none expected) end with an empty line.
          const eol = buf.indexOf(LF, i)
          if (eol === -1) return buf.length
          const empty = eol === i || (eol === i + 1 && buf[i] === 13)
          i = eol + 1
          if (empty) this.finish()
          break
        }
      }
    }
    return i
  }
}

/** Parse a response head; `null` when `head` does not hold a whole one. */
const parseHead = (text) => {
  const [statusLine, ...lines] = text.split("\r\n")
  const headers = {}
  for (const line of lines) {
    const colon = line.indexOf(":")
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { status: Number(statusLine.slice(9, 12)), headers }
}

const bodyMode = (method, status, headers) => {
  if (method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200)) return ["length", 0]
  if (/chunked/i.test(headers["transfer-encoding"] ?? "")) return ["chunked"]
  if (headers["content-length"] !== undefined) return ["length", Number(headers["content-length"])]
  return ["close"]
}

/**
 * One keep-alive connection; requests are pipelined and answered in order.
 * `request` resolves with `{ status, headers, bytes, body (first 512 B), ms }`,
 * or rejects when the connection closes first (`error.sent`: body bytes written).
 */
export class Conn {
  static async open(port) {
    return new Conn(await connect(port))
  }

  constructor(socket) {
    this.socket = socket
    this.pending = []
    this.head = undefined
    this.closed = false
    socket.setNoDelay(true)
    this.decoder = new Decoder((chunk) => this.onBody(chunk), () => this.onEnd())
    socket.on("data", (buf) => this.onData(buf))
    socket.on("error", (error) => this.fail(error))
    socket.on("close", () => this.fail(new Error("connection closed by the server")))
  }

  get inFlight() {
    return this.pending.length
  }

  /** `body`: a string, a Buffer, or an array of Buffers written back to back. */
  request(method, path, { headers = {}, body } = {}) {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error("connection closed by the server"))
      const parts = body === undefined ? [] : Array.isArray(body) ? body : [Buffer.from(body)]
      const length = body === undefined ? undefined : parts.reduce((sum, part) => sum + part.length, 0)
      this.pending.push({ method, resolve, reject, start: performance.now(), bytes: 0, body: "" })
      this.socket.cork()
      this.socket.write(requestHead(method, path, headers, length))
      for (const part of parts) this.socket.write(part)
      this.socket.uncork()
    })
  }

  onData(buf) {
    let i = 0
    while (i < buf.length) {
      if (this.decoder.mode === "none") {
        this.head = this.head === undefined ? buf.subarray(i) : Buffer.concat([this.head, buf.subarray(i)])
        const end = this.head.indexOf(HEAD_END)
        if (end === -1) return
        const current = this.pending[0]
        if (current === undefined) return this.socket.destroy(new Error("response without a request"))
        Object.assign(current, parseHead(this.head.latin1Slice(0, end)))
        i = buf.length - (this.head.length - end - 4)
        this.head = undefined
        const [mode, length] = bodyMode(current.method, current.status, current.headers)
        this.decoder.begin(mode, length)
      } else {
        i = this.decoder.push(buf, i)
      }
    }
  }

  onBody(chunk) {
    const current = this.pending[0]
    current.bytes += chunk.length
    if (current.body.length < 512) current.body += chunk.toString("utf8", 0, Math.min(chunk.length, 512))
  }

  onEnd() {
    const done = this.pending.shift()
    done.ms = performance.now() - done.start
    done.resolve(done)
  }

  fail(error) {
    this.closed = true
    // A close-delimited body ends with the connection.
    if (this.decoder.mode === "close" && this.pending.length > 0) this.onEnd()
    for (const { reject } of this.pending.splice(0)) reject(error)
  }

  close() {
    this.socket.destroy()
  }
}

const requestTimeoutMs = 60_000

/**
 * Keep-alive connections, one request in flight on each (the Bun demo host
 * closes a connection on pipelined PUTs); `run(count, make)` sends `make(i)`
 * = `{ method, path, body }` for i < count and tallies the statuses. Sends
 * nothing new after `deadline` (performance.now() ms); a request unanswered
 * after 60 s counts as failed.
 */
export class Pool {
  static async open(port, connections) {
    const conns = await Promise.all(Array.from({ length: connections }, () => Conn.open(port)))
    return new Pool(port, conns)
  }

  constructor(port, conns) {
    this.port = port
    this.conns = conns
  }

  async run(count, make, { deadline = Infinity, onResponse } = {}) {
    const statuses = {}
    let errors = 0
    let firstError
    let next = 0
    const lane = async (index) => {
      while (next < count && performance.now() < deadline) {
        if (this.conns[index].closed) {
          // The server closed this connection (e.g. after an error answer): open another.
          try {
            this.conns[index] = await Conn.open(this.port)
          } catch (error) {
            errors++
            firstError ??= error.message
            return
          }
        }
        const i = next++
        const { method, path, body, headers } = make(i)
        const conn = this.conns[index]
        try {
          // A request that is never answered gives up its connection.
          const response = await within(conn.request(method, path, { body, headers }), requestTimeoutMs, `${method} ${path}`)
            .catch((error) => {
              conn.close()
              throw error
            })
          statuses[response.status] = (statuses[response.status] ?? 0) + 1
          onResponse?.(i, response)
        } catch (error) {
          errors++
          firstError ??= error.message
        }
      }
    }
    await Promise.all(this.conns.map((_, index) => lane(index)))
    return { sent: next, statuses, errors, firstError }
  }

  close() {
    for (const conn of this.conns) conn.close()
  }
}

/** `{"n":<i>,"pad":"xxx…"}` of exactly `size` bytes (at least the framing), as Buffers. */
export const record = (i, size) => {
  const head = Buffer.from(`{"n":${i},"pad":"`)
  const tail = Buffer.from(`"}`)
  return [head, padding(Math.max(0, size - head.length - tail.length)), tail]
}

let pad = Buffer.alloc(0)
const padding = (length) => {
  if (pad.length < length) pad = Buffer.alloc(length, "x")
  return pad.subarray(0, length)
}

/**
 * An SSE subscription over a raw socket. Parses the head, de-chunks the body
 * and scans its lines (only the first 40 characters of each are looked at):
 * counts frames, `:keepalive` comments and `event:` types, and hands each
 * `data:` line head to `onData`. With `pause`, stops reading right after the
 * first body bytes, so the kernel buffers fill and the server must hold the rest.
 */
export class Stream {
  constructor({ pause = false, onData } = {}) {
    this.pauseAfterStart = pause
    this.onDataLine = onData
    this.status = undefined
    this.bytes = 0
    this.frames = 0
    this.keepalives = 0
    this.events = {}
    this.firstEvent = undefined
    this.ended = false
    this.line = ""
    this.head = undefined
    this.decoder = new Decoder((chunk) => this.scan(chunk), () => this.end())
  }

  /** Connect and subscribe; resolves once the head and the first body bytes are in (time to first byte in `ttfbMs`). */
  open(port, path, { headers = {}, timeoutMs = 20_000 } = {}) {
    const start = performance.now()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`no stream within ${timeoutMs} ms`)), timeoutMs)
      const fail = (error) => {
        clearTimeout(timer)
        this.socket.destroy()
        reject(error)
      }
      this.started = () => {
        clearTimeout(timer)
        this.ttfbMs = performance.now() - start
        if (this.pauseAfterStart) this.socket.pause()
        resolve(this)
      }
      this.socket = net.connect({ host: HOST, port }, () => {
        this.localPort = this.socket.localPort
        this.socket.write(requestHead("GET", path, { Accept: "text/event-stream", ...headers }))
      })
      this.socket.on("data", (buf) => this.onData(buf))
      this.socket.on("error", (error) => {
        if (this.ttfbMs === undefined) fail(error)
      })
      this.socket.on("close", () => {
        this.ended = true
        if (this.ttfbMs === undefined) fail(new Error(this.status === undefined ? "closed before the stream started" : `HTTP ${this.status}`))
      })
    })
  }

  onData(buf) {
    let i = 0
    if (this.status === undefined) {
      this.head = this.head === undefined ? buf : Buffer.concat([this.head, buf])
      const end = this.head.indexOf(HEAD_END)
      if (end === -1) return
      const { status, headers } = parseHead(this.head.latin1Slice(0, end))
      this.status = status
      i = buf.length - (this.head.length - end - 4)
      this.head = undefined
      const [mode, length] = bodyMode("GET", status, headers)
      if (status !== 200) {
        this.socket.destroy()
        return
      }
      this.decoder.begin(mode, length)
    }
    if (i < buf.length) this.decoder.push(buf, i)
    if (this.bytes > 0 && this.ttfbMs === undefined) this.started()
  }

  scan(chunk) {
    this.bytes += chunk.length
    let i = 0
    while (i < chunk.length) {
      const eol = chunk.indexOf(LF, i)
      const end = eol === -1 ? chunk.length : eol
      if (this.line.length < 40) this.line += chunk.latin1Slice(i, Math.min(end, i + 40 - this.line.length))
      if (eol === -1) return
      this.onLine(this.line)
      this.line = ""
      i = eol + 1
    }
  }

  onLine(line) {
    if (line === "") this.frames++
    else if (line.startsWith(":keepalive")) this.keepalives++
    else if (line.startsWith("event: ")) {
      const type = line.slice(7)
      this.firstEvent ??= type
      this.events[type] = (this.events[type] ?? 0) + 1
    } else if (line.startsWith("data: ")) this.onDataLine?.(line.slice(6))
  }

  end() {
    this.ended = true
  }

  resume() {
    this.socket.resume()
  }

  close() {
    this.socket.destroy()
  }
}

/**
 * Open `count` streams with bounded concurrency (none started after
 * `deadline`, performance.now() ms); resolves with the open ones and the failures.
 */
export const openStreams = async (port, count, pathOf, { deadline = Infinity, ...options } = {}) => {
  const streams = []
  const failures = {}
  let next = 0
  const worker = async () => {
    while (next < count && performance.now() < deadline) {
      const stream = new Stream(options)
      try {
        streams.push(await stream.open(port, pathOf(next++), options))
      } catch (error) {
        failures[error.message] = (failures[error.message] ?? 0) + 1
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(200, count) }, worker))
  return { streams, failures }
}

/**
 * `count` connections that send nothing (or, with `get`, one GET each and
 * then nothing), none started after `deadline`. Each records whether the
 * server closed it, and the status of its answer.
 */
export const openIdle = async (port, count, { get, deadline = Infinity } = {}) => {
  const conns = []
  let failed = 0
  let next = 0
  const worker = async () => {
    while (next < count && performance.now() < deadline) {
      next++
      try {
        const socket = await connect(port)
        const conn = { socket, localPort: socket.localPort, closed: false, status: undefined }
        socket.on("error", () => {})
        socket.on("close", () => conn.closed = true)
        socket.on("data", (buf) => conn.status ??= Number(buf.latin1Slice(9, 12)))
        if (get !== undefined) socket.write(requestHead("GET", get, {}))
        conns.push(conn)
      } catch {
        failed++
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(200, count) }, worker))
  return { conns, failed }
}
