/**
 * Scenario 5: one subscriber that stops reading beside `subscribers` fast ones
 * on one key, while `events` records of `size` bytes are published (for at
 * most `burstSeconds`). Measures the server's RSS growth (peak during the
 * phase over the RSS after a GC just before it) and checks that every fast
 * subscriber got every event in order. The paused subscriber may be cut off.
 */
import { connect } from "./connect.mjs"
import { Ledger } from "./ledger.mjs"
import { Plan } from "./plan.mjs"
import { peakRssBytes, resetPeakRss, rssBytes } from "./proc.mjs"
import { Publisher } from "./publisher.mjs"
import { sleep } from "./stats.mjs"
import { summarize } from "./subscriber.mjs"

const sampleMs = 100
const pausedDrainMs = 3_000

export const slow = async ({ servers: [{ port, pid }], subscribers: count, events, size, depth, stallMs, burstSeconds }) => {
  const plan = new Plan(1, events)
  const ledger = new Ledger()
  const fast = await connect({ portOf: () => port, count, keyOf: () => 0, plan, ledger })
  const paused = await connect({ portOf: () => port, count: 1, keyOf: () => 0, plan, ledger })
  paused.subscribers[0]?.pause()
  const publisher = await Publisher.open(port, 1, depth)

  await publisher.gc()
  const baseline = rssBytes(pid)
  resetPeakRss(pid)
  let sampledPeak = baseline
  const sampler = setInterval(() => {
    sampledPeak = Math.max(sampledPeak, rssBytes(pid))
  }, sampleMs)

  const start = performance.now()
  const deadline = start + burstSeconds * 1000
  let n = 0
  for (; n < events && performance.now() < deadline; n++) await publisher.publish(n, 0, size)
  const { reached, at } = await ledger.until(fast.subscribers.length * n, stallMs)
  clearInterval(sampler)
  const peak = Math.max(sampledPeak, peakRssBytes(pid))
  await publisher.drain()
  const check = summarize(fast.subscribers, publisher.sent)

  // Let the paused subscriber read again: was it cut off, and after how many events?
  const lagging = paused.subscribers[0]
  lagging?.resume()
  await sleep(pausedDrainMs)
  publisher.close()
  for (const subscriber of [...fast.subscribers, ...paused.subscribers]) subscriber.close()
  const failed = fast.failed + paused.failed
  return {
    connected: fast.subscribers.length, failed, firstError: fast.firstError ?? paused.firstError,
    events: n,
    seconds: (at - start) / 1000,
    baseline, peak, growth: peak - baseline,
    check,
    paused: lagging === undefined ? null : { received: lagging.unique, cutOff: lagging.ended },
    publishErrors: publisher.errors, firstPublishError: publisher.firstError,
    pass: failed === 0 && reached && publisher.errors === 0 && check.complete === check.subscribers
  }
}
