/**
 * The publisher: a few keep-alive connections ("lanes") with pipelined HTTP/1.1
 * requests, at most `depth` in flight in total. A key always uses the same lane,
 * so the server sees one key's publishes in the order they were sent.
 *
 * Without `pipelining`, a lane writes a request only once the previous one is
 * answered (the others wait in the lane): Bun.serve closes a connection on
 * which a request arrives while the response ahead of it is still pending in
 * an async handler (uWS "denying async pipelining"; oven-sh/bun#38128), as a
 * publish that waits for Redis is.
 */
import net from "node:net"
import { Plan } from "./plan.mjs"

const HEAD_END = Buffer.from("\r\n\r\n")

class Lane {
  constructor(socket, pipelining = true) {
    this.socket = socket
    this.pipelining = pipelining
    /** Written, awaiting their answers, in order. */
    this.pending = []
    /** Not written yet (without pipelining only). */
    this.queued = []
    /** Called with each round trip (request written → answer read, ms). */
    this.onRoundTrip = undefined
    this.buffer = Buffer.alloc(0)
    socket.setNoDelay(true)
    socket.on("data", (chunk) => this.onData(chunk))
    socket.on("error", (error) => this.failAll(error))
    socket.on("close", () => this.failAll(new Error("publisher connection closed")))
  }

  request(method, path, body = "") {
    return new Promise((resolve, reject) => {
      if (this.socket.destroyed) return reject(new Error("publisher connection closed"))
      const text = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
      this.queued.push({ resolve, reject, text, writtenAt: 0 })
      this.flush()
    })
  }

  flush() {
    while (this.queued.length > 0 && (this.pipelining || this.pending.length === 0)) {
      const request = this.queued.shift()
      request.writtenAt = performance.now()
      this.pending.push(request)
      this.socket.write(request.text)
    }
  }

  onData(chunk) {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk])
    for (;;) {
      const end = this.buffer.indexOf(HEAD_END)
      if (end === -1) return
      const head = this.buffer.toString("latin1", 0, end)
      const length = Number(/^content-length:\s*(\d+)/im.exec(head)?.[1] ?? 0)
      if (this.buffer.length < end + 4 + length) return
      this.buffer = this.buffer.subarray(end + 4 + length)
      const request = this.pending.shift()
      this.onRoundTrip?.(performance.now() - request.writtenAt)
      request.resolve(Number(head.slice(9, 12)))
      this.flush()
    }
  }

  failAll(error) {
    for (const { reject } of [...this.pending.splice(0), ...this.queued.splice(0)]) reject(error)
  }
}

export class Publisher {
  /** Open `lanes` connections to the server on `port` (`pipelining`: see above). */
  static async open(port, lanes, depth, { pipelining = true } = {}) {
    const sockets = await Promise.all(Array.from({ length: lanes }, () =>
      new Promise((resolve, reject) => {
        const socket = net.connect({ host: "127.0.0.1", port }, () => resolve(socket))
        socket.once("error", reject)
      })))
    return new Publisher(sockets.map((socket) => new Lane(socket, pipelining)), depth)
  }

  constructor(lanes, depth) {
    this.lanes = lanes
    this.depth = depth
    this.inFlight = 0
    this.sent = 0
    this.errors = 0
    this.firstError = undefined
    this.wake = undefined
    /** Round trips (request written → answer read, ms) while an array; `null`: not kept. */
    this.roundTrips = null
    for (const lane of lanes) lane.onRoundTrip = (ms) => this.roundTrips?.push(ms)
  }

  /**
   * Publish event `n` to `key` with a record of about `size` bytes:
   * `{"n":n,"t":<send time, ms>,"pad":"x…"}`. Resolves once the request is
   * written and fewer than `depth` are in flight.
   */
  async publish(n, key, size) {
    while (this.inFlight >= this.depth) await new Promise((resolve) => this.wake = resolve)
    const head = `{"n":${n},"t":`
    const time = performance.now().toFixed(3)
    const body = `${head}${time},"pad":"${pad(size - head.length - time.length - 10)}"}`
    this.inFlight++
    this.sent++
    this.lanes[key % this.lanes.length].request("POST", `/bench/publish/${Plan.path(key)}`, body).then(
      (status) => this.settle(status === 204 ? undefined : `HTTP ${status}`),
      (error) => this.settle(error.message)
    )
  }

  /**
   * Publish the events `ns` to `key` in one request (`POST /bench/burst/…`, a
   * JSON array of records as `publish` makes them): the server publishes them
   * one after another, each awaited, inside that request. Counts as one in
   * `sent` and in flight.
   */
  async publishBurst(ns, key, size) {
    while (this.inFlight >= this.depth) await new Promise((resolve) => this.wake = resolve)
    const time = performance.now().toFixed(3)
    const records = ns.map((n) => {
      const head = `{"n":${n},"t":`
      return `${head}${time},"pad":"${pad(size - head.length - time.length - 10)}"}`
    })
    this.inFlight++
    this.sent++
    this.lanes[key % this.lanes.length].request("POST", `/bench/burst/${Plan.path(key)}`, `[${records.join(",")}]`).then(
      (status) => this.settle(status === 204 ? undefined : `HTTP ${status}`),
      (error) => this.settle(error.message)
    )
  }

  /**
   * POST `body` to `path` over the lane of `key`, with the same bound on
   * requests in flight (counts as one in `sent`); resolves once the request is
   * written and fewer than `depth` are in flight.
   */
  async post(path, body, key) {
    while (this.inFlight >= this.depth) await new Promise((resolve) => this.wake = resolve)
    this.inFlight++
    this.sent++
    this.lanes[key % this.lanes.length].request("POST", path, body).then(
      (status) => this.settle(status === 204 ? undefined : `HTTP ${status}`),
      (error) => this.settle(error.message)
    )
  }

  /** Ask the server for a full garbage collection. */
  async gc() {
    const status = await this.lanes[0].request("POST", "/bench/gc")
    if (status !== 204) throw new Error(`POST /bench/gc answered ${status}`)
  }

  /** Wait until every request sent so far has been answered. */
  async drain() {
    while (this.inFlight > 0) await new Promise((resolve) => this.wake = resolve)
  }

  close() {
    for (const lane of this.lanes) lane.socket.destroy()
  }

  settle(error) {
    this.inFlight--
    if (error !== undefined) {
      this.errors++
      this.firstError ??= error
    }
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }
}

const padding = "x".repeat(1 << 16)
const pad = (length) => padding.slice(0, Math.max(0, length))
