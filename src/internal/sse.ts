/**
 * A Server-Sent Events parser, as the HTML standard's event-stream
 * interpretation describes it: lines end with CRLF, LF or CR; `event`,
 * `data` (joined with LF), `id` (ignored when it holds NUL) and `retry`
 * (digits only) fields; comments and unknown fields ignored; an event is
 * dispatched at a blank line, and only when it has data. For the client,
 * which reads a `fetch` body (so it can send `Authorization`, which
 * `EventSource` cannot).
 *
 * @internal
 */

export interface Message {
  /** `message` when the stream named none. */
  readonly event: string
  readonly data: string
  /** The last event id after this event (it carries over from earlier events). */
  readonly lastEventId: string
}

export class Parser {
  private buffer = ""
  private pendingCR = false
  private event = ""
  private data: Array<string> = []
  private hasData = false
  private idBuffer: string
  /** The last event id of the events dispatched so far (an `id:` counts once its event ends). */
  lastEventId: string
  /** The last `retry:` the stream sent (ms), if any. */
  retry: number | undefined = undefined

  constructor(lastEventId = "") {
    this.lastEventId = lastEventId
    this.idBuffer = lastEventId
  }

  /** Feed decoded text; returns the events it completes. */
  push(text: string): Array<Message> {
    const out: Array<Message> = []
    let chunk = text
    // A CR at the end of the last chunk may have been the first half of CRLF.
    if (this.pendingCR && chunk.startsWith("\n")) chunk = chunk.slice(1)
    this.pendingCR = false
    let start = 0
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i)
      if (c !== 10 && c !== 13) continue
      this.line(this.buffer + chunk.slice(start, i), out)
      this.buffer = ""
      if (c === 13) {
        if (i + 1 === chunk.length) this.pendingCR = true
        else if (chunk.charCodeAt(i + 1) === 10) i++
      }
      start = i + 1
    }
    this.buffer += chunk.slice(start)
    return out
  }

  private line(line: string, out: Array<Message>): void {
    if (line === "") {
      this.lastEventId = this.idBuffer
      if (this.hasData) out.push({ event: this.event === "" ? "message" : this.event, data: this.data.join("\n"), lastEventId: this.lastEventId })
      this.event = ""
      this.data = []
      this.hasData = false
      return
    }
    if (line.startsWith(":")) return
    const colon = line.indexOf(":")
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? "" : line.slice(colon + 1)
    if (value.startsWith(" ")) value = value.slice(1)
    switch (field) {
      case "event":
        this.event = value
        break
      case "data":
        this.data.push(value)
        this.hasData = true
        break
      case "id":
        if (!value.includes("\0")) this.idBuffer = value
        break
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value)
        break
    }
  }
}
