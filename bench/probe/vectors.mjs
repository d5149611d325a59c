/**
 * The memory-attack vectors. Each runs against a fresh demo host started with
 * `env(scale)`; `run(ctx)` (in the client process, ctx = { port, pid, scale })
 * returns one row: `{ params, before, peak, after, settled, attackSeconds,
 * get, frame?, getAfterMs, notes }` (bytes, seconds, latency summaries).
 *
 * RSS `before` is taken after a warm-up request; `peak` is the highest RSS
 * seen from the start of the attack to `settled` (sampled every 100 ms, and
 * VmHWM); `after` right after the attack; `settled` after the vector's wait.
 */
import { startPinger } from "./lib/pinger.mjs"
import { cpu, heldByServer, PeakSampler, rss } from "./lib/server.mjs"
import { Conn, openIdle, openStreams, Pool, record, sleep, Stream, within } from "./lib/sockets.mjs"

const KiB = 1024
const MiB = 1024 * KiB
const api = "/api/saacms/v1/probe"
/** Bound on any one bulk phase (publishing, connecting): 60 s at full scale, at least 8 s. */
const phaseEnd = (scale) => performance.now() + Math.max(8_000, 60_000 * scale)

/** Frames of a 1 MiB record are a little over 1 MiB: the default limit (1 MiB) would answer 413. */
const bigFrames = { REALTIME_MAX_FRAME_BYTES: String(Math.round(1.1 * MiB)) }

const count = (full, scale, min = 1) => Math.max(min, Math.round(full * scale))
const mib = (bytes) => bytes === null || bytes === undefined ? "-" : `${(bytes / MiB).toFixed(1)} MiB`
const statuses = (tally) => Object.entries(tally).map(([status, n]) => `${n}× ${status}`).join(", ") || "none"
const put = (path, body) => ({ method: "PUT", path, body })

/** What a bulk run did: how many were sent (and whether the time bound cut it short), statuses, failures. */
const sent = (result, planned, what = "PUTs") =>
  `${result.sent} ${what}${result.sent < planned ? ` (of ${planned}: time bound)` : ""}: ${statuses(result.statuses)}` +
  (result.errors > 0 ? `, ${result.errors} failed (${result.firstError})` : "")

/** One PUT and one GET, so that lazily built state is not counted as the attack's. */
const warmUp = async (port) => {
  const conn = await Conn.open(port)
  await within(conn.request("PUT", `${api}/warm`, { body: '{"warm":true}' }), 10_000, "warm-up PUT")
  await within(conn.request("GET", `${api}/warm`), 10_000, "warm-up GET")
  conn.close()
  await sleep(200)
}

/** Latency of one plain GET on a fresh connection (ms), or a note of why there is none. */
const getLatency = async (port) => {
  try {
    const conn = await Conn.open(port)
    const start = performance.now()
    await within(conn.request("GET", `${api}/ping`), 30_000, "GET")
    conn.close()
    return performance.now() - start
  } catch (error) {
    return error.message
  }
}

/**
 * The common frame: warm up, read RSS, start the pinger and the peak sampler,
 * run `attack` (may return fields of the row, e.g. a later `before`), read
 * RSS after, wait `settleMs` (or run `settle`), read RSS settled. `prepare`
 * runs after the warm-up, before the pinger starts.
 */
const measure = async (ctx, { prepare, attack, settleMs = 3_000, settle, live = false }) => {
  const { port, pid } = ctx
  await warmUp(port)
  const row = { notes: [] }
  await prepare?.(row)
  row.before = rss(pid)
  const pinger = startPinger(port, { live })
  const sampler = new PeakSampler(pid)
  const start = performance.now()
  try {
    Object.assign(row, await attack(row))
  } catch (error) {
    row.notes.push(`attack failed: ${error.message}`)
  }
  row.attackSeconds ??= (performance.now() - start) / 1000
  row.after = rss(pid)
  const ping = await pinger.stop()
  row.get = ping.get
  row.frame = ping.frame
  if (ping.error !== undefined) row.notes.push(`pinger: ${ping.error}`)
  try {
    if (settle !== undefined) await settle(row)
    else await sleep(settleMs)
  } catch (error) {
    row.notes.push(`settle failed: ${error.message}`)
  }
  row.settled = rss(pid)
  row.peak = sampler.stop()
  row.getAfterMs = await getLatency(port)
  return row
}

/** Publish `events` records of `size` bytes to `path` over `connections` keep-alive connections; the ETag of the first answer. */
const publish = async ({ port, scale }, path, events, size, connections = 1) => {
  const pool = await Pool.open(port, connections)
  let oldest
  const start = performance.now()
  const result = await pool.run(events, (i) => put(path, record(i, size)), {
    deadline: phaseEnd(scale),
    onResponse: (i, response) => {
      if (i === 0) oldest = response.headers.etag
    }
  })
  pool.close()
  return { ...result, oldest, seconds: (performance.now() - start) / 1000 }
}

// 1. Many subscribers replaying a large history, none of them reading.
const replayFlood = (size) => async (ctx) => {
  const { port, pid, scale } = ctx
  const events = count(100, scale, 2)
  const conns = count(50, scale, 2)
  const key = `${api}/flood`
  let streams = []
  let published
  const row = await measure(ctx, {
    attack: async (row) => {
      published = await publish(ctx, key, events, size)
      if (published.oldest === undefined) throw new Error(`no ETag from the first PUT (${statuses(published.statuses)})`)
      await sleep(1_000)
      const rssHistory = rss(pid)
      row.notes.push(`${sent(published, events)} in ${published.seconds.toFixed(1)} s, RSS ${mib(row.before)} → ${mib(rssHistory)}`)
      const start = performance.now()
      const opened = await openStreams(port, conns, () => `${key}/subscribe`, {
        pause: true, headers: { "Last-Event-ID": published.oldest }, deadline: phaseEnd(scale)
      })
      streams = opened.streams
      if (Object.keys(opened.failures).length > 0) row.notes.push(`subscribe failures: ${JSON.stringify(opened.failures)}`)
      // Give the server time to queue what it will for the stalled readers.
      await sleep(1_000)
      const now = rss(pid)
      row.notes.push(`${streams.length} paused subscribers (Last-Event-ID = oldest): ${mib((now - rssHistory) / Math.max(1, streams.length))} each`)
      return { before: rssHistory, attackSeconds: (performance.now() - start) / 1000 }
    },
    settle: async (row) => {
      const ports = streams.map((stream) => stream.localPort)
      row.notes.push(`server holds ${heldByServer(pid, ports)}/${streams.length} of them`)
      await sleep(1_000)
      row.notes.push(`${heldByServer(pid, ports)}/${streams.length} 1 s later`)
    }
  })
  for (const stream of streams) stream.close()
  // What a client that does read gets for the same Last-Event-ID.
  if (published?.oldest !== undefined) {
    const reader = new Stream()
    try {
      await reader.open(port, `${key}/subscribe`, { headers: { "Last-Event-ID": published.oldest } })
      const deadline = performance.now() + 5_000
      while (reader.frames < events && !reader.ended && performance.now() < deadline) await sleep(50)
      row.notes.push(`a reading subscriber got ${JSON.stringify(reader.events)} (${mib(reader.bytes)})${reader.ended ? ", then the server ended it" : ""}`)
    } catch (error) {
      row.notes.push(`reading subscriber: ${error.message}`)
    }
    reader.close()
  }
  return { ...row, params: `${events} × ${size / KiB} KiB events, ${conns} paused subscribers replaying from the oldest` }
}

// 2. One subscriber that stops reading while large events are published.
const stalledReader = async (ctx) => {
  const { port, pid, scale } = ctx
  const events = count(1_100, scale, 2)
  const key = `${api}/stall`
  const stream = new Stream({ pause: true })
  let opened = false
  const row = await measure(ctx, {
    attack: async (row) => {
      await stream.open(port, `${key}/subscribe`)
      opened = true
      const published = await publish(ctx, key, events, MiB, 2)
      row.notes.push(sent(published, events))
      row.notes.push(`right after: server ${heldByServer(pid, [stream.localPort]) === 1 ? "holds" : "has closed"} the stalled connection`)
    },
    settleMs: 10_000
  })
  if (opened) {
    row.notes.push(`10 s later: server ${heldByServer(pid, [stream.localPort]) === 1 ? "holds" : "has closed"} it`)
    // Read again: what did the stalled client get in the end?
    stream.resume()
    await sleep(1_000)
    row.notes.push(`resumed for 1 s: ${JSON.stringify(stream.events)}, ${mib(stream.bytes)}${stream.ended ? ", ended" : ", still open"}`)
  }
  stream.close()
  return { ...row, params: `1 paused subscriber, ${events} × 1 MiB events` }
}

/** Tiny PUTs to another record: each append sweeps one record's expired history, in turn. */
const nudge = async ({ port, scale }, n) => {
  const pool = await Pool.open(port, 4)
  await pool.run(n, (i) => put(`${api}/nudge`, `{"n":${i}}`), { deadline: phaseEnd(scale) })
  pool.close()
}

const ageMs = 2_000

// 3. Records published once and never again.
const forgotten = (full, size) => async (ctx) => {
  const { port, pid, scale } = ctx
  const records = count(full, scale, 2)
  const big = size >= KiB
  const nudges = Math.min(2 * records, 1_000)
  const row = await measure(ctx, {
    attack: async (row) => {
      const pool = await Pool.open(port, big ? 2 : 32)
      const result = await pool.run(
        records,
        (i) => put(`${api}/f${i}`, big ? record(i, size) : `{"n":${i}}`),
        { deadline: phaseEnd(scale) }
      )
      pool.close()
      row.notes.push(sent(result, records))
      return { records: result.sent }
    },
    settle: async (row) => {
      await sleep(ageMs + 1_000)
      row.notes.push(`settled = idle ${(ageMs + 1_000) / 1000} s (past the age)`)
      await nudge(ctx, nudges)
      await sleep(500)
      row.notes.push(`after ${nudges} PUTs to another record: ${mib(rss(pid))}`)
      if (big) {
        const pool = await Pool.open(port, 4)
        const result = await pool.run(records, (i) => ({ method: "DELETE", path: `${api}/f${i}` }), { deadline: phaseEnd(scale) })
        pool.close()
        await sleep(500)
        row.notes.push(`after ${sent(result, records, "DELETEs")}: ${mib(rss(pid))}`)
      } else {
        row.notes.push(`per record (after): ${((row.after - row.before) / Math.max(1, row.records)).toFixed(0)} B; the demo store keeps each body too`)
      }
    }
  })
  return { ...row, params: `${records} records × 1 PUT of ${big ? `${size / KiB} KiB` : "~10 B"}, max age ${ageMs} ms` }
}

const historyAgeMs = 3_000

// 4. Full histories on records nobody subscribes to.
const unreadHistory = async (ctx) => {
  const { port, pid, scale } = ctx
  const records = count(200, scale, 2)
  const perRecord = 100
  const size = 64 * KiB
  const row = await measure(ctx, {
    attack: async (row) => {
      const pool = await Pool.open(port, 2)
      // Record by record, so that each history fills up at once.
      const result = await pool.run(records * perRecord, (i) => put(`${api}/h${Math.floor(i / perRecord)}`, record(i, size)), {
        deadline: phaseEnd(scale)
      })
      pool.close()
      row.notes.push(sent(result, records * perRecord))
    },
    settle: async (row) => {
      await sleep(historyAgeMs + 1_000)
      row.notes.push(`settled = idle ${(historyAgeMs + 1_000) / 1000} s (past the age; the attack took ${row.attackSeconds.toFixed(1)} s)`)
      await nudge(ctx, 2 * records)
      await sleep(500)
      row.notes.push(`after ${2 * records} PUTs to another record: ${mib(rss(pid))}`)
    }
  })
  return { ...row, params: `${records} records × ${perRecord} × 64 KiB, max age ${historyAgeMs} ms` }
}

/** A flat JSON array of exactly `size` bytes: `[23456,123456,…,123456]`. */
const flatArray = (size) => {
  const body = Buffer.alloc(size, "123456,")
  body[0] = 0x5b // [
  // A trailing comma becomes a digit: the last number just gets longer.
  if (body[size - 2] === 0x2c) body[size - 2] = 0x30
  body[size - 1] = 0x5d // ]
  return body
}

// 5. One huge record.
const huge = (fullMiB) => async (ctx) => {
  const { port, scale } = ctx
  const size = Math.max(MiB, Math.round(fullMiB * scale * MiB))
  const body = flatArray(size)
  const row = await measure(ctx, {
    live: true,
    attack: async (row) => {
      const conn = await Conn.open(port)
      const start = performance.now()
      try {
        const response = await within(conn.request("PUT", `${api}/huge`, { body: [body] }), 120_000, "PUT")
        row.notes.push(`HTTP ${response.status} after ${((performance.now() - start) / 1000).toFixed(2)} s${response.status >= 400 ? ` ${response.body.slice(0, 80)}` : ""}`)
      } catch (error) {
        row.notes.push(`no answer after ${((performance.now() - start) / 1000).toFixed(2)} s: ${error.message}`)
      }
      conn.close()
      // Let the pinger see the aftermath too.
      await sleep(500)
    },
    settleMs: 2_000
  })
  return { ...row, params: `PUT of a ${(size / MiB).toFixed(0)} MiB flat JSON array; live subscriber + GETs meanwhile` }
}

// 6. Connections that never send a request, and keep-alive connections idle after one GET.
const idleConnections = async (ctx) => {
  const { port, pid, scale } = ctx
  const n = count(5_000, scale, 2)
  const holdMs = Math.min(30_000, Math.max(15_000, 30_000 * scale))
  const kinds = { silent: [], "after a GET": [] }
  const ttfb = async () => {
    const stream = new Stream()
    try {
      await stream.open(port, `${api}/idle/subscribe`, { timeoutMs: 10_000 })
      return `${stream.ttfbMs.toFixed(0)} ms`
    } catch (error) {
      return error.message
    } finally {
      stream.close()
    }
  }
  const row = await measure(ctx, {
    attack: async (row) => {
      const silent = await openIdle(port, n, { deadline: phaseEnd(scale) })
      kinds.silent = silent.conns
      const rssSilent = rss(pid)
      const afterGet = await openIdle(port, n, { get: `${api}/ping`, deadline: phaseEnd(scale) })
      kinds["after a GET"] = afterGet.conns
      const answered = performance.now() + 5_000
      while (afterGet.conns.some((conn) => conn.status === undefined && !conn.closed) && performance.now() < answered) await sleep(100)
      const seen = {}
      for (const conn of afterGet.conns) seen[conn.status ?? "none"] = (seen[conn.status ?? "none"] ?? 0) + 1
      row.notes.push(
        `RSS ${mib(row.before)} → ${mib(rssSilent)} with ${silent.conns.length} silent → ${mib(rss(pid))} with ${afterGet.conns.length} more after a GET (${statuses(seen)})`
      )
      if (silent.failed + afterGet.failed > 0) row.notes.push(`${silent.failed + afterGet.failed} failed to connect`)
    },
    settle: async (row) => {
      // Every 5 s: how many of each kind are still open, and how fast a real subscribe starts.
      const start = performance.now()
      const checks = []
      while (performance.now() - start < holdMs) {
        await sleep(Math.min(5_000, holdMs - (performance.now() - start)))
        const open = Object.entries(kinds).map(([kind, conns]) =>
          `${kind} ${conns.filter((conn) => !conn.closed).length}/${heldByServer(pid, conns.map((conn) => conn.localPort))}`
        )
        checks.push(`${((performance.now() - start) / 1000).toFixed(0)} s: ${open.join(", ")}, subscribe TTFB ${await ttfb()}`)
      }
      row.notes.push(`open (client view / held by server) at ${checks.join("; ")}`)
    }
  })
  for (const conns of Object.values(kinds)) for (const conn of conns) conn.socket.destroy()
  return { ...row, params: `${n} silent connections + ${n} keep-alive connections idle after one GET, held ${(holdMs / 1000).toFixed(0)} s` }
}

// 7. Many active records, one reading subscriber each: memory and heartbeat CPU.
const activeRecords = async (ctx) => {
  const { port, pid, scale } = ctx
  const n = count(10_000, scale, 2)
  const windowMs = 2_000
  let streams = []
  const row = await measure(ctx, {
    prepare: async (row) => {
      const idleStart = cpu(pid)
      await sleep(windowMs)
      row.idleCpu = cpu(pid) - idleStart
    },
    attack: async (row) => {
      const opened = await openStreams(port, n, (i) => `${api}/a${i}/subscribe`, { deadline: phaseEnd(scale) })
      streams = opened.streams
      if (Object.keys(opened.failures).length > 0) row.notes.push(`subscribe failures: ${JSON.stringify(opened.failures)}`)
    },
    settle: async (row) => {
      row.notes.push(`${streams.length} subscribers: ${((row.after - row.before) / Math.max(1, streams.length) / KiB).toFixed(2)} KiB each`)
      await sleep(1_500)
      const keepalives = () => streams.reduce((sum, stream) => sum + stream.keepalives, 0)
      const k0 = keepalives()
      const c0 = cpu(pid)
      await sleep(windowMs)
      const active = cpu(pid) - c0
      const ticks = keepalives() - k0
      const perTick = ticks === 0 ? "-" : `${(((active - row.idleCpu) / ticks) * 1e6).toFixed(1)} µs`
      row.notes.push(
        `CPU over ${windowMs / 1000} s: ${(row.idleCpu * 1000).toFixed(0)} ms idle (no subscribers), ` +
          `${(active * 1000).toFixed(0)} ms with them; ${ticks} keepalives received → ${perTick} per record per tick`
      )
      const ended = streams.filter((stream) => stream.ended).length
      if (ended > 0) row.notes.push(`${ended} streams ended by the server`)
    }
  })
  for (const stream of streams) stream.close()
  return { ...row, params: `${n} records × 1 reading subscriber, heartbeat 1 s` }
}

export const vectors = [
  { id: "1a", title: "Replay flood (1 MiB)", env: () => ({ ...bigFrames, REALTIME_MAX_EVENTS: "100" }), run: replayFlood(MiB) },
  { id: "1b", title: "Replay flood (64 KiB)", env: () => ({ REALTIME_MAX_EVENTS: "100" }), run: replayFlood(64 * KiB) },
  { id: "2", title: "Stalled reader", env: () => bigFrames, run: stalledReader },
  { id: "3a", title: "Forgotten records (1 MiB)", env: () => ({ ...bigFrames, REALTIME_MAX_AGE_MS: String(ageMs) }), run: forgotten(300, MiB) },
  { id: "3b", title: "Forgotten records (tiny)", env: () => ({ REALTIME_MAX_AGE_MS: String(ageMs) }), run: forgotten(200_000, 0) },
  { id: "4", title: "Unread histories", env: () => ({ REALTIME_MAX_AGE_MS: String(historyAgeMs) }), run: unreadHistory },
  { id: "5a", title: "Huge record (50 MiB)", env: () => ({}), run: huge(50) },
  { id: "5b", title: "Huge record (120 MiB)", env: () => ({}), run: huge(120) },
  { id: "6", title: "Idle connections", env: () => ({}), run: idleConnections },
  { id: "7", title: "Active records, heartbeat", env: () => ({ REALTIME_HEARTBEAT_MS: "1000" }), run: activeRecords }
]
