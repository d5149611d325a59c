/**
 * Scenarios 1-3 and the Redis cluster scenarios: `subscribers` clients over
 * `keys` records, on one server or split over several (`servers`, each
 * `{ port, pid }`): the j-th subscriber of a key goes to server j mod
 * servers, so every key has subscribers on every server. Publishes go
 * through a `Rotation`: to every server in turn, `block` at a time.
 *
 * Throughput phase: a burst of up to `events` publishes (`depth` in flight),
 * cut short after `burstSeconds`; measures delivered frames per second and
 * the servers' CPU time (summed) per delivered frame, from the first publish
 * until the last frame arrived. With `redisPid`, redis-server's CPU over the
 * same interval too, apart.
 *
 * Latency phase: up to `latencyEvents` lone publishes (at most
 * `latencySeconds`), each awaited by every subscriber of its key, then `gapMs`
 * of quiet; p50/p99 of send-to-receive time over all deliveries, and of the
 * publish round trip (request written → 204 read).
 *
 * Ingress phase (warm, same server processes): as many publishes as the
 * throughput phase made, of the same size, over the same lanes and with the
 * same pipelining, to records nobody watches (ids `k<keys>` … `k<2 × keys − 1>`);
 * measures the servers' CPU per publish (the bench's HTTP publish route plus
 * the publish itself with no subscriber to fan out to), so that
 * `fanoutCpuPerFrameUs` can leave it out:
 * (throughput CPU − publishes × ingress µs/publish) / frames delivered.
 *
 * Round-trip phase, last: `latencyEvents` publishes to those same unwatched
 * records, one at a time: the publish round trip with nothing to fan out.
 */
import { connect } from "./connect.mjs"
import { Ledger } from "./ledger.mjs"
import { Plan } from "./plan.mjs"
import { cpuClock } from "./proc.mjs"
import { Rotation } from "./rotation.mjs"
import { quantile, sleep } from "./stats.mjs"
import { summarize } from "./subscriber.mjs"

export const fanout = async (config) => {
  const { servers, keys, events, latencyEvents, depth } = config
  const ports = servers.map((server) => server.port)
  const clock = cpuClock(servers.map((server) => server.pid), config.redisPid)
  const plan = new Plan(keys, events + latencyEvents)
  const ledger = new Ledger()
  const { subscribers, failed, firstError } = await connect({
    portOf: (i) => ports[Math.floor(i / keys) % ports.length], count: config.subscribers, keyOf: (i) => i % keys, plan, ledger
  })
  const perKey = new Int32Array(keys)
  for (const subscriber of subscribers) perKey[subscriber.key]++
  const perServer = ports.map((port) => subscribers.filter((subscriber) => subscriber.port === port).length)
  const publisher = await openRotation(config)

  const throughput = await burst(publisher, plan, ledger, perKey, config, clock)
  const latency = await lone(publisher, plan, ledger, perKey, config, clock)
  const ingress = await ingressOnly(config, throughput.events, clock)
  throughput.ingress = ingress
  throughput.ingressUsPerPublish = ingress.usPerPublish
  throughput.fanoutCpuPerFrameUs = throughput.delivered === 0 || ingress.usPerPublish === null
    ? null
    : Math.max(0, throughput.cpuSeconds * 1e6 - throughput.events * ingress.usPerPublish) / throughput.delivered
  const roundTrip = await roundTrips(config)
  const check = summarize(subscribers, publisher.sent)

  publisher.close()
  for (const subscriber of subscribers) subscriber.close()
  const pass = failed === 0 && throughput.reached && latency.timeouts === 0 && publisher.errors === 0 &&
    ingress.errors === 0 && roundTrip.errors === 0 && check.complete === check.subscribers && check.ended === 0
  return {
    servers: ports.length, connected: subscribers.length, perServer, failed, firstError,
    throughput, latency, roundTrip, check,
    publishErrors: publisher.errors, firstPublishError: publisher.firstError,
    pass
  }
}

/**
 * The publisher to every server: `lanes` connections each (default 4, at most
 * one per key), pipelined unless `pipelining` is false; see `Rotation`.
 */
const openRotation = ({ servers, keys, depth, lanes = 4, pipelining, block }) =>
  Rotation.open(servers.map((server) => server.port), Math.min(keys, lanes), depth, { block, pipelining })

/** CPU µs per item, `null` without items or without a reading. */
const perItemUs = (seconds, items) => items === 0 || seconds === null ? null : (seconds / items) * 1e6

/**
 * Server CPU per publish to records with no subscribers (keys `keys` … `2 × keys − 1`,
 * each on the lane its key `n % keys` used in the throughput phase): `publishes`
 * publishes, the number the throughput phase made.
 */
const ingressOnly = async (config, publishes, clock) => {
  const { keys, size, burstSeconds } = config
  const publisher = await openRotation(config)
  const before = clock.read()
  const start = performance.now()
  const deadline = start + burstSeconds * 1000
  let n = 0
  for (; n < publishes && performance.now() < deadline; n++) await publisher.publish(n, keys + (n % keys), size)
  await publisher.drain()
  const cpu = clock.since(before)
  const seconds = (performance.now() - start) / 1000
  publisher.close()
  return {
    events: n, seconds, cpuSeconds: cpu.servers, redisCpuSeconds: cpu.redis,
    usPerPublish: perItemUs(cpu.servers, n),
    redisUsPerPublish: perItemUs(cpu.redis, n),
    errors: publisher.errors, firstError: publisher.firstError
  }
}

/** Publish round trips with nothing to fan out: one publish at a time to the ingress phase's records. */
const roundTrips = async (config) => {
  const { keys, size, latencyEvents, latencySeconds } = config
  const publisher = await openRotation(config)
  publisher.recordRoundTrips()
  const deadline = performance.now() + latencySeconds * 1000
  for (let n = 0; n < latencyEvents && performance.now() < deadline; n++) {
    await publisher.publish(n, keys + (n % keys), size)
    await publisher.drain()
  }
  const samples = publisher.takeRoundTrips()
  publisher.close()
  return {
    events: publisher.sent,
    p50Ms: quantile(samples, 0.5),
    p99Ms: quantile(samples, 0.99),
    errors: publisher.errors, firstError: publisher.firstError
  }
}

/** Frames owed to the subscribers for the first `published` events. */
const framesFor = (plan, perKey, published) => {
  let frames = 0
  for (let key = 0; key < perKey.length; key++) frames += perKey[key] * plan.eventsOf(key, published)
  return frames
}

const burst = async (publisher, plan, ledger, perKey, { events, size, stallMs, burstSeconds }, clock) => {
  const before = { frames: ledger.count, chunks: ledger.chunks, client: process.cpuUsage(), cpu: clock.read() }
  const start = performance.now()
  const deadline = start + burstSeconds * 1000
  let n = 0
  for (; n < events && performance.now() < deadline; n++) await publisher.publish(n, plan.keyOf[n], size)
  const frames = framesFor(plan, perKey, n)
  const { reached, at } = await ledger.until(before.frames + frames, stallMs)
  const cpu = clock.since(before.cpu)
  const client = process.cpuUsage(before.client)
  await publisher.drain()
  const delivered = ledger.count - before.frames
  const chunks = ledger.chunks - before.chunks
  const seconds = (at - start) / 1000
  return {
    reached, events: n, frames, delivered, seconds,
    framesPerSecond: delivered / seconds,
    framesPerChunk: chunks === 0 ? null : delivered / chunks,
    cpuSeconds: cpu.servers,
    serverCpuSeconds: cpu.perServer,
    cpuPerFrameUs: perItemUs(cpu.servers, delivered),
    redisCpuSeconds: cpu.redis,
    redisCpuPerFrameUs: perItemUs(cpu.redis, delivered),
    clientCpuShare: (client.user + client.system) / 1e6 / seconds
  }
}

const maxTimeouts = 3

/**
 * Lone events from number `first`, one at a time: each is awaited by every
 * subscriber of its key, then `gapMs` of quiet; at most `latencyEvents`, within
 * `latencySeconds`, until 3 of them time out. Records latency meanwhile; the
 * number after the last one sent, and the timeouts.
 */
export const publishLone = async (publisher, plan, ledger, perKey, { latencyEvents, size, gapMs, stallMs, latencySeconds }, first) => {
  const deadline = performance.now() + latencySeconds * 1000
  let timeouts = 0
  ledger.recordingLatency = true
  let n = first
  for (; n < first + latencyEvents && timeouts < maxTimeouts && performance.now() < deadline; n++) {
    const key = plan.keyOf[n]
    const done = ledger.until(ledger.count + perKey[key], Math.min(stallMs, 2_000))
    await publisher.publish(n, key, size)
    if (!(await done).reached) timeouts++
    await sleep(gapMs)
  }
  ledger.recordingLatency = false
  return { next: n, timeouts }
}

const lone = async (publisher, plan, ledger, perKey, options, clock) => {
  const first = publisher.sent
  const before = { frames: ledger.count, cpu: clock.read() }
  publisher.recordRoundTrips()
  const { timeouts } = await publishLone(publisher, plan, ledger, perKey, options, first)
  await publisher.drain()
  const cpu = clock.since(before.cpu)
  const delivered = ledger.count - before.frames
  const samples = ledger.samples()
  const roundTrips = publisher.takeRoundTrips()
  return {
    events: publisher.sent - first,
    samples: samples.length,
    timeouts,
    p50Ms: quantile(samples, 0.5),
    p99Ms: quantile(samples, 0.99),
    maxMs: quantile(samples, 1),
    roundTripP50Ms: quantile(roundTrips, 0.5),
    roundTripP99Ms: quantile(roundTrips, 0.99),
    cpuPerFrameUs: perItemUs(cpu.servers, delivered),
    redisCpuPerFrameUs: perItemUs(cpu.redis, delivered)
  }
}
