/**
 * One multiplexed stream: the mailboxes of its topics (one per topic, each
 * joined to its record's or collection's hub topic as usual, with its own
 * position, history reads and access) write into this one outlet, which the
 * client's connection drains. The stream frames what they write (shared
 * bodies, its own cursor as each frame's id), keeps their positions for the
 * cursor, and is their heartbeat and stall check. Its topics share one bound:
 * each mailbox counts what the whole stream holds for its client.
 *
 * A topic whose access ends gets its own `saacms-revoked` and the others go
 * on; anything else that ends a topic (a stalled client, a backend that
 * failed, shutdown) ends the stream, and its client resumes every topic.
 *
 * @internal
 */
import * as Frame from "../Frame.js"
import * as Multiplex from "../Multiplex.js"
import type * as Mailbox from "./mailbox.js"
import * as Outlet from "./outlet.js"

/** One topic of the stream, and where its client stands in it. */
export class Slot implements Multiplex.Position {
  seq = 0
  check = 0
  /** Its part of the cursor (see `Multiplex.cursorPart`). */
  part = "A"
  mailbox: Mailbox.Mailbox | undefined = undefined
  /** Its access ended: it is the only topic its mailbox's end ends. */
  revoking = false
  readonly record: { readonly collection: string; readonly id: string } | undefined

  constructor(readonly topic: Multiplex.Topic) {
    this.record = topic.id === undefined ? undefined : { collection: topic.collection, id: topic.id }
  }

  moveTo(seq: number, check: number): void {
    this.seq = seq
    this.check = check
    this.part = Multiplex.cursorPart(this)
  }
}

// A topic mailbox's sink: the stream, seen from one topic.
class TopicSink implements Outlet.Sink {
  constructor(private readonly stream: Stream, private readonly slot: Slot) {}

  queued(): number {
    return this.stream.queuedBytes
  }

  write(chunk: Uint8Array): void {
    this.stream.write(chunk)
  }

  end(): void {
    this.stream.topicEnded(this.slot)
  }

  abort(): void {
    this.stream.abort()
  }
}

export class Stream extends Outlet.Outlet implements Mailbox.Framing {
  private readonly head: string
  /** No slot before this one has an open topic (a topic adopted before it moves it back). */
  private leadFrom = 0

  constructor(readonly slots: ReadonlyArray<Slot>, hash: number) {
    super()
    this.head = Multiplex.cursorHead(hash)
  }

  /** The cursor of the positions written so far. */
  cursor(): string {
    let cursor = this.head
    for (const slot of this.slots) cursor += slot.part
    return cursor
  }

  /** Make `mailbox` the topic of `slot` (before it begins). */
  adopt(slot: Slot, mailbox: Mailbox.Mailbox, index: number): void {
    slot.mailbox = mailbox
    mailbox.framing = this
    mailbox.slot = index
    mailbox.attach(new TopicSink(this, slot))
    if (index < this.leadFrom) this.leadFrom = index
  }

  // Framing: what the topics' mailboxes write.

  records(mailbox: Mailbox.Mailbox, messages: ReadonlyArray<{ readonly seq: number; readonly frame: Uint8Array }>): Uint8Array {
    const slot = this.slots[mailbox.slot]!
    // One text for the whole run, encoded once.
    let text = ""
    for (const message of messages) {
      const body = Frame.topicBody(message.frame, slot.record)
      // Only record events are numbered; anything else is not for the client.
      if (body === undefined) continue
      slot.moveTo(message.seq, body.check)
      text += `${body.text}id: ${this.cursor()}\n\n`
    }
    return Frame.text(text)
  }

  resync(mailbox: Mailbox.Mailbox, newestId: string, seq: number): Uint8Array {
    const slot = this.slots[mailbox.slot]!
    slot.moveTo(seq, Frame.check(newestId))
    return Frame.topicResync(slot.topic.topic, this.cursor())
  }

  revoked(mailbox: Mailbox.Mailbox, reason: Mailbox.Reason): Uint8Array {
    const slot = this.slots[mailbox.slot]!
    slot.revoking = true
    return Frame.topicRevoked(slot.topic.topic, reason)
  }

  // The hub beats each topic's mailbox; the stream beats once, through its first open topic.
  keepalive(mailbox: Mailbox.Mailbox): void {
    if (this.lead() === mailbox && this.queuedBytes === 0) this.write(Frame.keepalive)
  }

  // A client still there reconnects and resumes every topic from its cursor.
  checkStalled(mailbox: Mailbox.Mailbox): boolean {
    return !this.closed && this.lead() === mailbox && this.stalled()
  }

  // The first open topic. Asked for each topic's mailbox at every heartbeat:
  // topics only close after they open, so the search goes on from where it
  // last stopped instead of passing the closed and denied ones again.
  private lead(): Mailbox.Mailbox | undefined {
    const slots = this.slots
    let i = this.leadFrom
    for (; i < slots.length; i++) {
      const mailbox = slots[i]!.mailbox
      if (mailbox !== undefined) {
        this.leadFrom = i
        return mailbox
      }
    }
    this.leadFrom = i
    return undefined
  }

  // The outlet.

  write(chunk: Uint8Array): void {
    if (!this.closed && chunk.byteLength > 0) this.put(chunk)
  }

  /** A topic's mailbox closed. */
  topicEnded(slot: Slot): void {
    slot.mailbox = undefined
    if (this.closed) return
    if (!slot.revoking || this.lead() === undefined) this.close()
  }

  // The stream ended (after what it holds, or now): so does every topic's mailbox.
  protected ended(aborted: boolean): void {
    for (const slot of this.slots) {
      const mailbox = slot.mailbox
      slot.mailbox = undefined
      if (aborted) mailbox?.abort()
      else mailbox?.close()
    }
  }

  drained(): void {
    for (const slot of this.slots) slot.mailbox?.drained()
  }
}
