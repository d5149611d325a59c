/**
 * One SSE subscriber over a raw loopback socket: the response decoded by
 * `ResponseReader` (response.mjs) feeds a scanner for the `data:` line of
 * each frame. Frames carry the bench record
 * `{"n":<index>,"t":<send time>,...}`; the subscriber checks that every `n`
 * sent to its key arrives exactly once and in order, and hands each frame to
 * the shared `Ledger`.
 */
import net from "node:net"

import { ResponseReader } from "./response.mjs"

const LF = 10
const DATA = Buffer.from("data: ")

export class Subscriber extends ResponseReader {
  /**
   * @param {number} key index of the record it subscribes to
   * @param {import("./plan.mjs").Plan} plan which event goes to which key
   * @param {import("./ledger.mjs").Ledger} ledger shared delivery counters
   */
  constructor(key, plan, ledger) {
    super()
    this.key = key
    this.port = undefined
    this.plan = plan
    this.ledger = ledger
    this.socket = undefined
    this.partial = undefined
    this.receivedAt = 0
    this.ready = false
    // Delivery checks, indexed by an event's position among its key's events.
    this.seen = new Uint8Array(plan.eventsOf(key))
    this.next = 0
    this.unique = 0
    this.duplicates = 0
    this.reorders = 0
    this.foreign = 0
    this.malformed = 0
  }

  /** Connect and request the stream; resolves once the first body bytes (`:keepalive`) arrive. */
  open(port, path, timeoutMs) {
    this.port = port
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`no stream within ${timeoutMs} ms`)), timeoutMs)
      const fail = (error) => {
        clearTimeout(timer)
        this.socket.destroy()
        reject(error)
      }
      this.onReady = () => {
        clearTimeout(timer)
        resolve(this)
      }
      this.socket = net.connect({ host: "127.0.0.1", port }, () => {
        this.socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`)
      })
      this.socket.on("data", (buf) => this.onData(buf))
      this.socket.on("error", (error) => {
        if (!this.ready) fail(error)
      })
      this.socket.on("close", () => {
        this.closed()
        if (!this.ready) fail(new Error("closed before the stream started"))
      })
    })
  }

  /** Stop reading the socket (the kernel buffers fill, then the server must hold the rest). */
  pause() {
    this.socket.pause()
  }

  /** Read the socket again after `pause`. */
  resume() {
    this.socket.resume()
  }

  close() {
    this.socket.destroy()
  }

  /** Events of this subscriber's key, among the first `published`, that never arrived. */
  missing(published) {
    return this.plan.eventsOf(this.key, published) - this.unique
  }

  /** `true` when every published event of its key arrived exactly once, in order. */
  complete(published) {
    return this.missing(published) === 0 &&
      this.duplicates === 0 && this.reorders === 0 && this.foreign === 0 && this.malformed === 0
  }

  received() {
    this.ledger.reads++
    if (this.ledger.recordingLatency) this.receivedAt = performance.now()
  }

  accept(text) {
    if (!text.startsWith("HTTP/1.1 200")) {
      this.socket.destroy(new Error(`unexpected response: ${text.split("\r\n")[0]}`))
      return false
    }
    this.ready = true
    this.onReady()
    return true
  }

  chunk() {
    this.ledger.chunks++
  }

  body(buf, from, to) {
    this.scan(from === 0 && to === buf.length ? buf : buf.subarray(from, to))
  }

  /** Find the `data:` lines in `body`; an incomplete last line waits for the next bytes. */
  scan(body) {
    if (this.partial !== undefined) {
      body = Buffer.concat([this.partial, body])
      this.partial = undefined
    }
    let p = 0
    for (;;) {
      const data = body.indexOf(DATA, p)
      if (data === -1) break
      const eol = body.indexOf(LF, data)
      if (eol === -1) {
        this.partial = Buffer.from(body.subarray(data))
        return
      }
      if (data === 0 || body[data - 1] === LF) this.frame(body, data + DATA.length, eol)
      p = eol + 1
    }
    const last = body.lastIndexOf(LF)
    if (last + 1 < body.length) this.partial = Buffer.from(body.subarray(last + 1))
  }

  /** One `data: {"n":<n>,"t":<t>,...}` line, between `start` and `end`. */
  frame(body, start, end) {
    // {"n":
    let i = start + 5
    if (body[start] !== 123 || body[start + 2] !== 110 || body[start + 4] !== 58) {
      this.malformed++
      return
    }
    let n = 0
    while (i < end && body[i] >= 48 && body[i] <= 57) n = n * 10 + body[i++] - 48
    const plan = this.plan
    if (n >= plan.total || plan.keyOf[n] !== this.key) {
      this.foreign++
      return
    }
    const position = plan.positionOf[n]
    if (this.seen[position] === 1) {
      this.duplicates++
    } else {
      this.seen[position] = 1
      this.unique++
      if (position < this.next) this.reorders++
      else this.next = position + 1
    }
    // ,"t":<milliseconds>
    this.ledger.delivered(this.ledger.recordingLatency ? this.receivedAt - parseTime(body, i + 5, end) : 0, this.key)
  }
}

const parseTime = (body, start, end) => {
  let whole = 0
  let i = start
  while (i < end && body[i] >= 48 && body[i] <= 57) whole = whole * 10 + body[i++] - 48
  if (body[i] !== 46) return whole
  let fraction = 0
  let scale = 1
  i++
  while (i < end && body[i] >= 48 && body[i] <= 57) {
    fraction = fraction * 10 + body[i++] - 48
    scale *= 10
  }
  return whole + fraction / scale
}

/** Delivery checks over `subscribers`, given how many events were published. */
export const summarize = (subscribers, published) => {
  const summary = { subscribers: subscribers.length, complete: 0, missing: 0, duplicates: 0, reorders: 0, foreign: 0, malformed: 0, ended: 0 }
  for (const subscriber of subscribers) {
    if (subscriber.complete(published)) summary.complete++
    summary.missing += subscriber.missing(published)
    summary.duplicates += subscriber.duplicates
    summary.reorders += subscriber.reorders
    summary.foreign += subscriber.foreign
    summary.malformed += subscriber.malformed
    if (subscriber.ended) summary.ended++
  }
  return summary
}
