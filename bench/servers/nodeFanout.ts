/**
 * The hand-written baselines on Node (`node:http`): one
 * `Map<key, Set<ServerResponse>>`, each frame encoded once per publish and
 * written to every subscriber of its key with `res.write`.
 *
 * - `naive`: one `res.write` per frame, no bound.
 * - `coalescing`: the first frame a subscriber gets in a turn of the event
 *   loop corks its response; one `setImmediate` uncorks every corked response,
 *   so the frames of one burst leave in one write per subscriber. A subscriber
 *   with more than 1 MiB not yet taken by the socket is destroyed and removed.
 */
import type * as http from "node:http"
import * as NodeHost from "./nodeHost.js"

const keepalive = Buffer.from(":keepalive\n\n")
const headers = {
  "Content-Type": "text/event-stream",
  "Cache-Control": "no-cache, no-transform",
  Connection: "keep-alive",
  "X-Accel-Buffering": "no"
}

export interface Options {
  readonly coalesce?: boolean
  /** Destroy a subscriber with more than this many bytes waiting (no bound when absent). */
  readonly maxQueuedBytes?: number
}

export const make = (options: Options = {}) => {
  const subscribers = new Map<string, Set<http.ServerResponse>>()
  const corked = new Set<http.ServerResponse>()
  const maxQueued = options.maxQueuedBytes ?? Infinity
  let counter = 0

  const remove = (key: string, response: http.ServerResponse) => {
    const set = subscribers.get(key)
    if (set === undefined) return
    set.delete(response)
    if (set.size === 0) subscribers.delete(key)
  }

  const uncorkAll = () => {
    for (const response of corked) response.uncork()
    corked.clear()
  }

  const subscribe = (key: string, response: http.ServerResponse): void => {
    response.writeHead(200, headers)
    response.write(keepalive)
    const set = subscribers.get(key)
    if (set === undefined) subscribers.set(key, new Set([response]))
    else set.add(response)
    response.on("close", () => {
      corked.delete(response)
      remove(key, response)
    })
  }

  const publish = (key: string, record: unknown): void => {
    const frame = Buffer.from(`event: changed\nid: ${Date.now()}-${++counter}\ndata: ${JSON.stringify(record)}\n\n`)
    const set = subscribers.get(key)
    if (set === undefined) return
    for (const response of set) {
      if (options.coalesce === true && !corked.has(response)) {
        if (corked.size === 0) setImmediate(uncorkAll)
        corked.add(response)
        response.cork()
      }
      response.write(frame)
      if (response.writableLength > maxQueued) {
        corked.delete(response)
        remove(key, response)
        response.destroy()
      }
    }
  }

  return { subscribe, publish }
}

const subscribePath = /^\/api\/saacms\/v1\/([^/]+)\/([^/]+)\/subscribe$/
const publishPath = /^\/bench\/(publish|burst)\/([^/]+)\/([^/]+)$/

/** Serve a fan-out through the bench's routes on `node:http`. */
export const serve = (fanout: ReturnType<typeof make>): void => {
  const server = NodeHost.createServer(async (request, response) => {
    const url = request.url ?? "/"
    const subscribe = request.method === "GET" ? subscribePath.exec(url) : null
    if (subscribe !== null) return fanout.subscribe(`${subscribe[1]}:${subscribe[2]}`, response)
    const publish = request.method === "POST" ? publishPath.exec(url) : null
    if (publish !== null) {
      const key = `${publish[2]}:${publish[3]}`
      const parsed: unknown = JSON.parse((await NodeHost.body(request)).toString())
      if (publish[1] === "publish") fanout.publish(key, parsed)
      else for (const record of parsed as ReadonlyArray<unknown>) fanout.publish(key, record)
      response.writeHead(204).end()
      return
    }
    if (request.method === "POST" && url === "/bench/gc") {
      await NodeHost.body(request)
      NodeHost.gc()
      response.writeHead(204).end()
      return
    }
    response.writeHead(404).end("not found")
  })
  NodeHost.listen(server)
}
