/**
 * Scenarios 1-3: `subscribers` clients over `keys` records.
 *
 * Throughput phase: a burst of up to `events` publishes (`depth` in flight),
 * cut short after `burstSeconds`; measures delivered frames per second and
 * server CPU time per delivered frame, from the first publish until the last
 * frame arrived.
 *
 * Ingress phase, last (warm, same server process): as many publishes as the
 * throughput phase made, of the same size, over the same lanes and with the
 * same pipelining, to records nobody watches (ids `k<keys>` … `k<2 × keys − 1>`);
 * measures the server's CPU per publish (the bench's HTTP publish route plus
 * the publish itself with no subscriber to fan out to), so that
 * `fanoutCpuPerFrameUs` can leave it out:
 * (throughput CPU − publishes × ingress µs/publish) / frames delivered.
 *
 * Latency phase: up to `latencyEvents` lone publishes (at most
 * `latencySeconds`), each awaited by every subscriber of its key, then `gapMs`
 * of quiet; p50/p99 of send-to-receive time over all deliveries.
 */
import { connect } from "./connect.mjs"
import { Ledger } from "./ledger.mjs"
import { Plan } from "./plan.mjs"
import { cpuSeconds } from "./proc.mjs"
import { Publisher } from "./publisher.mjs"
import { quantile, sleep } from "./stats.mjs"
import { summarize } from "./subscriber.mjs"

export const fanout = async (config) => {
  const { port, keys, events, latencyEvents, depth } = config
  const plan = new Plan(keys, events + latencyEvents)
  const ledger = new Ledger()
  const { subscribers, failed, firstError } = await connect({
    port, count: config.subscribers, keyOf: (i) => i % keys, plan, ledger
  })
  const perKey = new Int32Array(keys)
  for (const subscriber of subscribers) perKey[subscriber.key]++
  const publisher = await Publisher.open(port, Math.min(keys, 4), depth)

  const throughput = await burst(publisher, plan, ledger, perKey, config)
  const latency = await lone(publisher, plan, ledger, perKey, config)
  const ingress = await ingressOnly(config, throughput.events)
  throughput.ingress = ingress
  throughput.ingressUsPerPublish = ingress.usPerPublish
  throughput.fanoutCpuPerFrameUs = throughput.delivered === 0 || ingress.usPerPublish === null
    ? null
    : Math.max(0, throughput.cpuSeconds * 1e6 - throughput.events * ingress.usPerPublish) / throughput.delivered
  const check = summarize(subscribers, publisher.sent)

  publisher.close()
  for (const subscriber of subscribers) subscriber.close()
  const pass = failed === 0 && throughput.reached && latency.timeouts === 0 && publisher.errors === 0 &&
    ingress.errors === 0 && check.complete === check.subscribers && check.ended === 0
  return {
    connected: subscribers.length, failed, firstError,
    throughput, latency, check,
    publishErrors: publisher.errors, firstPublishError: publisher.firstError,
    pass
  }
}

/**
 * Server CPU per publish to records with no subscribers (keys `keys` … `2 × keys − 1`,
 * each on the lane its key `n % keys` used in the throughput phase): `publishes`
 * publishes, the number the throughput phase made.
 */
const ingressOnly = async ({ port, pid, keys, size, depth, burstSeconds }, publishes) => {
  const publisher = await Publisher.open(port, Math.min(keys, 4), depth)
  const cpuBefore = cpuSeconds(pid)
  const start = performance.now()
  const deadline = start + burstSeconds * 1000
  let n = 0
  for (; n < publishes && performance.now() < deadline; n++) await publisher.publish(n, keys + (n % keys), size)
  await publisher.drain()
  const cpu = cpuSeconds(pid) - cpuBefore
  const seconds = (performance.now() - start) / 1000
  publisher.close()
  return {
    events: n, seconds, cpuSeconds: cpu,
    usPerPublish: n === 0 ? null : (cpu / n) * 1e6,
    errors: publisher.errors, firstError: publisher.firstError
  }
}

/** Frames owed to the subscribers for the first `published` events. */
const framesFor = (plan, perKey, published) => {
  let frames = 0
  for (let key = 0; key < perKey.length; key++) frames += perKey[key] * plan.eventsOf(key, published)
  return frames
}

const burst = async (publisher, plan, ledger, perKey, { pid, events, size, stallMs, burstSeconds }) => {
  const before = { frames: ledger.count, chunks: ledger.chunks, client: process.cpuUsage() }
  const cpuBefore = cpuSeconds(pid)
  const start = performance.now()
  const deadline = start + burstSeconds * 1000
  let n = 0
  for (; n < events && performance.now() < deadline; n++) await publisher.publish(n, plan.keyOf[n], size)
  const frames = framesFor(plan, perKey, n)
  const { reached, at } = await ledger.until(before.frames + frames, stallMs)
  const cpu = cpuSeconds(pid) - cpuBefore
  const client = process.cpuUsage(before.client)
  await publisher.drain()
  const delivered = ledger.count - before.frames
  const chunks = ledger.chunks - before.chunks
  const seconds = (at - start) / 1000
  return {
    reached, events: n, frames, delivered, seconds,
    framesPerSecond: delivered / seconds,
    framesPerChunk: chunks === 0 ? null : delivered / chunks,
    cpuSeconds: cpu,
    cpuPerFrameUs: delivered === 0 ? null : (cpu / delivered) * 1e6,
    clientCpuShare: (client.user + client.system) / 1e6 / seconds
  }
}

const maxTimeouts = 3

const lone = async (publisher, plan, ledger, perKey, { latencyEvents, size, gapMs, stallMs, latencySeconds }) => {
  const first = publisher.sent
  const deadline = performance.now() + latencySeconds * 1000
  let timeouts = 0
  ledger.recordingLatency = true
  for (let n = first; n < first + latencyEvents && timeouts < maxTimeouts && performance.now() < deadline; n++) {
    const key = plan.keyOf[n]
    const done = ledger.until(ledger.count + perKey[key], Math.min(stallMs, 2_000))
    await publisher.publish(n, key, size)
    if (!(await done).reached) timeouts++
    await sleep(gapMs)
  }
  ledger.recordingLatency = false
  await publisher.drain()
  const samples = ledger.samples()
  return {
    events: publisher.sent - first,
    samples: samples.length,
    timeouts,
    p50Ms: quantile(samples, 0.5),
    p99Ms: quantile(samples, 0.99),
    maxMs: quantile(samples, 1)
  }
}
