/**
 * One SSE stream of the multiplex bench over a raw loopback socket: the
 * response decoded by `ResponseReader` (../lib/response.mjs) feeds a full SSE
 * event parser (`event:`, `data:`, `id:`, comments and
 * `retry:`), so that every field of every frame is read, on both routes:
 *
 * - `per-record` (`GET /api/saacms/v1/posts/<id>/subscribe`): one record;
 *   frames are `event: changed`, `id: <etag>`, `data: <record>`. Ready once the
 *   first body bytes (`:keepalive`) arrived, as in the other CMS scenarios.
 * - `multiplexed` (`GET /api/saacms/v1/subscribe?topic=posts/<id>&…`): the
 *   client's records; the first event must be `saacms-welcome` naming every
 *   topic `fresh` (ready then), and frames are `event: changed`,
 *   `data: {"topic","collection","id","etag","record"}`, `id: <cursor>`,
 *   routed to their record by `data.id`.
 *
 * Each record carries `n`, its position among that record's events, and `t`,
 * the send time (`performance.now()` of the client process, which also
 * publishes): for every (stream, record) the stream checks that each `n`
 * arrives exactly once and in order, and counts each frame in the shared
 * `Ledger` under its record.
 */
import net from "node:net"
import { ResponseReader } from "../lib/response.mjs"

/** Bytes and frames over every stream of the process. */
export const totals = {
  /** Everything read from the sockets: response heads, chunk framing, SSE bytes. */
  wireBytes: 0,
  /** SSE bytes (the de-chunked body). */
  bodyBytes: 0,
  /** `changed` frames. */
  frames: 0,
  /** Socket reads (`data` events). */
  reads: 0,
  /** HTTP chunks. */
  chunks: 0,
  /** Sum of the `id:` lengths of `changed` frames (the multiplexed cursor, or the per-record etag). */
  idChars: 0
}

export class Stream extends ResponseReader {
  /**
   * @param {"per-record" | "multiplexed"} kind
   * @param {ReadonlyArray<number>} records the record ids it watches (one for `per-record`)
   * @param {import("../lib/ledger.mjs").Ledger} ledger shared delivery counters, per record
   */
  constructor(kind, records, ledger) {
    super()
    this.kind = kind
    this.records = records
    this.ledger = ledger
    /** record id → index in `records` */
    this.index = new Map(records.map((record, i) => [record, i]))
    this.socket = undefined
    /** The text of an SSE event not complete yet. */
    this.pending = ""
    this.receivedAt = 0
    this.ready = false
    this.onReady = undefined
    this.fail = undefined
    /** Next `n` expected, per watched record. */
    this.next = new Int32Array(records.length)
    this.frames = 0
    this.duplicates = 0
    this.reorders = 0
    this.gaps = 0
    this.foreign = 0
    this.malformed = 0
    /** Events other than `changed` after the start (or a welcome that is not all `fresh`). */
    this.unexpected = 0
    this.firstProblem = undefined
  }

  /** The path of its subscribe request. */
  get path() {
    return this.kind === "multiplexed"
      ? `/api/saacms/v1/subscribe?${this.records.map((record) => `topic=posts/${record}`).join("&")}`
      : `/api/saacms/v1/posts/${this.records[0]}/subscribe`
  }

  /** Connect and request the stream; resolves once it is ready (see above). */
  open(port, timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error(`no stream within ${timeoutMs} ms`)), timeoutMs)
      this.fail = (error) => {
        clearTimeout(timer)
        this.fail = undefined
        this.socket.destroy()
        reject(error)
      }
      this.onReady = () => {
        clearTimeout(timer)
        this.fail = undefined
        this.ready = true
        resolve(this)
      }
      this.socket = net.connect({ host: "127.0.0.1", port }, () => {
        this.socket.write(`GET ${this.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`)
      })
      this.socket.on("data", (buf) => this.onData(buf))
      this.socket.on("error", (error) => this.fail?.(error))
      this.socket.on("close", () => {
        this.closed()
        this.fail?.(new Error("closed before the stream started"))
      })
    })
  }

  close() {
    this.socket.destroy()
  }

  problem(what) {
    this.firstProblem ??= `${this.kind} stream of ${this.records.join(",")}: ${what}`
  }

  /** Events of its records still missing, given how many each record got (`sent[record]`). */
  missing(sent) {
    let missing = 0
    for (let i = 0; i < this.records.length; i++) missing += sent[this.records[i]] - this.next[i]
    return missing
  }

  received(buf) {
    totals.wireBytes += buf.length
    totals.reads++
    this.receivedAt = performance.now()
  }

  accept(text) {
    if (text.startsWith("HTTP/1.1 200")) return true
    this.problem(`response ${text.split("\r\n")[0]}`)
    this.socket.destroy(new Error(`unexpected response: ${text.split("\r\n")[0]}`))
    return false
  }

  chunk() {
    totals.chunks++
  }

  /** SSE bytes `buf[from, to)`: dispatch every complete event (events end with a blank line). */
  body(buf, from, to) {
    totals.bodyBytes += to - from
    // The per-record stream is ready with its first body bytes (the `:keepalive`).
    if (!this.ready && this.kind === "per-record") this.onReady()
    const text = this.pending === "" ? buf.toString("latin1", from, to) : this.pending + buf.toString("latin1", from, to)
    let p = 0
    for (;;) {
      const blank = text.indexOf("\n\n", p)
      if (blank === -1) break
      this.event(text, p, blank)
      p = blank + 2
    }
    this.pending = p === text.length ? "" : text.slice(p)
  }

  /** One SSE event, the lines of `text[from, to)`. */
  event(text, from, to) {
    let type = "message"
    let data
    let id
    let p = from
    while (p < to) {
      let eol = text.indexOf("\n", p)
      if (eol === -1 || eol > to) eol = to
      const colon = text.indexOf(":", p)
      if (colon !== p) {
        // Not a comment.
        const field = colon === -1 || colon > eol ? text.slice(p, eol) : text.slice(p, colon)
        let value = colon === -1 || colon > eol ? "" : text.slice(colon + 1, eol)
        if (value.charCodeAt(0) === 32) value = value.slice(1)
        if (field === "event") type = value
        else if (field === "data") data = data === undefined ? value : `${data}\n${value}`
        else if (field === "id") id = value
        else if (field !== "retry") {
          this.malformed++
          this.problem(`unknown field ${field}`)
        }
      }
      p = eol + 1
    }
    if (data === undefined) return // a comment or `retry:` alone
    if (type === "changed") return this.changed(data, id)
    if (type === "saacms-welcome" && !this.ready && this.kind === "multiplexed") return this.welcome(data, id)
    this.unexpected++
    this.problem(`event ${type}: ${data}`)
  }

  welcome(data, id) {
    let topics
    try {
      topics = JSON.parse(data).topics
    } catch {
      topics = undefined
    }
    const fresh = Array.isArray(topics) && topics.length === this.records.length &&
      topics.every((topic, i) => topic.topic === `posts/${this.records[i]}` && topic.status === "fresh")
    if (!fresh || id === undefined || id === "") {
      this.unexpected++
      this.problem(`welcome ${data} (id ${id})`)
      this.socket.destroy()
      this.fail?.(new Error(`unexpected welcome: ${data}`))
      return
    }
    this.onReady()
  }

  changed(data, id) {
    let parsed
    try {
      parsed = JSON.parse(data)
    } catch {
      parsed = undefined
    }
    if (parsed === undefined || parsed === null || id === undefined || id === "") {
      this.malformed++
      this.problem(`frame ${data} (id ${id})`)
      return
    }
    let i = 0
    let record = parsed
    if (this.kind === "multiplexed") {
      // Routed by data.id.
      const index = this.index.get(Number(parsed.id))
      if (index === undefined || parsed.collection !== "posts" || parsed.topic !== `posts/${parsed.id}` ||
        typeof parsed.etag !== "string") {
        this.foreign++
        this.problem(`foreign frame ${data}`)
        return
      }
      i = index
      record = parsed.record
    }
    const n = record?.n
    if (typeof n !== "number") {
      this.malformed++
      this.problem(`frame without n: ${data}`)
      return
    }
    totals.frames++
    totals.idChars += id.length
    this.frames++
    const expected = this.next[i]
    if (n === expected) {
      this.next[i] = n + 1
    } else if (n > expected) {
      // Events expected..n-1 of that record never came before this one.
      this.gaps += n - expected
      this.next[i] = n + 1
      this.problem(`record ${this.records[i]}: got n ${n}, expected ${expected}`)
    } else {
      // An event again, or one that arrived after a later one.
      this.duplicates++
      this.problem(`record ${this.records[i]}: got n ${n} again or late (expected ${expected})`)
    }
    const ledger = this.ledger
    ledger.delivered(ledger.recordingLatency ? this.receivedAt - record.t : 0, this.records[i])
  }
}

/** Delivery checks over `streams`, given how many events each record got (`sent`). */
export const summarize = (streams, sent) => {
  const summary = {
    streams: streams.length, complete: 0, frames: 0, missing: 0, gaps: 0, duplicates: 0,
    foreign: 0, malformed: 0, unexpected: 0, ended: 0, firstProblem: undefined
  }
  for (const stream of streams) {
    const missing = stream.missing(sent)
    const bad = stream.gaps + stream.duplicates + stream.foreign + stream.malformed + stream.unexpected
    if (missing === 0 && bad === 0 && !stream.ended) summary.complete++
    else if (missing !== 0) stream.problem(`${missing} events missing at the end`)
    else if (stream.ended) stream.problem("stream ended")
    summary.frames += stream.frames
    summary.missing += missing
    summary.gaps += stream.gaps
    summary.duplicates += stream.duplicates
    summary.foreign += stream.foreign
    summary.malformed += stream.malformed
    summary.unexpected += stream.unexpected
    if (stream.ended) summary.ended++
    summary.firstProblem ??= stream.firstProblem
  }
  return summary
}
