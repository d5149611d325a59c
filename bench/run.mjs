/**
 * `npm run bench [-- --quick] [--only=effect,naive] [--scenario=1k-1key,idle]`
 *
 * For every scenario and server variant: start a fresh server process, run the
 * load client in another process against it over loopback, stop the server.
 * Prints one table per scenario and the goals, and writes
 * bench/results/latest.json.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { load, machine, source } from "./lib/environment.mjs"
import { freePort, killChildren, runClient, startServer, stop } from "./lib/processes.mjs"
import { evaluateGoals, goalsTable, scenarioTable } from "./lib/report.mjs"
import { clientTimeoutMs, scenarios, variants } from "./lib/scenarios.mjs"

const usage = "usage: node bench/run.mjs [--quick] [--only=<variants>] [--scenario=<names or numbers>]"

/** Runs that would start after this much time are skipped, so a hanging variant cannot stall the whole bench. */
const budgetMs = 14 * 60_000

const parseArgs = (argv) => {
  const options = { quick: false, only: variants, scenarios: scenarios.map((s) => s.name) }
  for (const arg of argv) {
    const [flag, value] = arg.split("=", 2)
    const list = (known) => {
      // Scenarios may also be named by their 1-based number.
      const names = (value ?? "").split(",").filter((name) => name !== "").map((name) => known[Number(name) - 1] ?? name)
      const unknown = names.filter((name) => !known.includes(name))
      if (names.length === 0 || unknown.length > 0) throw new Error(`${flag}: expected some of ${known.join(", ")}`)
      return names
    }
    if (flag === "--quick") options.quick = true
    else if (flag === "--only") options.only = list(variants)
    else if (flag === "--scenario") options.scenarios = list(scenarios.map((s) => s.name))
    else throw new Error(`unknown argument ${arg}\n${usage}`)
  }
  return options
}

const runOne = async (scenario, variant, size, timeoutMs) => {
  const port = await freePort()
  const server = await startServer(variant, port)
  try {
    const result = await runClient({ kind: scenario.kind, ...size, port, pid: server.pid }, timeoutMs)
    if (server.exitCode === null && server.signalCode === null) return result
    return { ...result, pass: false, error: `server exited (${server.exitCode ?? server.signalCode}): ${server.stderrTail.trim()}` }
  } finally {
    await stop(server)
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
    const size = options.quick ? scenario.quick : scenario.full
    sizes[scenario.name] = size
    results[scenario.name] = {}
    for (const variant of options.only) {
      process.stderr.write(`${scenario.name} / ${variant} ... `)
      const t0 = Date.now()
      const left = started + budgetMs - t0
      const result = left <= 0
        ? { error: "skipped: the bench ran out of time", pass: false }
        : await runOne(scenario, variant, size, Math.min(clientTimeoutMs, left)).catch((error) => ({ error: error.message, pass: false }))
      results[scenario.name][variant] = result
      process.stderr.write(`${result.pass ? "PASS" : "FAIL"} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`)
    }
    console.log(`\n${scenarioTable(scenario, results[scenario.name], options.quick)}`)
  }

  const goals = evaluateGoals(results)
  if (goals.length > 0) console.log(`\nGoals (ours / baseline)\n${goalsTable(goals)}`)
  const seconds = (Date.now() - started) / 1000
  const loadAtEnd = load()
  console.log(`\nTotal ${seconds.toFixed(0)} s, load average ${loadAtEnd.toFixed(2)} at the end`)

  const report = {
    date: new Date(started).toISOString(),
    machine: { ...machine(), loadAtStart, loadAtEnd },
    source: { commit, changedInSrc },
    options: { quick: options.quick, only: options.only, scenarios: options.scenarios },
    seconds,
    sizes,
    results,
    goals
  }
  mkdirSync(new URL("results/", import.meta.url), { recursive: true })
  writeFileSync(new URL("results/latest.json", import.meta.url), `${JSON.stringify(report, null, 2)}\n`)
}

process.on("exit", killChildren)
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    killChildren()
    process.exit(130)
  })
}

main().catch((error) => {
  console.error(error.message)
  process.exitCode = 1
})
