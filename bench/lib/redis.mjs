/**
 * The Redis the `redis` variant runs against (shared: never flushed): its URL,
 * a key prefix of this bench run's own, the redis-server's PID when it runs on
 * this machine, and the deletion of the keys under a prefix.
 */
import { readFileSync } from "node:fs"
import { Redis } from "ioredis"

export const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"

/** Unique per bench run; a scenario's servers use `<runPrefix><scenario>:`. Letters, digits, `-` and `:` only. */
export const runPrefix = `saacms-bench:${new Date().toISOString().replace(/\D/g, "").slice(0, 14)}-${process.pid}:`

const withClient = async (use) => {
  const client = new Redis(redisUrl, { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 1, retryStrategy: () => null })
  client.on("error", () => {})
  try {
    await client.connect()
    return await use(client)
  } finally {
    client.disconnect()
  }
}

/**
 * `{ pid }` of the redis-server at `redisUrl` when that PID is a redis-server
 * on this machine (its CPU can be read from /proc), else `{ pid: undefined }`.
 * Rejects when Redis does not answer.
 */
export const redisServer = () =>
  withClient(async (client) => {
    const pid = Number(/^process_id:(\d+)/m.exec(await client.info("server"))?.[1])
    try {
      return { pid: readFileSync(`/proc/${pid}/comm`, "utf8").startsWith("redis-server") ? pid : undefined }
    } catch {
      return { pid: undefined }
    }
  })

/**
 * Delete every key under `prefix` (the store's keys are `{<prefix>…}:…`):
 * SCAN + UNLINK. Resolves with how many were deleted.
 */
export const deleteKeys = (prefix) => {
  if (!/^[A-Za-z0-9:-]+$/.test(prefix)) throw new Error(`refusing to delete keys under ${JSON.stringify(prefix)}`)
  return withClient(async (client) => {
    let deleted = 0
    let cursor = "0"
    do {
      const [next, keys] = await client.scan(cursor, "MATCH", `{${prefix}*`, "COUNT", 1_000)
      if (keys.length > 0) deleted += await client.unlink(...keys)
      cursor = next
    } while (cursor !== "0")
    return deleted
  })
}
