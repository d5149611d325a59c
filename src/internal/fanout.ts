/**
 * The hub's batching: what is published to a record within one turn of the
 * event loop is handed out together at the end of it (or as soon as the
 * batches hold `maxBytes`), so a burst reaches each subscriber as one chunk
 * and its socket in one write, while an idle subscriber holds nothing. The
 * metrics of the fan-out are reported here, once per flush, not per frame.
 *
 * @internal
 */
import type * as Hub from "../Hub.js"
import * as Metrics from "../Metrics.js"
import * as Mailbox from "./mailbox.js"
import { afterTurn } from "./turn.js"

/** A record's subscribers, and what was published to it since the last flush. */
export interface Recipients {
  readonly subscribers: Set<Mailbox.Mailbox>
  batch: Array<Hub.Message>
}

export class Fanout {
  private dirty: Array<Recipients> = []
  private dirtyBytes = 0
  private scheduled = false

  /**
   * @param maxBytes what the batches may hold before they are handed out at once
   * @param expired ends a subscriber whose grant has ended (`true`), which then gets nothing
   * @param millis the hub's `Clock`, in ms, for the publish-to-write latency
   */
  constructor(
    private readonly maxBytes: number,
    private readonly expired: (subscriber: Mailbox.Mailbox) => boolean,
    private readonly millis: () => number,
    private readonly hooks: Mailbox.Hooks
  ) {}

  /** `message` goes to `recipients` at the end of this turn. */
  enqueue(recipients: Recipients, message: Hub.Message): void {
    if (recipients.batch.length === 0) this.dirty.push(recipients)
    recipients.batch.push(message)
    this.dirtyBytes += message.frame.byteLength
    if (this.dirtyBytes >= this.maxBytes) this.flush()
    else if (!this.scheduled) {
      this.scheduled = true
      afterTurn(this.flush)
    }
  }

  /** Hand out what is batched now. */
  readonly flush = (): void => {
    this.scheduled = false
    const ready = this.dirty
    this.dirty = []
    this.dirtyBytes = 0
    let slow = 0
    const batches: Array<ReadonlyArray<Hub.Message>> = new Array(ready.length)
    for (let i = 0; i < ready.length; i++) {
      const recipients = ready[i]!
      const batch = recipients.batch
      batches[i] = batch
      recipients.batch = []
      if (batch.length === 1) {
        const message = batch[0]!
        for (const subscriber of recipients.subscribers) {
          if (!this.expired(subscriber) && !subscriber.offer(message)) slow++
        }
      } else {
        const run = new Mailbox.Run(batch)
        for (const subscriber of recipients.subscribers) {
          if (!this.expired(subscriber) && !subscriber.offerRun(run)) slow++
        }
      }
    }
    if (slow > 0) Metrics.slowSubscribers.unsafeUpdate(slow, [])
    reportDelivered(this.hooks)
    const now = this.millis()
    for (const batch of batches) {
      for (const message of batch) {
        if (message.at !== undefined) Metrics.publishLatency.unsafeUpdate(now - message.at, [])
      }
    }
  }
}

/** Report the record frames the mailboxes handed on (counted in plain numbers) since the last report. */
export const reportDelivered = (hooks: Mailbox.Hooks): void => {
  if (hooks.delivered > 0) {
    Metrics.framesDelivered.unsafeUpdate(hooks.delivered, [])
    hooks.delivered = 0
  }
}
