/** What a result depends on besides the code under test: the machine and the state of src/. */
import { execFileSync } from "node:child_process"
import os from "node:os"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))
const bun = fileURLToPath(new URL("../../node_modules/.bin/bun", import.meta.url))

const run = (command, args) => {
  try {
    return execFileSync(command, args, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
  } catch {
    return null
  }
}

export const machine = () => ({
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model,
  memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  node: process.version,
  bun: run(bun, ["--version"])
})

/** The 1-minute load average: other work on the machine skews frames/s and latency. */
export const load = () => os.loadavg()[0]

/** The commit under test and the files of src/ that differ from it. */
export const source = () => ({
  commit: run("git", ["rev-parse", "--short", "HEAD"]),
  changedInSrc: (run("git", ["status", "--porcelain", "--", "src"]) ?? "").split("\n").map((line) => line.trim()).filter((line) => line !== "")
})
