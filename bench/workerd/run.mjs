/**
 * `npm run bench:workerd [-- --rounds=3] [--only=ours,ours-socket,baseline,baseline-pipe] [--quick] [--sqlite]`
 *
 * Fan-out of one Durable Object to 1 000 SSE subscribers in workerd, started
 * through Miniflare from this process: `ours` (`SaacmsRealtimeDO` from
 * src/index.ts) against `baseline` (`BaselineDO` in `baseline.ts`, the floor)
 * and `baseline-pipe` (`BaselinePipeDO`, the floor behind the native pipe that
 * lets workerd release a client that left). One warm-up round per variant, then
 * rounds alternate A B C A B C…, each with a fresh object and fresh subscribers
 * from a separate client process. Prints every round, the medians and the
 * ratios ours/baseline and ours/baseline-pipe, and writes
 * bench/results/workerd-latest.json.
 */
import { spawn } from "node:child_process"
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { load, machine, source } from "../lib/environment.mjs"
import { rssBytes } from "../lib/proc.mjs"
import { sleep } from "../lib/stats.mjs"
import { bundle } from "./bundle.mjs"
import { medians, mediansTable, ratios, ratiosTable, roundsTable, verdict } from "./report.mjs"
import { compatibilityDate, start } from "./runtime.mjs"

const usage = "usage: node bench/workerd/run.mjs [--rounds=<n ≥ 1>] [--only=ours,ours-socket,baseline,baseline-pipe] [--quick] [--sqlite]"
const root = fileURLToPath(new URL("../..", import.meta.url))
const variants = ["ours", "ours-socket", "baseline", "baseline-pipe"]
/** Ours' variants: the object holds the streams, or the Worker does and reads the object over sockets. */
const ourVariants = ["ours", "ours-socket"]
/** The variants ours is divided by, each in a ratio block of its own. */
const baselines = ["baseline", "baseline-pipe"]

const publishing = { size: 100, depth: 8, gapMs: 10, stallMs: 10_000 }
const sizes = {
  full: { ...publishing, subscribers: 1_000, events: 200, latencyEvents: 50 },
  quick: { ...publishing, subscribers: 200, events: 50, latencyEvents: 20 },
  warmup: { ...publishing, subscribers: 100, events: 100, latencyEvents: 10 }
}

/** Wall-clock bound for one client run. */
const clientTimeoutMs = 60_000
/** Rounds that would start after this much time are skipped, to keep the run under about 4 minutes. */
const budgetMs = 210_000
/** Quiet time after a round, so that what the closed sockets leave to workerd settles before the next one. */
const settleMs = 500

const parseArgs = (argv) => {
  const options = { rounds: 3, only: variants, quick: false, sqlite: false }
  for (const arg of argv) {
    const [flag, value] = arg.split("=", 2)
    if (flag === "--quick") options.quick = true
    else if (flag === "--sqlite") options.sqlite = true
    else if (flag === "--rounds" && Number.isInteger(Number(value)) && Number(value) >= 1) options.rounds = Number(value)
    else if (flag === "--only") {
      options.only = (value ?? "").split(",").filter((name) => name !== "")
      if (options.only.length === 0 || options.only.some((name) => !variants.includes(name))) {
        throw new Error(`--only: expected some of ${variants.join(", ")}`)
      }
    } else throw new Error(`unknown argument ${arg}\n${usage}`)
  }
  return options
}

let client // the running client process, if any

/** Run the client with `config` in its own process; resolves with the JSON it prints. */
const runClient = (config) => new Promise((resolve, reject) => {
  const child = spawn(process.execPath, [fileURLToPath(new URL("client.mjs", import.meta.url)), JSON.stringify(config)], {
    cwd: root, stdio: ["ignore", "pipe", "pipe"]
  })
  client = child
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", (chunk) => {
    stdout += chunk
  })
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-2_000)
  })
  const timer = setTimeout(() => child.kill("SIGKILL"), clientTimeoutMs)
  child.once("exit", (code, signal) => {
    clearTimeout(timer)
    client = undefined
    if (code !== 0) {
      return reject(new Error(`client ${signal === "SIGKILL" ? `timed out after ${clientTimeoutMs} ms` : `exited (${code ?? signal})`}: ${stderr.trim()}`))
    }
    try {
      resolve(JSON.parse(stdout.trim().split("\n").pop()))
    } catch (error) {
      reject(error)
    }
  })
})

/** One round: `variant` on a fresh object `posts:<id>`; the result carries this process's and workerd's extras. */
const round = async (runtime, variant, id, size) => {
  const own = process.cpuUsage()
  const result = await runClient({ ...size, port: runtime.port, pid: runtime.pid, variant, collection: "posts", id })
    .catch((error) => ({ error: error.message, pass: false }))
  const runner = process.cpuUsage(own)
  result.runnerCpuSeconds = (runner.user + runner.system) / 1e6 // Miniflare's Node side: should be ~0, it is not in the data path
  result.workerdRssBytes = rssBytes(runtime.pid)
  await sleep(settleMs)
  return result
}

const versionOf = (name) => JSON.parse(readFileSync(new URL(`../../node_modules/${name}/package.json`, import.meta.url), "utf8")).version

const main = async (runtime, built, options) => {
  const started = Date.now()
  const { commit, changedInSrc } = source()
  const loadAtStart = load()
  const size = options.quick ? sizes.quick : sizes.full
  const active = options.only.filter((variant) => !ourVariants.includes(variant) || built.ours)
  console.log(`src at ${commit ?? "(no git)"}${changedInSrc.length === 0 ? "" : ` with uncommitted changes: ${changedInSrc.join(", ")}`}`)
  console.log(`load average ${loadAtStart.toFixed(2)} on ${machine().cpus} CPUs; workerd ${versionOf("workerd")} (pid ${runtime.pid}) via miniflare ${versionOf("miniflare")} at ${runtime.url.href}`)
  if (options.only.includes("ours") && !built.ours) console.log("ours: skipped, src/index.ts does not export SaacmsRealtimeDO yet")
  if (active.length === 0) throw new Error("nothing to run")

  const warmup = {}
  for (const variant of active) {
    process.stderr.write(`warm-up / ${variant} ... `)
    warmup[variant] = await round(runtime, variant, "warmup", sizes.warmup)
    process.stderr.write(`${verdict(warmup[variant])}\n`)
  }

  const rounds = []
  for (let r = 1; r <= options.rounds; r++) {
    // Each round starts with another variant: old objects keep their streams, so
    // later runs in a round are slower, and no variant should always run first.
    const order = active.map((_, i) => active[(i + r - 1) % active.length])
    for (const variant of order) {
      const t0 = Date.now()
      if (t0 - started > budgetMs) {
        rounds.push({ variant, round: r, result: { error: "skipped: the bench ran out of time", pass: false } })
        continue
      }
      process.stderr.write(`round ${r} / ${variant} ... `)
      const result = await round(runtime, variant, `r${r}`, size)
      rounds.push({ variant, round: r, result })
      process.stderr.write(`${verdict(result)} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`)
    }
  }

  const byVariant = medians(rounds, active)
  const pairs = [
    ...baselines.map((name) => ["ours", name]),
    ...["ours", ...baselines].map((name) => ["ours-socket", name])
  ].filter(([ours, name]) => byVariant[ours] !== undefined && byVariant[name] !== undefined)
  const ratioBlocks = Object.fromEntries(pairs.map(([ours, name]) => [`${ours} / ${name}`, ratios(byVariant[ours], byVariant[name], name, ours)]))
  console.log(`\nRounds (${size.subscribers.toLocaleString("en-US")} subscribers on one object; burst of ${size.events} events, then ${size.latencyEvents} lone events)`)
  console.log(roundsTable(rounds))
  console.log(`\nMedians over the passing rounds\n${mediansTable(byVariant)}`)
  for (const [pair, rows] of Object.entries(ratioBlocks)) console.log(`\n${pair} (medians)\n${ratiosTable(rows)}`)
  const seconds = (Date.now() - started) / 1000
  const loadAtEnd = load()
  console.log(`\nTotal ${seconds.toFixed(0)} s, load average ${loadAtEnd.toFixed(2)} at the end`)

  const report = {
    date: new Date(started).toISOString(),
    machine: { ...machine(), loadAtStart, loadAtEnd },
    source: { commit, changedInSrc },
    runtime: {
      miniflare: versionOf("miniflare"), workerd: versionOf("workerd"), compatibilityDate,
      oursStorage: options.sqlite ? "sqlite" : "kv", bundleBytes: built.bytes
    },
    options: { ...options, oursAvailable: built.ours },
    seconds,
    size,
    warmup,
    rounds,
    medians: byVariant,
    ratios: ratioBlocks
  }
  mkdirSync(new URL("../results/", import.meta.url), { recursive: true })
  writeFileSync(new URL("../results/workerd-latest.json", import.meta.url), `${JSON.stringify(report, null, 2)}\n`)
  return rounds.every((r) => r.result.pass === true)
}

const options = parseArgs(process.argv.slice(2))
const built = await bundle({ wantOurs: options.only.includes("ours") })
let runtime
const removeBundle = () => rmSync(built.dir, { recursive: true, force: true })
const cleanUp = async () => {
  client?.kill("SIGKILL")
  await runtime?.mf.dispose().catch(() => {})
  removeBundle()
}
// The synchronous part also runs on an abrupt exit. On SIGINT/SIGTERM,
// Miniflare's own handler (registered after this one) stops workerd and calls
// process.exit(130) at once, so the asynchronous dispose below rarely gets to finish.
process.on("exit", () => {
  client?.kill("SIGKILL")
  removeBundle()
})
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    cleanUp().finally(() => process.exit(130))
  })
}
try {
  runtime = await start(built, { sqlite: options.sqlite })
  const passed = await main(runtime, built, options)
  if (!passed) process.exitCode = 1
} catch (error) {
  console.error(error.message)
  process.exitCode = 1
} finally {
  await cleanUp()
}
