/**
 * The Workers runtime under test: Miniflare 4 started from this Node process,
 * serving the bundled bench Worker on a loopback port, and the PID of the
 * `workerd` process it spawned (a child of this process), whose CPU time the
 * client reads from /proc.
 */
import { readdirSync, readFileSync } from "node:fs"
import { Miniflare } from "miniflare"

export const compatibilityDate = "2025-06-01"

/** PIDs of this process's children whose command name is `name`. */
const childrenNamed = (name) => {
  const found = []
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    let stat
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8")
    } catch {
      continue // it exited meanwhile
    }
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"))
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
    if (ppid === process.pid && comm === name) found.push(Number(entry))
  }
  return found
}

/**
 * Start Miniflare on the bundle in `dir`. Resolves with `{ mf, url, port, pid }`;
 * the caller must `mf.dispose()`, also on error (disposed here if start-up fails).
 * `sqlite` backs `ours` with the SQLite storage backend.
 */
export const start = async ({ dir, scriptPath }, { sqlite = false } = {}) => {
  const before = new Set(childrenNamed("workerd"))
  const mf = new Miniflare({
    modules: true,
    scriptPath,
    // Module names are paths relative to modulesRoot (default: the working
    // directory), and workerd refuses names that climb out of it with "..".
    modulesRoot: dir,
    compatibilityDate,
    host: "127.0.0.1",
    port: 0,
    durableObjects: {
      OURS: sqlite ? { className: "SaacmsRealtimeDO", useSQLite: true } : "SaacmsRealtimeDO",
      BASELINE: "BaselineDO",
      BASELINE_PIPE: "BaselinePipeDO"
    }
  })
  try {
    const url = await mf.ready
    const pids = childrenNamed("workerd").filter((pid) => !before.has(pid))
    if (pids.length !== 1) throw new Error(`expected one new workerd child process, found ${pids.length}`)
    return { mf, url, port: Number(url.port), pid: pids[0] }
  } catch (error) {
    await mf.dispose().catch(() => {})
    throw error
  }
}
