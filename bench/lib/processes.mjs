/**
 * Child processes of the orchestrator: bench servers (Bun, or Node for the
 * variants of the `node` runtime) and the load client (Node). Every child is
 * tracked by PID and ended by PID, with a timeout.
 */
import { spawn } from "node:child_process"
import net from "node:net"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { nodeBundle } from "./nodeBundle.mjs"

const root = fileURLToPath(new URL("../..", import.meta.url))
const bun = fileURLToPath(new URL("../../node_modules/.bin/bun", import.meta.url))
const children = new Set()

/** End every child still running (on the orchestrator's own exit). */
export const killChildren = () => {
  for (const child of children) child.kill("SIGKILL")
}

const track = (command, args, env = {}) => {
  const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
  children.add(child)
  child.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve(signal ?? code)))
  child.exited.then(() => children.delete(child))
  return child
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

/**
 * The reference's published build (`@saacms/plugin-realtime` 0.1.0), for the
 * `reference` variants: `SAACMS_REFERENCE`, else `../shared/seed/dist/index.js`
 * beside the repository.
 */
export const referencePath = process.env.SAACMS_REFERENCE ?? path.resolve(root, "../shared/seed/dist/index.js")

/**
 * Start `bench/servers/<variant>.ts` under Bun (`runtime` "bun"), or the bundle
 * of `bench/servers/node-<variant>.ts` under `node --expose-gc` ("node"), with
 * `env` added to the environment; resolves with the child once it prints
 * `READY <port>`. The child keeps its port in `port` and the tail of its stderr
 * in `stderrTail`.
 */
export const startServer = async (variant, port, env = {}, timeoutMs = 30_000, runtime = "bun") => {
  const command = runtime === "node"
    ? [process.execPath, ["--expose-gc", await nodeBundle(variant), String(port)]]
    : [bun, [`bench/servers/${variant}.ts`, String(port)]]
  const child = track(command[0], command[1], { SAACMS_REFERENCE: referencePath, ...env })
  child.port = port
  child.stderrTail = ""
  child.stderr.on("data", (chunk) => {
    child.stderrTail = (child.stderrTail + chunk).slice(-2_000)
  })
  return new Promise((resolve, reject) => {
    const fail = async (reason) => {
      clearTimeout(timer)
      await stop(child)
      reject(new Error(`${variant} server ${reason}${child.stderrTail === "" ? "" : `: ${child.stderrTail.trim()}`}`))
    }
    const timer = setTimeout(() => fail(`not ready within ${timeoutMs} ms`), timeoutMs)
    let stdout = ""
    child.stdout.on("data", (chunk) => {
      stdout += chunk
      if (/^READY \d+$/m.test(stdout)) {
        clearTimeout(timer)
        resolve(child)
      }
    })
    child.exited.then((code) => fail(`exited (${code})`))
  })
}

/** End a child: SIGTERM, then SIGKILL after `graceMs`. */
export const stop = async (child, graceMs = 3_000) => {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill("SIGTERM")
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
  await child.exited
  clearTimeout(timer)
}

/** Run the load client (`script`, relative to the repository) with `config`; resolves with the JSON it prints. */
export const runClient = (config, timeoutMs, script = "bench/client.mjs") => {
  const child = track(process.execPath, ["--max-old-space-size=4096", script, JSON.stringify(config)])
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", (chunk) => {
    stdout += chunk
  })
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-2_000)
  })
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
  return child.exited.then((code) => {
    clearTimeout(timer)
    if (code !== 0) throw new Error(`client ${code === "SIGKILL" ? `timed out after ${timeoutMs} ms` : `exited (${code})`}: ${stderr.trim()}`)
    return JSON.parse(stdout.trim().split("\n").pop())
  })
}
