/**
 * The server's responsiveness while an attack runs, measured from a worker
 * thread (so the attack's own work in the main thread does not skew it):
 * a plain `GET /api/saacms/v1/probe/ping` every `everyMs` on a keep-alive
 * connection. With `live`, also a subscriber on `probe/live` and a tiny PUT
 * to it each tick: the time from the PUT to its frame on the stream.
 */
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads"
import { Conn, sleep, Stream } from "./sockets.mjs"

const quantile = (samples, q) => {
  if (samples.length === 0) return null
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

const summary = (samples, failures) => ({
  n: samples.length, failures, p50Ms: quantile(samples, 0.5), maxMs: quantile(samples, 1)
})

/** Start pinging `port`; `stop()` resolves with `{ get, frame? }` summaries. */
export const startPinger = (port, { everyMs = 100, live = false } = {}) => {
  const worker = new Worker(new URL(import.meta.url), { workerData: { port, everyMs, live } })
  worker.unref()
  const result = new Promise((resolve) => {
    worker.once("message", resolve)
    worker.once("error", (error) => resolve({ error: error.message }))
    worker.once("exit", () => resolve({ error: "pinger exited" }))
  })
  return {
    stop: async () => {
      worker.postMessage("stop")
      const timeout = sleep(20_000).then(() => ({ error: "pinger did not stop" }))
      const out = await Promise.race([result, timeout])
      await worker.terminate()
      return out
    }
  }
}

/** One request with a bound; a request that never answers counts as a failure after `ms`. */
const timed = (conn, method, path, body, ms) =>
  new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms)
    conn.request(method, path, { body }).then(
      (response) => {
        clearTimeout(timer)
        resolve(response)
      },
      () => {
        clearTimeout(timer)
        resolve(null)
      }
    )
  })

const run = async ({ port, everyMs, live }) => {
  let stopping = false
  parentPort.once("message", () => stopping = true)
  const get = []
  const frame = []
  let getFailures = 0
  let frameFailures = 0
  let conn
  let stream
  const sentAt = new Map()
  if (live) {
    stream = new Stream({
      onData: (head) => {
        const seq = Number(/^\{"s":(\d+)/.exec(head)?.[1])
        const at = sentAt.get(seq)
        if (at !== undefined) {
          frame.push(performance.now() - at)
          sentAt.delete(seq)
        }
      }
    })
    await stream.open(port, "/api/saacms/v1/probe/live/subscribe").catch(() => stream = undefined)
  }
  for (let seq = 0; !stopping; seq++) {
    if (conn === undefined || conn.closed) conn = await Conn.open(port).catch(() => undefined)
    if (conn === undefined) {
      getFailures++
      await sleep(everyMs)
      continue
    }
    const start = performance.now()
    const response = await timed(conn, "GET", "/api/saacms/v1/probe/ping", undefined, 30_000)
    if (response === null) {
      getFailures++
      conn.close()
    } else get.push(performance.now() - start)
    if (stream !== undefined && !stopping) {
      sentAt.set(seq, performance.now())
      if ((await timed(conn, "PUT", "/api/saacms/v1/probe/live", `{"s":${seq}}`, 30_000)) === null) conn.close()
    }
    await sleep(everyMs)
  }
  // Frames still owed after a short grace count as failures.
  await sleep(Math.min(2_000, everyMs * 5))
  frameFailures = sentAt.size
  conn?.close()
  stream?.close()
  parentPort.postMessage({
    get: summary(get, getFailures),
    frame: live ? summary(frame, frameFailures) : undefined
  })
}

if (!isMainThread && workerData?.port !== undefined) await run(workerData)
