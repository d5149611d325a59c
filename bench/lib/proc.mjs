/** Readings of another process from /proc (Linux only). */
import { execFileSync } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"

/** Clock ticks per second, the unit of utime and stime in /proc/<pid>/stat. */
export const clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim())

/** CPU seconds (user + system, all threads) the process has used so far. */
export const cpuSeconds = (pid) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  // Fields after the command name, which may itself hold spaces: state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) / clockTicks
}

const statusKiB = (pid, field) => {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"))
  if (match === null) throw new Error(`no ${field} in /proc/${pid}/status`)
  return Number(match[1]) * 1024
}

/** Resident set size in bytes. */
export const rssBytes = (pid) => statusKiB(pid, "VmRSS")

/** Peak resident set size in bytes since the process started or since `resetPeakRss`. */
export const peakRssBytes = (pid) => statusKiB(pid, "VmHWM")

/** Reset the process's peak RSS to its current RSS. */
export const resetPeakRss = (pid) => writeFileSync(`/proc/${pid}/clear_refs`, "5")

/**
 * CPU seconds of the bench servers (`pids`, summed, with each one's share) and
 * of redis-server (`redisPid`, when known): `since(read())` is the CPU they
 * used in between.
 */
export const cpuClock = (pids, redisPid) => {
  const read = () => ({ servers: pids.map(cpuSeconds), redis: redisPid === undefined ? null : cpuSeconds(redisPid) })
  const since = (before) => {
    const now = read()
    const perServer = now.servers.map((seconds, i) => seconds - before.servers[i])
    return {
      servers: perServer.reduce((sum, seconds) => sum + seconds, 0),
      perServer,
      redis: now.redis === null ? null : now.redis - before.redis
    }
  }
  return { read, since }
}
