/**
 * The load client of one round, run by `run.mjs` in its own process:
 * `node bench/workerd/client.mjs '<config as JSON>'`. Prints one JSON line
 * (the round's result) on stdout.
 *
 * `subscribers` raw sockets subscribe to `/<variant>/<collection>/<id>` (one
 * Durable Object), then:
 *
 * - Throughput: a burst of `events` publishes (`depth` in flight on one
 *   pipelined connection); delivered frames per second from the first publish
 *   until the last frame arrived, and workerd's CPU time (`pid`) per frame over
 *   the same interval.
 * - Latency: `latencyEvents` lone publishes, each awaited by every subscriber,
 *   then `gapMs` of quiet; p50/p99 of send-to-receive time over all deliveries,
 *   and workerd's CPU per frame over the phase.
 *
 * Every subscriber must receive every event exactly once and in order.
 */
import { Ledger } from "../lib/ledger.mjs"
import { Plan } from "../lib/plan.mjs"
import { cpuSeconds } from "../lib/proc.mjs"
import { quantile, sleep } from "../lib/stats.mjs"
import { Subscriber, summarize } from "../lib/subscriber.mjs"
import { EventPublisher } from "./publisher.mjs"

const concurrency = 200
const connectTimeoutMs = 20_000

/** Open `count` subscribers to `path`, `concurrency` at a time. */
const connect = async (port, path, count, plan, ledger) => {
  const subscribers = []
  let failed = 0
  let firstError
  let next = 0
  const worker = async () => {
    while (next++ < count) {
      try {
        subscribers.push(await new Subscriber(0, plan, ledger).open(port, path, connectTimeoutMs))
      } catch (error) {
        failed++
        firstError ??= error.message
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  return { subscribers, failed, firstError }
}

const burst = async (publisher, ledger, subscribers, { pid, events, size, stallMs }) => {
  const before = { frames: ledger.count, chunks: ledger.chunks, client: process.cpuUsage() }
  const cpuBefore = cpuSeconds(pid)
  const start = performance.now()
  for (let n = 0; n < events; n++) await publisher.publish(n, size)
  const { reached, at } = await ledger.until(before.frames + subscribers * events, stallMs)
  const cpu = cpuSeconds(pid) - cpuBefore
  const client = process.cpuUsage(before.client)
  await publisher.drain()
  const delivered = ledger.count - before.frames
  const chunks = ledger.chunks - before.chunks
  const seconds = (at - start) / 1000
  return {
    reached, events, delivered, seconds,
    framesPerSecond: delivered / seconds,
    framesPerChunk: chunks === 0 ? null : delivered / chunks,
    cpuSeconds: cpu,
    cpuPerFrameUs: delivered === 0 ? null : (cpu / delivered) * 1e6,
    clientCpuShare: (client.user + client.system) / 1e6 / seconds
  }
}

const lone = async (publisher, ledger, subscribers, { pid, events, latencyEvents, size, gapMs, stallMs }) => {
  const before = ledger.count
  const cpuBefore = cpuSeconds(pid)
  let timeouts = 0
  ledger.recordingLatency = true
  for (let n = events; n < events + latencyEvents && timeouts < 3; n++) {
    const done = ledger.until(ledger.count + subscribers, stallMs)
    await publisher.publish(n, size)
    if (!(await done).reached) timeouts++
    await sleep(gapMs)
  }
  ledger.recordingLatency = false
  const cpu = cpuSeconds(pid) - cpuBefore
  await publisher.drain()
  const delivered = ledger.count - before
  const samples = ledger.samples()
  return {
    events: publisher.sent,
    samples: samples.length,
    timeouts,
    p50Ms: quantile(samples, 0.5),
    p99Ms: quantile(samples, 0.99),
    maxMs: quantile(samples, 1),
    cpuSeconds: cpu,
    cpuPerFrameUs: delivered === 0 ? null : (cpu / delivered) * 1e6
  }
}

/**
 * workerd closes a keep-alive connection that has been idle for 5 s, which a
 * publisher is while a burst drains to the subscribers: each phase publishes
 * over a connection of its own.
 */
const phase = async (port, target, run) => {
  const publisher = await EventPublisher.open(port, target)
  try {
    return { ...(await run(publisher)), sent: publisher.sent, publishErrors: publisher.errors, firstPublishError: publisher.firstError }
  } finally {
    publisher.close()
  }
}

const config = JSON.parse(process.argv[2])
const { port, variant, collection, id, events, latencyEvents, depth } = config
const path = `/${variant}/${encodeURIComponent(collection)}/${encodeURIComponent(id)}`
const plan = new Plan(1, events + latencyEvents)
const ledger = new Ledger()
const target = { path, collection, id, depth }

const { subscribers, failed, firstError } = await connect(port, path, config.subscribers, plan, ledger)
const throughput = await phase(port, target, (publisher) => burst(publisher, ledger, subscribers.length, config))
const latency = await phase(port, target, (publisher) => lone(publisher, ledger, subscribers.length, config))
const check = summarize(subscribers, throughput.sent + latency.sent)
for (const subscriber of subscribers) subscriber.close()

const publishErrors = throughput.publishErrors + latency.publishErrors
const pass = failed === 0 && subscribers.length > 0 && throughput.reached && latency.timeouts === 0 &&
  publishErrors === 0 && check.complete === check.subscribers && check.ended === 0
process.stdout.write(`${JSON.stringify({
  connected: subscribers.length, failed, firstError,
  throughput, latency, check,
  publishErrors, firstPublishError: throughput.firstPublishError ?? latency.firstPublishError,
  pass
})}\n`)
process.exit(0)
