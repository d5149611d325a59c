/**
 * `npm run bench [-- --quick] [--only=effect,naive] [--scenario=1k-1key,idle] [--runtime=bun,node]`
 *
 * For every scenario and server variant: start fresh server processes (one, or
 * several for a cluster), run the load client in another process against them
 * over loopback, stop the servers (and delete the Redis keys they wrote).
 * Prints one table per scenario and the goals, and writes
 * bench/results/latest.json.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { load, machine, source } from "./lib/environment.mjs"
import { cmsTable, evaluateCmsGoals } from "./lib/cmsReport.mjs"
import { removeBundles } from "./lib/nodeBundle.mjs"
import { freePort, killChildren, runClient, startServer, stop } from "./lib/processes.mjs"
import { evaluateGoals, goalsTable, scenarioTable } from "./lib/report.mjs"
import { clientTimeoutMs, defaultVariants, runtimes, scenarios, variants } from "./lib/scenarios.mjs"

const usage = "usage: node bench/run.mjs [--quick] [--only=<variants>] [--scenario=<names, groups or numbers>] [--runtime=bun,node]"

/**
 * Runs that would start after this much time are skipped, so a hanging variant
 * cannot stall the whole bench (the full run with the CMS scenarios on both
 * runtimes takes about half of it).
 */
const budgetMs = 45 * 60_000

const parseArgs = (argv) => {
  const options = { quick: false, only: variants, scenarios: scenarios.map((s) => s.name), runtimes }
  for (const arg of argv) {
    const [flag, value] = arg.split("=", 2)
    const list = (known, expand = (name) => [name], groups = []) => {
      // Scenarios may also be named by their 1-based number, or by their group.
      const names = (value ?? "").split(",").filter((name) => name !== "").map((name) => known[Number(name) - 1] ?? name).flatMap(expand)
      const unknown = names.filter((name) => !known.includes(name))
      if (names.length === 0 || unknown.length > 0) throw new Error(`${flag}: expected some of ${[...known, ...groups].join(", ")}`)
      return names
    }
    const group = (name) => {
      const members = scenarios.filter((s) => s.group === name).map((s) => s.name)
      return members.length === 0 ? [name] : members
    }
    if (flag === "--quick") options.quick = true
    else if (flag === "--only") options.only = list(variants)
    else if (flag === "--runtime") options.runtimes = list(runtimes)
    else if (flag === "--scenario") options.scenarios = list(scenarios.map((s) => s.name), group, [...new Set(scenarios.flatMap((s) => s.group ?? []))])
    else throw new Error(`unknown argument ${arg}\n${usage}`)
  }
  return options
}

/** Loaded on the first scenario that uses Redis, so that the others never need it. */
let redis

/**
 * The Redis part of a scenario's run: `{ pid, env, cleanup }` for the `redis`
 * variant (its prefix, deleted by `cleanup`), `{ pid }` alone for the others,
 * whose row then shows what other clients cost the shared Redis.
 */
const redisFor = async (scenario, variant) => {
  if (!(scenario.variants ?? []).includes("redis")) return undefined
  redis ??= await import("./lib/redis.mjs")
  const server = await redis.redisServer().catch((error) => {
    if (variant === "redis") throw new Error(`no Redis at ${redis.redisUrl} (set REDIS_URL): ${error.message}`)
    return { pid: undefined }
  })
  if (variant !== "redis") return { pid: server.pid }
  const prefix = `${redis.runPrefix}${scenario.name}:`
  return {
    pid: server.pid,
    env: { REDIS_URL: redis.redisUrl, BENCH_REDIS_PREFIX: prefix },
    cleanup: () => redis.deleteKeys(prefix)
  }
}

const runOne = async (scenario, variant, size, timeoutMs, runtime) => {
  const shared = await redisFor(scenario, variant)
  const servers = []
  try {
    for (let i = 0; i < (scenario.instances?.[variant] ?? 1); i++) {
      servers.push(await startServer(variant, await freePort(), shared?.env, undefined, runtime))
    }
    const result = await runClient({
      kind: scenario.kind, ...size, servers: servers.map(({ port, pid }) => ({ port, pid })), redisPid: shared?.pid
    }, timeoutMs)
    const exited = servers.filter((server) => server.exitCode !== null || server.signalCode !== null)
    if (exited.length === 0) return result
    const how = exited.map((server) => `${server.exitCode ?? server.signalCode}: ${server.stderrTail.trim()}`).join("; ")
    return { ...result, pass: false, error: `server exited (${how})` }
  } finally {
    await Promise.all(servers.map((server) => stop(server)))
    if (shared?.cleanup !== undefined) {
      const note = await shared.cleanup().then((deleted) => `${deleted} Redis keys deleted`, (error) => `Redis keys not deleted: ${error.message}`)
      process.stderr.write(`(${note}) `)
    }
  }
}

const main = async () => {
  const options = parseArgs(process.argv.slice(2))
  const started = Date.now()
  const { commit, changedInSrc } = source()
  const loadAtStart = load()
  console.log(`src at ${commit ?? "(no git)"}${changedInSrc.length === 0 ? "" : ` with uncommitted changes: ${changedInSrc.join(", ")}`}`)
  console.log(`load average ${loadAtStart.toFixed(2)} on ${machine().cpus} CPUs`)
  const results = {}
  const sizes = {}
  for (const scenario of scenarios.filter((s) => options.scenarios.includes(s.name))) {
    const scenarioVariants = (scenario.variants ?? defaultVariants).filter((variant) => options.only.includes(variant))
    // Scenarios with `runtimes` run each variant on each selected runtime (results keyed `<runtime>/<variant>`);
    // the others are Bun only.
    const scenarioRuntimes = (scenario.runtimes ?? ["bun"]).filter((runtime) => options.runtimes.includes(runtime))
    if (scenarioVariants.length === 0 || scenarioRuntimes.length === 0) continue
    const size = options.quick ? scenario.quick : scenario.full
    sizes[scenario.name] = size
    results[scenario.name] = {}
    for (const runtime of scenarioRuntimes) {
      for (const variant of scenarioVariants) {
        const key = scenario.runtimes === undefined ? variant : `${runtime}/${variant}`
        process.stderr.write(`${scenario.name} / ${key} ... `)
        const t0 = Date.now()
        const left = started + budgetMs - t0
        const result = left <= 0
          ? { error: "skipped: the bench ran out of time", pass: false }
          : await runOne(scenario, variant, size, Math.min(clientTimeoutMs, left), runtime).catch((error) => ({ error: error.message, pass: false }))
        results[scenario.name][key] = result
        process.stderr.write(`${result.pass ? "PASS" : "FAIL"} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`)
      }
    }
    const print = scenario.kind === "cms" ? cmsTable : scenarioTable
    console.log(`\n${print(scenario, results[scenario.name], options.quick)}`)
  }

  // Every key of this run, in case a cleanup after a run missed some (none expected).
  const leftover = redis === undefined ? 0 : await redis.deleteKeys(redis.runPrefix).catch(() => 0)
  if (leftover > 0) console.log(`\n${leftover} Redis keys under ${redis.runPrefix} were left and are now deleted`)

  const goals = [...evaluateGoals(results), ...evaluateCmsGoals(results)]
  if (goals.length > 0) console.log(`\nGoals (ours / baseline)\n${goalsTable(goals)}`)
  const seconds = (Date.now() - started) / 1000
  const loadAtEnd = load()
  console.log(`\nTotal ${seconds.toFixed(0)} s, load average ${loadAtEnd.toFixed(2)} at the end`)

  const report = {
    date: new Date(started).toISOString(),
    machine: { ...machine(), loadAtStart, loadAtEnd },
    source: { commit, changedInSrc },
    redis: redis === undefined ? undefined : { url: redis.redisUrl, prefix: redis.runPrefix },
    options: { quick: options.quick, only: options.only, scenarios: options.scenarios, runtimes: options.runtimes },
    seconds,
    sizes,
    results,
    goals
  }
  mkdirSync(new URL("results/", import.meta.url), { recursive: true })
  writeFileSync(new URL("results/latest.json", import.meta.url), `${JSON.stringify(report, null, 2)}\n`)
}

process.on("exit", () => {
  killChildren()
  removeBundles()
})
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    killChildren()
    // The servers are gone: delete what they wrote to Redis, for at most 2 s.
    if (redis !== undefined) await Promise.race([redis.deleteKeys(redis.runPrefix).catch(() => {}), new Promise((resolve) => setTimeout(resolve, 2_000))])
    process.exit(130)
  })
}

main().catch((error) => {
  console.error(error.message)
  process.exitCode = 1
})
