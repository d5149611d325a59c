/**
 * Scenario 4: memory per idle subscriber. Server RSS (after a full GC) with
 * half of the subscribers connected and with all of them; the slope between
 * the two is the cost of one more idle subscriber.
 */
import { connect } from "./connect.mjs"
import { Ledger } from "./ledger.mjs"
import { Plan } from "./plan.mjs"
import { rssBytes } from "./proc.mjs"
import { Publisher } from "./publisher.mjs"
import { sleep } from "./stats.mjs"

const settleMs = 500
const holdMs = 2_000

export const idle = async ({ servers: [{ port, pid }], subscribers: count, keys }) => {
  const plan = new Plan(keys, 0)
  const ledger = new Ledger()
  const publisher = await Publisher.open(port, 1, 1)
  const settledRss = async () => {
    await publisher.gc()
    await sleep(settleMs)
    await publisher.gc()
    return rssBytes(pid)
  }

  const rssEmpty = await settledRss()
  const half = Math.floor(count / 2)
  const first = await connect({ portOf: () => port, count: half, keyOf: (i) => i % keys, plan, ledger })
  const rssHalf = await settledRss()
  const second = await connect({ portOf: () => port, count: count - half, keyOf: (i) => (half + i) % keys, plan, ledger })
  const rssFull = await settledRss()
  await sleep(holdMs)

  const subscribers = [...first.subscribers, ...second.subscribers]
  const ended = subscribers.filter((subscriber) => subscriber.ended).length
  publisher.close()
  for (const subscriber of subscribers) subscriber.close()
  const failed = first.failed + second.failed
  return {
    connected: subscribers.length, failed, firstError: first.firstError ?? second.firstError, ended,
    rssEmpty, rssHalf, rssFull,
    bytesPerSubscriber: (rssFull - rssHalf) / second.subscribers.length,
    pass: failed === 0 && ended === 0
  }
}
