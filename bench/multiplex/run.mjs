/**
 * `npm run bench:multiplex [-- --quick] [--runtime=bun,node]`
 *
 * What a multiplexed stream (`GET /api/saacms/v1/subscribe?topic=…`, issue 12)
 * costs against one stream per record, for the CMS editor shape: `clients`
 * clients each watching `perClient` of `records` records. On each runtime, two
 * rounds of the two variants in turn (per-record, multiplexed, per-record,
 * multiplexed), each on a fresh server process of ours (`plugin`: the
 * PluginDef on Hono, `bench/servers/plugin.ts` or the bundle of
 * `node-plugin.ts`) with the load client (`client.mjs`) in a process of its
 * own. Prints a table per runtime, writes bench/results/multiplex.json, and
 * exits with 1 when any run failed its checks.
 */
import { execFileSync } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { load, machine, source } from "../lib/environment.mjs"
import { removeBundles } from "../lib/nodeBundle.mjs"
import { freePort, killChildren, runClient, startServer, stop } from "../lib/processes.mjs"

const usage = "usage: node bench/multiplex/run.mjs [--quick] [--runtime=bun,node]"
const allRuntimes = ["bun", "node"]
const variants = ["per-record", "multiplexed"]
const rounds = 2

const shared = { burstSize: 10, depth: 32, lanes: 4, gapMs: 10, stallMs: 10_000, concurrency: 200, recordBytes: 100 }
const sizes = {
  full: { ...shared, records: 1_000, clients: 500, perClient: 10, bursts: 5, latencyEvents: 200 },
  quick: { ...shared, records: 200, clients: 100, perClient: 10, bursts: 3, latencyEvents: 40 }
}
const clientTimeoutMs = { full: 300_000, quick: 120_000 }

const parseArgs = (argv) => {
  const options = { quick: false, runtimes: allRuntimes }
  for (const arg of argv) {
    const [flag, value] = arg.split("=", 2)
    if (flag === "--quick" && value === undefined) options.quick = true
    else if (flag === "--runtime") {
      const names = (value ?? "").split(",").filter((name) => name !== "")
      if (names.length === 0 || names.some((name) => !allRuntimes.includes(name))) throw new Error(`--runtime: expected some of ${allRuntimes.join(", ")}`)
      options.runtimes = allRuntimes.filter((name) => names.includes(name))
    } else throw new Error(`unknown argument ${arg}\n${usage}`)
  }
  return options
}

/** The open-files limit this process (and so its children) has. */
const openFilesLimit = () => {
  try {
    const text = execFileSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }).trim()
    return text === "unlimited" ? Infinity : Number(text)
  } catch {
    return undefined
  }
}

const runOne = async (runtime, variant, size, timeoutMs) => {
  const server = await startServer("plugin", await freePort(), {}, undefined, runtime)
  try {
    const result = await runClient({ ...size, variant, port: server.port, pid: server.pid }, timeoutMs, "bench/multiplex/client.mjs")
    if (server.exitCode === null && server.signalCode === null) return result
    return { ...result, pass: false, error: `server exited (${server.exitCode ?? server.signalCode}: ${server.stderrTail.trim()})` }
  } finally {
    await stop(server)
  }
}

// Table

const fixed = (value, digits = 2) => value === null || value === undefined || Number.isNaN(value) ? "-" : value.toFixed(digits)
const int = (value) => value === null || value === undefined ? "-" : Math.round(value).toLocaleString("en-US")
const kib = (bytes) => fixed(bytes / 1024, 1)
const mib = (bytes) => fixed(bytes / 2 ** 20, 1)

const columns = [
  ["variant", 12, (r) => r.variant],
  ["round", 5, (r) => String(r.round)],
  ["streams", 7, (r) => int(r.connection?.streams)],
  ["connect s", 9, (r) => fixed(r.connection?.seconds)],
  ["conn CPU µs/client", 18, (r) => fixed(r.connection?.serverCpuPerClientUs, 0)],
  ["(warm)", 6, (r) => fixed(r.connection?.serverCpuPerClientWarmUs, 0)],
  ["RSS MiB", 7, (r) => mib(r.memory?.rssConnected)],
  ["RSS/client KiB", 14, (r) => r.memory === undefined ? "-" : `${kib(r.memory.rssPerClientSlope)}`],
  ["(from base)", 11, (r) => r.memory === undefined ? "-" : kib(r.memory.rssPerClientFromBase)],
  ["RSS after bursts", 16, (r) => mib(r.memory?.rssAfterBursts)],
  ["frames", 7, (r) => int(r.throughput?.delivered)],
  ["frames/s", 8, (r) => int(r.throughput?.framesPerSecond)],
  ["CPU µs/frame", 12, (r) => fixed(r.throughput?.cpuPerFrameUs)],
  ["B/frame", 7, (r) => fixed(r.throughput?.wireBytesPerFrame, 1)],
  ["frames/read", 11, (r) => fixed(r.throughput?.framesPerRead)],
  ["lone p50/p99 ms", 15, (r) => r.latency?.p50Ms === undefined ? "-" : `${fixed(r.latency.p50Ms)} / ${fixed(r.latency.p99Ms)}`],
  ["", 4, (r) => r.pass ? "PASS" : "FAIL"]
]

const row = (cells) => cells.map((cell, i) => i < 2 ? cell.padEnd(columns[i][1]) : cell.padStart(columns[i][1])).join("  ").trimEnd()

const mean = (values) => values.length === 0 ? null : values.reduce((sum, value) => sum + value, 0) / values.length

/** The figures the ratios divide, read from a result. */
const figures = {
  "CPU µs/frame": (r) => r.throughput?.cpuPerFrameUs,
  "RSS/client (slope)": (r) => r.memory?.rssPerClientSlope,
  "RSS/client (from base)": (r) => r.memory?.rssPerClientFromBase,
  "bytes/frame (wire)": (r) => r.throughput?.wireBytesPerFrame,
  "connect time": (r) => r.connection?.seconds,
  "conn CPU/client": (r) => r.connection?.serverCpuPerClientUs,
  "conn CPU/client (warm)": (r) => r.connection?.serverCpuPerClientWarmUs,
  "RSS after bursts": (r) => r.memory?.rssAfterBursts,
  "frames/s": (r) => r.throughput?.framesPerSecond,
  "lone p50": (r) => r.latency?.p50Ms,
  "lone p99": (r) => r.latency?.p99Ms
}

/** multiplexed / per-record per round (paired: the runs next to each other) and of the means over the passing rounds. */
const ratios = (results) => {
  const out = {}
  for (const [name, read] of Object.entries(figures)) {
    const perRound = []
    for (let round = 1; round <= rounds; round++) {
      const [a, b] = variants.map((variant) => results.find((r) => r.variant === variant && r.round === round))
      perRound.push(a?.pass && b?.pass && read(a) > 0 ? read(b) / read(a) : null)
    }
    const [a, b] = variants.map((variant) => mean(results.filter((r) => r.variant === variant && r.pass).map(read)))
    out[name] = { perRound, ofMeans: a > 0 && b !== null ? b / a : null }
  }
  return out
}

const table = (runtime, results) => {
  const lines = [`${runtime}`, row(columns.map(([title]) => title))]
  for (const result of results) {
    lines.push(row(columns.map(([, , cell]) => cell(result))))
    if (!result.pass) lines.push(`  ${result.error ?? result.check?.firstProblem ?? result.connection?.firstError ?? result.firstPublishError ?? "failed"}`)
  }
  lines.push("", `multiplexed / per-record     round 1   round 2   of the means`)
  for (const [name, { perRound, ofMeans }] of Object.entries(ratios(results))) {
    lines.push(`  ${name.padEnd(26)} ${perRound.map((value) => fixed(value, 3).padStart(7)).join("   ")}   ${fixed(ofMeans, 3).padStart(12)}`)
  }
  return lines.join("\n")
}

const main = async () => {
  const options = parseArgs(process.argv.slice(2))
  const size = options.quick ? sizes.quick : sizes.full
  const started = Date.now()
  const { commit, changedInSrc } = source()
  const loadAtStart = load()
  const limit = openFilesLimit()
  // The per-record variant holds clients × perClient sockets in the client and as many in the server.
  const needed = size.clients * size.perClient + 200
  if (limit !== undefined && limit < needed) throw new Error(`ulimit -n is ${limit}; ${needed} open files are needed (raise it: ulimit -n 20000)`)
  console.log(`src at ${commit ?? "(no git)"}${changedInSrc.length === 0 ? "" : ` with uncommitted changes: ${changedInSrc.join(", ")}`}`)
  console.log(`load average ${loadAtStart.toFixed(2)} on ${machine().cpus} CPUs; ulimit -n ${limit}`)
  console.log(`${size.clients} clients × ${size.perClient} records of ${size.records}; ${size.bursts} bursts of ${size.burstSize} per record; ${size.latencyEvents} lone events`)
  const results = {}
  let failed = 0
  for (const runtime of options.runtimes) {
    results[runtime] = []
    for (let round = 1; round <= rounds; round++) {
      for (const variant of variants) {
        process.stderr.write(`${runtime} / ${variant} / round ${round} ... `)
        const t0 = Date.now()
        const result = await runOne(runtime, variant, size, options.quick ? clientTimeoutMs.quick : clientTimeoutMs.full)
          .catch((error) => ({ variant, error: error.message, pass: false }))
        result.round = round
        result.loadAverage = load()
        results[runtime].push(result)
        if (!result.pass) failed++
        process.stderr.write(`${result.pass ? "PASS" : "FAIL"} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`)
      }
    }
    console.log(`\n${table(runtime, results[runtime])}`)
  }
  const seconds = (Date.now() - started) / 1000
  const loadAtEnd = load()
  console.log(`\nTotal ${seconds.toFixed(0)} s, load average ${loadAtEnd.toFixed(2)} at the end`)
  mkdirSync(new URL("../results/", import.meta.url), { recursive: true })
  writeFileSync(new URL("../results/multiplex.json", import.meta.url), `${JSON.stringify({
    date: new Date(started).toISOString(),
    machine: { ...machine(), loadAtStart, loadAtEnd, openFilesLimit: limit },
    source: { commit, changedInSrc },
    options,
    size,
    seconds,
    results,
    ratios: Object.fromEntries(Object.entries(results).map(([runtime, list]) => [runtime, ratios(list)]))
  }, null, 2)}\n`)
  console.log("Results written to bench/results/multiplex.json")
  if (failed > 0) {
    console.error(`${failed} run(s) FAILED`)
    process.exitCode = 1
  }
}

const cleanup = () => {
  killChildren()
  removeBundles()
}
process.on("exit", cleanup)
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    cleanup()
    process.exit(130)
  })
}

main().catch((error) => {
  console.error(error.message)
  process.exitCode = 1
})
