/**
 * Child processes of the probe (the demo host on Bun or Node, the Node build,
 * the attack client) and readings of the server from /proc. Every child is
 * tracked by PID and killed by PID; nothing else is touched.
 */
import { spawn } from "node:child_process"
import { readdirSync, readFileSync, readlinkSync } from "node:fs"
import net from "node:net"
import { fileURLToPath } from "node:url"
import { cpuSeconds, peakRssBytes, resetPeakRss, rssBytes } from "../../lib/proc.mjs"

export const root = fileURLToPath(new URL("../../..", import.meta.url))
const bun = fileURLToPath(new URL("../../../node_modules/.bin/bun", import.meta.url))
const children = new Set()

/** SIGKILL a child, or its whole process group when it was started as one (`npm` and what it runs). */
const kill = (child) => {
  try {
    if (child.group) process.kill(-child.pid, "SIGKILL")
    else child.kill("SIGKILL")
  } catch {
    // Already gone.
  }
}

/** SIGKILL every child still running (on the probe's own exit). */
export const killChildren = () => {
  for (const child of children) kill(child)
}

/**
 * Spawn a tracked child; `child.exited` resolves with its exit code or signal;
 * `child.tail` keeps its last output. With `group`, the child leads a process
 * group of its own, which is killed with it.
 */
export const track = (command, args, { env = process.env, group = false } = {}) => {
  const child = spawn(command, args, { cwd: root, env, detached: group, stdio: ["ignore", "pipe", "pipe"] })
  child.group = group
  children.add(child)
  child.tail = ""
  child.stdoutText = ""
  const keep = (chunk) => child.tail = (child.tail + chunk).slice(-2_000)
  child.stdout.on("data", (chunk) => {
    child.stdoutText = (child.stdoutText + chunk).slice(-100_000)
    keep(chunk)
  })
  child.stderr.on("data", keep)
  child.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve(signal ?? code)))
  child.exited.then(() => children.delete(child))
  return child
}

export const running = (child) => child.exitCode === null && child.signalCode === null

/** End a child: SIGTERM, then SIGKILL after `graceMs`. */
export const stop = async (child, graceMs = 3_000) => {
  if (!running(child)) return
  child.kill("SIGTERM")
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
  await child.exited
  clearTimeout(timer)
}

/** Run a command (in a process group of its own) to completion within `timeoutMs`; resolves with its exit code (or signal) and output. */
export const runToEnd = async (command, args, timeoutMs) => {
  const child = track(command, args, { group: true })
  const timer = setTimeout(() => kill(child), timeoutMs)
  const code = await child.exited
  clearTimeout(timer)
  return { code, tail: child.tail, stdout: child.stdoutText }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export const freePort = () =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })

const commands = {
  bun: () => [bun, ["src/bin/bun.ts"]],
  node: () => [process.execPath, ["dist/bin/node.js"]]
}

/** `true` once something on `port` answers an HTTP request (any status). */
const answers = (port) =>
  new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    const done = (ok) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => done(false), 1_000)
    socket.on("connect", () => socket.write("GET /api/saacms/v1/probe/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
    socket.on("data", (buf) => done(buf.latin1Slice(0, 5) === "HTTP/"))
    socket.on("error", () => done(false))
  })

/**
 * Start the demo host of `runtime` on `port` with `env` (REALTIME_* and PORT
 * of this process are not passed on); resolves with the child once it answers HTTP.
 */
export const startServer = async (runtime, port, env, timeoutMs = 30_000) => {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("REALTIME_") && name !== "PORT"))
  const [command, args] = commands[runtime]()
  const child = track(command, args, { env: { ...clean, ...env, PORT: String(port) } })
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (!running(child)) throw new Error(`${runtime} server exited (${await child.exited}): ${child.tail.trim()}`)
    if (await answers(port)) return child
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  await stop(child)
  throw new Error(`${runtime} server did not answer within ${timeoutMs} ms: ${child.tail.trim()}`)
}

/** Readings that return `null` once the process is gone. */
const orNull = (read) => (pid) => {
  try {
    return read(pid)
  } catch {
    return null
  }
}
export const rss = orNull(rssBytes)
export const peakRss = orNull(peakRssBytes)
export const cpu = orNull(cpuSeconds)
export const resetPeak = orNull(resetPeakRss)

/** Samples RSS every `everyMs` until `stop()`, which returns the peak (sampled, or VmHWM since `start`). */
export class PeakSampler {
  constructor(pid, everyMs = 100) {
    this.pid = pid
    resetPeak(pid)
    this.peak = rss(pid) ?? 0
    this.timer = setInterval(() => this.peak = Math.max(this.peak, rss(pid) ?? 0), everyMs)
  }

  stop() {
    clearInterval(this.timer)
    return Math.max(this.peak, peakRss(this.pid) ?? 0, rss(this.pid) ?? 0)
  }
}

/**
 * The remote ports of the TCP connections the process holds open (its socket
 * fds, looked up in /proc/net/tcp and tcp6). A connection the server has
 * closed is gone from here even when the kernel still flushes it.
 */
export const peerPorts = (pid) => {
  const inodes = new Set()
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const link = readlinkSync(`/proc/${pid}/fd/${fd}`)
        if (link.startsWith("socket:[")) inodes.add(link.slice(8, -1))
      } catch {
        // The fd closed while we listed them.
      }
    }
  } catch {
    return new Set()
  }
  const ports = new Set()
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text
    try {
      text = readFileSync(table, "utf8")
    } catch {
      continue
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/)
      if (fields.length < 10 || !inodes.has(fields[9])) continue
      // rem_address is HEX_IP:HEX_PORT; state 0A is LISTEN.
      if (fields[3] !== "0A") ports.add(Number.parseInt(fields[2].split(":")[1], 16))
    }
  }
  return ports
}

/** How many of `localPorts` (the probe's ends) the server still holds open. */
export const heldByServer = (pid, localPorts) => {
  const ports = peerPorts(pid)
  let held = 0
  for (const port of localPorts) if (ports.has(port)) held++
  return held
}
