/**
 * The CMS shapes (issue 10): `subscribers` clients over `keys` records, on one
 * server, with bursts.
 *
 * 1. Base RSS: the server's RSS after a full GC, before any subscriber.
 * 2. Connect: half of the subscribers, GC, RSS; the other half, GC, RSS. The
 *    connection rate is subscribers / the time both halves took (200 opening
 *    at a time, each counted once its first body bytes arrived); each
 *    subscriber's connect → first byte time gives p50/p99; idle RSS per
 *    subscriber is the slope between the two halves.
 * 3. Bursts: `bursts` rounds; in each, every record gets one burst of
 *    `burstSize` events in one request (`POST /bench/burst/…`: the server
 *    publishes them one after another, awaiting each, inside that request).
 *    A record's next burst is sent only when every subscriber of the record
 *    has the burst before last (so at most 2 bursts of a record in flight),
 *    and at most `depth` requests are in flight in all. A round is started
 *    only before `burstSeconds`. CPU per frame is the server's CPU from the
 *    first burst until the last frame arrived, over the frames delivered.
 * 4. RSS after the bursts (after a GC): (that − base) / subscribers is the RSS
 *    per subscriber of records with history.
 * 5. Lone events: `latencyEvents` single publishes (`POST /bench/publish/…`),
 *    each awaited by every subscriber of its record, then `gapMs` of quiet.
 *
 * Event numbering follows `Plan` (event `n` to record `n % keys`): burst `b`
 * of record `k` carries events `k + keys × (b × burstSize + i)`, so every
 * subscriber can check exactly-once and in-order delivery as elsewhere.
 */
import { connect } from "./connect.mjs"
import { publishLone } from "./fanout.mjs"
import { Ledger } from "./ledger.mjs"
import { Plan } from "./plan.mjs"
import { cpuSeconds, rssBytes } from "./proc.mjs"
import { Publisher } from "./publisher.mjs"
import { quantile, sleep } from "./stats.mjs"
import { summarize } from "./subscriber.mjs"

const settleMs = 300

export const cms = async (config) => {
  const { servers: [{ port, pid }], subscribers: count, keys, bursts, burstSize, latencyEvents, depth } = config
  const burstEvents = keys * bursts * burstSize
  const plan = new Plan(keys, burstEvents + latencyEvents)
  const ledger = new Ledger()
  ledger.countPerKey(keys)
  const publisher = await Publisher.open(port, Math.min(keys, 4), depth)
  const settledRss = async () => {
    await publisher.gc()
    await sleep(settleMs)
    await publisher.gc()
    return rssBytes(pid)
  }

  const rssBeforeGc = rssBytes(pid)
  const rssBase = await settledRss()

  const firstByteMs = []
  const half = Math.floor(count / 2)
  const connectCpu = { client: process.cpuUsage(), server: cpuSeconds(pid) }
  const t0 = performance.now()
  const first = await connect({ portOf: () => port, count: half, keyOf: (i) => i % keys, plan, ledger, firstByteMs })
  const firstSeconds = (performance.now() - t0) / 1000
  const clientFirst = process.cpuUsage(connectCpu.client)
  const serverFirst = cpuSeconds(pid) - connectCpu.server
  const rssHalf = await settledRss()
  const again = { client: process.cpuUsage(), server: cpuSeconds(pid) }
  const t1 = performance.now()
  const second = await connect({ portOf: () => port, count: count - half, keyOf: (i) => (half + i) % keys, plan, ledger, firstByteMs })
  const connectSeconds = firstSeconds + (performance.now() - t1) / 1000
  const clientSecond = process.cpuUsage(again.client)
  const serverConnectSeconds = serverFirst + cpuSeconds(pid) - again.server
  const clientConnectSeconds = (clientFirst.user + clientFirst.system + clientSecond.user + clientSecond.system) / 1e6
  const rssIdle = await settledRss()
  const subscribers = [...first.subscribers, ...second.subscribers]
  const failed = first.failed + second.failed
  const perKey = new Int32Array(keys)
  for (const subscriber of subscribers) perKey[subscriber.key]++
  const connection = {
    connected: subscribers.length,
    seconds: connectSeconds,
    perSecond: subscribers.length / connectSeconds,
    firstByteP50Ms: quantile(firstByteMs, 0.5),
    firstByteP99Ms: quantile(firstByteMs, 0.99),
    /** Server CPU per subscribe, µs (both halves). */
    serverCpuPerConnectUs: (serverConnectSeconds / subscribers.length) * 1e6,
    /** The client's CPU over the connect time: near 1, the client itself limits the rate. */
    clientCpuShare: clientConnectSeconds / connectSeconds,
    serverCpuShare: serverConnectSeconds / connectSeconds
  }

  const throughput = await burstPhase(publisher, plan, ledger, perKey, config, pid)
  const rssActive = await settledRss()
  const latency = await lone(publisher, plan, ledger, perKey, config, throughput.events)
  await publisher.drain()
  const check = summarize(subscribers, latency.published)

  publisher.close()
  for (const subscriber of subscribers) subscriber.close()
  const memory = {
    rssBeforeGc, rssBase, rssHalf, rssIdle, rssActive,
    idleBytesPerSubscriber: (rssIdle - rssHalf) / second.subscribers.length,
    activeBytesPerSubscriber: (rssActive - rssBase) / subscribers.length
  }
  const pass = failed === 0 && throughput.reached && latency.timeouts === 0 && publisher.errors === 0 &&
    check.complete === check.subscribers && check.ended === 0
  return {
    connected: subscribers.length, failed, firstError: first.firstError ?? second.firstError,
    connection, memory, throughput, latency, check,
    publishErrors: publisher.errors, firstPublishError: publisher.firstError,
    pass
  }
}

const burstPhase = async (publisher, plan, ledger, perKey, { keys, bursts, burstSize, size, stallMs, burstSeconds }, pid) => {
  const before = { frames: ledger.count, reads: ledger.reads, chunks: ledger.chunks, cpu: cpuSeconds(pid), client: process.cpuUsage() }
  const start = performance.now()
  const deadline = start + burstSeconds * 1000
  let rounds = 0
  let reached = true
  outer: for (let b = 0; b < bursts && performance.now() < deadline; b++) {
    for (let k = 0; k < keys; k++) {
      // Every subscriber of k has bursts 0 … b − 2 (frames counted per key).
      if (b >= 2 && perKey[k] > 0) {
        const wait = await ledger.untilKey(k, perKey[k] * burstSize * (b - 1), stallMs)
        if (!wait.reached) {
          reached = false
          break outer
        }
      }
      const ns = Array.from({ length: burstSize }, (_, i) => k + keys * (b * burstSize + i))
      await publisher.publishBurst(ns, k, size)
    }
    rounds++
  }
  const events = rounds * keys * burstSize
  let frames = 0
  for (let k = 0; k < keys; k++) frames += perKey[k] * rounds * burstSize
  const done = reached ? await ledger.until(before.frames + frames, stallMs) : { reached: false, at: performance.now() }
  const cpu = cpuSeconds(pid) - before.cpu
  const client = process.cpuUsage(before.client)
  await publisher.drain()
  const delivered = ledger.count - before.frames
  const seconds = (done.at - start) / 1000
  return {
    reached: done.reached, rounds, events, frames, delivered, seconds,
    framesPerSecond: delivered / seconds,
    framesPerRead: ledger.reads === before.reads ? null : delivered / (ledger.reads - before.reads),
    framesPerChunk: ledger.chunks === before.chunks ? null : delivered / (ledger.chunks - before.chunks),
    cpuSeconds: cpu,
    cpuPerFrameUs: delivered === 0 ? null : (cpu / delivered) * 1e6,
    clientCpuShare: (client.user + client.system) / 1e6 / seconds
  }
}

/**
 * Lone events, numbered right after the bursts that were sent (`first`, a
 * multiple of `keys`, so event `n` still goes to record `n % keys`):
 * `published` is then how many events went out, a prefix of the plan.
 */
const lone = async (publisher, plan, ledger, perKey, options, first) => {
  const before = ledger.latencyCount
  const { next: n, timeouts } = await publishLone(publisher, plan, ledger, perKey, options, first)
  const samples = ledger.samples().subarray(before)
  return {
    events: n - first, samples: samples.length, timeouts, published: n,
    p50Ms: quantile(samples, 0.5),
    p99Ms: quantile(samples, 0.99),
    maxMs: quantile(samples, 1)
  }
}
