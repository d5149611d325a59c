/**
 * The load client of `npm run bench:multiplex` (its own process, started by
 * `run.mjs` with the config as JSON in argv[2]; prints one JSON line).
 *
 * `clients` clients, client i watching the `perClient` records
 * (i × perClient + j) % records of collection `posts`, over one server:
 * `per-record` opens one stream per watched record, `multiplexed` one stream
 * per client with all its records as topics.
 *
 * 1. Base RSS (after GCs), then connect: the first half of the clients, GC,
 *    RSS; the other half, GC, RSS; `concurrency` streams opening at a time.
 * 2. Bursts: `bursts` rounds; in each, every record gets one
 *    `POST /bench/burst/posts/<id>` with `burstSize` records; a record's next
 *    burst goes only once every subscriber of it has the burst before last; at
 *    most `depth` requests in flight, over `lanes` keep-alive connections (one
 *    record always on the same one). Server CPU from the first burst until the
 *    last frame arrived; bytes the streams read over the same time.
 * 3. RSS after the bursts (after GCs).
 * 4. Lone events: `latencyEvents` single `POST /bench/publish/posts/<id>`, one
 *    at a time, each awaited by every subscriber of its record, then `gapMs`.
 *
 * Every wait gives up when no frame has arrived for `stallMs` (or 2 s for a
 * lone event); any stall, miss, duplicate, reorder, foreign or malformed
 * frame, unexpected event, ended stream, failed connect or non-204 answer
 * makes `pass` false.
 */
import { Ledger } from "../lib/ledger.mjs"
import { cpuSeconds, rssBytes } from "../lib/proc.mjs"
import { Publisher } from "../lib/publisher.mjs"
import { quantile, sleep } from "../lib/stats.mjs"
import { Stream, summarize, totals } from "./stream.mjs"

const config = JSON.parse(process.argv[2])
const {
  variant, port, pid, records, clients, perClient, bursts, burstSize, depth, lanes,
  latencyEvents, gapMs, stallMs, concurrency, recordBytes
} = config
const settleMs = 300
const openTimeoutMs = 20_000

const ledger = new Ledger()
ledger.countPerKey(records)
/** Events published to each record so far (the next record's `n`). */
const sent = new Int32Array(records)
/** Subscriptions (stream, record) of each record. */
const subscribersOf = new Int32Array(records)
const watched = (client) => Array.from({ length: perClient }, (_, j) => (client * perClient + j) % records)
for (let i = 0; i < clients; i++) for (const record of watched(i)) subscribersOf[record]++

const padding = "x".repeat(4096)
/** A record of about `recordBytes` bytes: `{"n":…,"t":…,"title":"Post <id>, revision <n> xxx…"}`. */
const recordOf = (record, n, t) => {
  const head = `{"n":${n},"t":${t},"title":"Post ${record}, revision ${n} `
  return `${head}${padding.slice(0, Math.max(0, recordBytes - head.length - 2))}"}`
}

const publisher = await Publisher.open(port, lanes, depth)

/**
 * The watchdog of the whole run: the ledger's waits give up after `stallMs`
 * without a frame, but the client can also wait elsewhere (for a slot among
 * the `depth` requests in flight, for a GC's answer). Whenever no byte at all
 * has arrived, on any stream or publishing connection, for `stallMs`, the run
 * ends here as failed.
 */
let phase = "start"
const progress = () => totals.wireBytes + publisher.lanes.reduce((sum, lane) => sum + lane.socket.bytesRead, 0)
let lastProgress = { value: progress(), at: performance.now() }
const watchdog = setInterval(() => {
  const value = progress()
  if (value !== lastProgress.value) lastProgress = { value, at: performance.now() }
  else if (performance.now() - lastProgress.at > stallMs) {
    console.log(JSON.stringify({ variant, pass: false, error: `stalled: nothing arrived for ${stallMs} ms (${phase})` }))
    process.exit(0)
  }
}, 250)
const settledRss = async () => {
  await publisher.gc()
  await sleep(settleMs)
  await publisher.gc()
  return rssBytes(pid)
}

// 1. Connect, in two halves.
const connect = async (from, to, firstByteMs) => {
  const pending = []
  for (let i = from; i < to; i++) {
    if (variant === "multiplexed") pending.push(watched(i))
    else for (const record of watched(i)) pending.push([record])
  }
  const streams = []
  let failed = 0
  let firstError
  let next = 0
  const worker = async () => {
    while (next < pending.length) {
      const stream = new Stream(variant, pending[next++], ledger)
      const start = performance.now()
      try {
        streams.push(await stream.open(port, openTimeoutMs))
        firstByteMs.push(performance.now() - start)
      } catch (error) {
        failed++
        firstError ??= error.message
      }
    }
  }
  const cpu = cpuSeconds(pid)
  const t0 = performance.now()
  await Promise.all(Array.from({ length: Math.min(concurrency, pending.length) }, worker))
  return { streams, failed, firstError, seconds: (performance.now() - t0) / 1000, serverCpu: cpuSeconds(pid) - cpu }
}

phase = "connect"
const rssBase = await settledRss()
const readyMs = []
const half = Math.floor(clients / 2)
const first = await connect(0, half, readyMs)
const rssHalf = await settledRss()
const second = await connect(half, clients, readyMs)
const rssConnected = await settledRss()
const streams = [...first.streams, ...second.streams]
const connectFailed = first.failed + second.failed
const connectSeconds = first.seconds + second.seconds
const connection = {
  streams: streams.length,
  failed: connectFailed,
  firstError: first.firstError ?? second.firstError,
  seconds: connectSeconds,
  clientsPerSecond: clients / connectSeconds,
  readyP50Ms: quantile(readyMs, 0.5),
  readyP99Ms: quantile(readyMs, 0.99),
  serverCpuPerClientUs: ((first.serverCpu + second.serverCpu) / clients) * 1e6,
  /** The second half only: the subscribe path warm (the first half pays the JIT's work). */
  serverCpuPerClientWarmUs: (second.serverCpu / (clients - half)) * 1e6,
  /** Welcome, keepalive, retry and response heads, per stream. */
  openingWireBytesPerStream: totals.wireBytes / Math.max(1, streams.length)
}
const memory = {
  rssBase, rssHalf, rssConnected,
  /** The slope over the second half of the clients. */
  rssPerClientSlope: (rssConnected - rssHalf) / (clients - half),
  rssPerClientFromBase: (rssConnected - rssBase) / clients,
  rssAfterBursts: undefined
}

// 2. Bursts.
const burstPhase = async () => {
  // Phase markers on stderr, for someone watching (the orchestrator shows stderr only on failure).
  process.stderr.write("bursts\n")
  phase = "bursts"
  const before = { frames: ledger.count, ...totals, cpu: cpuSeconds(pid), client: process.cpuUsage() }
  const start = performance.now()
  let stalled = false
  outer: for (let b = 0; b < bursts; b++) {
    for (let record = 0; record < records; record++) {
      if (b >= 2 && subscribersOf[record] > 0) {
        // Every subscriber of the record has bursts 0 … b − 2.
        const wait = await ledger.untilKey(record, subscribersOf[record] * burstSize * (b - 1), stallMs)
        if (!wait.reached) {
          stalled = true
          break outer
        }
      }
      const t = performance.now().toFixed(3)
      const body = Array.from({ length: burstSize }, () => recordOf(record, sent[record]++, t))
      await publisher.post(`/bench/burst/posts/${record}`, `[${body.join(",")}]`, record)
    }
  }
  let frames = 0
  for (let record = 0; record < records; record++) frames += subscribersOf[record] * sent[record]
  const done = stalled ? { reached: false, at: performance.now() } : await ledger.until(before.frames + frames, stallMs)
  const cpu = cpuSeconds(pid) - before.cpu
  const client = process.cpuUsage(before.client)
  const seconds = (done.at - start) / 1000
  await publisher.drain()
  const delivered = ledger.count - before.frames
  return {
    reached: done.reached, events: sent.reduce((sum, n) => sum + n, 0), frames, delivered, seconds,
    framesPerSecond: delivered / seconds,
    cpuSeconds: cpu,
    cpuPerFrameUs: delivered === 0 ? null : (cpu / delivered) * 1e6,
    wireBytesPerFrame: (totals.wireBytes - before.wireBytes) / delivered,
    sseBytesPerFrame: (totals.bodyBytes - before.bodyBytes) / delivered,
    idCharsPerFrame: (totals.idChars - before.idChars) / delivered,
    framesPerRead: delivered / (totals.reads - before.reads),
    framesPerChunk: delivered / (totals.chunks - before.chunks),
    clientCpuShare: (client.user + client.system) / 1e6 / seconds
  }
}

// 4. Lone events: record (e × 37) % records (all different for up to `records` events).
const lonePhase = async () => {
  process.stderr.write("lone events\n")
  phase = "lone events"
  ledger.recordingLatency = true
  const before = ledger.latencyCount
  const allMs = []
  let timeouts = 0
  let e = 0
  for (; e < latencyEvents && timeouts < 3; e++) {
    const record = (e * 37) % records
    const from = ledger.latencyCount
    const done = ledger.until(ledger.count + subscribersOf[record], Math.min(stallMs, 2_000))
    await publisher.post(`/bench/publish/posts/${record}`, recordOf(record, sent[record]++, performance.now().toFixed(3)), record)
    if (!(await done).reached) timeouts++
    else allMs.push(Math.max(...ledger.samples().subarray(from)))
    await sleep(gapMs)
  }
  ledger.recordingLatency = false
  const samples = ledger.samples().subarray(before)
  return {
    events: e, timeouts,
    /** Publish → arrival at every subscriber of the record, per event. */
    p50Ms: quantile(allMs, 0.5),
    p99Ms: quantile(allMs, 0.99),
    maxMs: quantile(allMs, 1),
    /** Publish → arrival, per (subscriber, event). */
    perDeliveryP50Ms: quantile(samples, 0.5),
    perDeliveryP99Ms: quantile(samples, 0.99)
  }
}

const throughput = connectFailed === 0 ? await burstPhase() : { reached: false, skipped: "connect failed" }
phase = "GC after the bursts"
memory.rssAfterBursts = await settledRss()
const latency = throughput.reached ? await lonePhase() : { timeouts: 0, skipped: "bursts did not complete" }
await publisher.drain()
// A last frame still on its way would show up as missing: give the streams a moment.
await sleep(200)
clearInterval(watchdog)
const check = summarize(streams, sent)
publisher.close()
for (const stream of streams) stream.close()

const pass = connectFailed === 0 && throughput.reached && latency.timeouts === 0 && latency.skipped === undefined &&
  publisher.errors === 0 && check.complete === check.streams
console.log(JSON.stringify({
  variant, connection, memory, throughput, latency, check,
  publishErrors: publisher.errors, firstPublishError: publisher.firstError,
  pass
}))
