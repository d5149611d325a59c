/**
 * `npm run probe [-- --write] [--runtime=bun,node] [--vector=1a,5b]`
 * (env `PROBE_SCALE`, default 0.15: sizes relative to the full ones in bench/probe/README.md).
 *
 * For every runtime and every memory-attack vector: start a fresh demo host
 * (`bun src/bin/bun.ts`, or `node dist/bin/node.js` after one `npm run build`)
 * on a free port with the vector's REALTIME_* settings, run the attack client
 * in another process against it over loopback, stop the server. Prints one
 * markdown table per runtime; with `--write`, also writes
 * bench/probe/results-<runtime>.md.
 */
import { existsSync, writeFileSync } from "node:fs"
import os from "node:os"
import { machine, source } from "../lib/environment.mjs"
import { table } from "./lib/report.mjs"
import { freePort, killChildren, running, runToEnd, startServer, stop, track } from "./lib/server.mjs"
import { vectors } from "./vectors.mjs"

const usage = "usage: node bench/probe/run.mjs [--write] [--runtime=bun,node] [--vector=<ids>]"
const runtimes = ["bun", "node"]
/** Bound on one client run. */
const clientTimeoutMs = 180_000
/** Vectors that would start after this much time are skipped. */
const budgetMs = 10 * 60_000

const parseArgs = (argv) => {
  const options = { write: false, runtimes, vectors: vectors.map((v) => v.id) }
  for (const arg of argv) {
    const [flag, value = ""] = arg.split("=", 2)
    const list = (known) => {
      const names = value.split(",").filter((name) => name !== "")
      if (names.length === 0 || names.some((name) => !known.includes(name))) throw new Error(`${flag}: expected some of ${known.join(", ")}`)
      return names
    }
    if (flag === "--write") options.write = true
    else if (flag === "--runtime") options.runtimes = list(runtimes)
    else if (flag === "--vector") options.vectors = list(vectors.map((v) => v.id))
    else throw new Error(`unknown argument ${arg}\n${usage}`)
  }
  return options
}

const runClient = async (config) => {
  const child = track(process.execPath, ["bench/probe/client.mjs", JSON.stringify(config)])
  const timer = setTimeout(() => child.kill("SIGKILL"), clientTimeoutMs)
  const code = await child.exited
  clearTimeout(timer)
  const last = child.stdoutText.trim().split("\n").pop()
  if (code !== 0) return { error: `client ${code === "SIGKILL" ? `killed after ${clientTimeoutMs / 1000} s` : `exited (${code})`}: ${child.tail.trim().slice(-300)}` }
  return JSON.parse(last)
}

const runOne = async (runtime, vector, scale) => {
  const port = await freePort()
  const server = await startServer(runtime, port, vector.env(scale))
  try {
    const row = await runClient({ vector: vector.id, port, pid: server.pid, scale })
    if (!running(server)) {
      const code = await server.exited
      row.notes = [...(row.notes ?? []), `SERVER DIED (${code}): ${server.tail.trim().split("\n").slice(-3).join(" / ").slice(0, 300)}`]
    }
    return row
  } finally {
    await stop(server)
  }
}

const main = async () => {
  const options = parseArgs(process.argv.slice(2))
  const scale = Number(process.env.PROBE_SCALE ?? 0.15)
  if (!(scale > 0 && scale <= 1)) throw new Error("PROBE_SCALE must be in (0, 1]")
  const started = Date.now()
  const { commit, changedInSrc } = source()
  const header = [
    `\`${process.env.PROBE_SCALE === undefined ? "" : `PROBE_SCALE=${process.env.PROBE_SCALE} `}node bench/probe/run.mjs${process.argv.slice(2).map((arg) => ` ${arg}`).join("")}\``,
    `src at ${commit ?? "(no git)"}${changedInSrc.length === 0 ? "" : ` with uncommitted changes: ${changedInSrc.join(", ")}`}`,
    `PROBE_SCALE=${scale}, ${machine().cpus} CPUs, load average ${os.loadavg()[0].toFixed(2)} at the start`
  ]
  console.log(header.join("\n"))

  for (const runtime of options.runtimes) {
    const rows = []
    const notes = []
    let skip
    if (runtime === "node") {
      process.stderr.write("npm run build ... ")
      const build = await runToEnd("npm", ["run", "build", "--silent"], 180_000)
      const errors = build.tail.trim().split("\n").filter((line) => line.includes("error")).slice(0, 3).join(" / ")
      // tsc still emits on type errors (src may be mid-edit): run what it emitted, and say so.
      if (build.code !== 0 && existsSync(new URL("../../dist/bin/node.js", import.meta.url))) {
        notes.push(`\`npm run build\` reported errors (${build.code}); ran the JavaScript tsc emitted anyway: ${errors}`)
      } else if (build.code !== 0) skip = `npm run build failed (${build.code}): ${errors || build.tail.trim().slice(-300)}`
      process.stderr.write(build.code === 0 ? "ok\n" : skip === undefined ? "type errors, emitted\n" : "FAILED\n")
    }
    const version = runtime === "bun" ? `Bun ${machine().bun}` : `Node ${process.version}`
    for (const vector of vectors.filter((v) => options.vectors.includes(v.id))) {
      process.stderr.write(`${runtime} ${vector.id} ${vector.title} ... `)
      const t0 = Date.now()
      const row = skip !== undefined
        ? { error: skip }
        : Date.now() - started > budgetMs
        ? { error: "skipped: the probe ran out of time" }
        : await runOne(runtime, vector, scale).catch((error) => ({ error: error.message }))
      rows.push({ vector, env: vector.env(scale), ...row })
      process.stderr.write(`${row.error === undefined ? "done" : "ERROR"} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`)
    }
    const body = `${notes.map((note) => `${note}\n\n`).join("")}${table(rows)}\n`
    console.log(`\n## ${version}\n\n${body}`)
    if (options.write) {
      const file = new URL(`results-${runtime}.md`, import.meta.url)
      writeFileSync(file, `# Memory-attack probe: ${version}\n\n${[...header, new Date(started).toISOString()].join("  \n")}\n\n${body}`)
    }
  }
  console.log(`Total ${((Date.now() - started) / 1000).toFixed(0)} s, load average ${os.loadavg()[0].toFixed(2)} at the end`)
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
