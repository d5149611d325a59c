/**
 * The hand-written baselines: one `Map<key, Set<controller>>`, each frame
 * encoded once per publish and enqueued to every subscriber of its key.
 */
import * as Host from "./host.js"

const encoder = new TextEncoder()
const keepalive = encoder.encode(":keepalive\n\n")
const headers = {
  "Content-Type": "text/event-stream",
  "Cache-Control": "no-cache, no-transform",
  Connection: "keep-alive",
  "X-Accel-Buffering": "no"
}

type Controller = ReadableStreamDefaultController<Uint8Array>

export interface Options {
  /** The queuing strategy of every subscriber's stream (the default strategy when absent). */
  readonly strategy?: QueuingStrategy<Uint8Array>
  /** End a subscriber whose stream holds more than this many bytes (no bound when absent). */
  readonly maxQueuedBytes?: number
}

/** The fan-out: `subscribe(key)` answers a subscribe request, `publish(key, record)` fans one event out. */
export const make = (options: Options = {}) => {
  const subscribers = new Map<string, Set<Controller>>()
  // With a byte-length strategy, desiredSize = highWaterMark - queued bytes.
  const minDesiredSize = options.maxQueuedBytes === undefined
    ? -Infinity
    : (options.strategy?.highWaterMark ?? 1) - options.maxQueuedBytes
  let counter = 0

  const remove = (key: string, controller: Controller) => {
    const set = subscribers.get(key)
    if (set === undefined) return
    set.delete(controller)
    if (set.size === 0) subscribers.delete(key)
  }

  const subscribe = (key: string): Response => {
    let controller: Controller | undefined
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c
        const set = subscribers.get(key)
        if (set === undefined) subscribers.set(key, new Set([c]))
        else set.add(c)
        c.enqueue(keepalive)
      },
      cancel() {
        if (controller !== undefined) remove(key, controller)
      }
    }, options.strategy)
    return new Response(stream, { headers })
  }

  const publish = (key: string, record: unknown): void => {
    const frame = encoder.encode(`event: changed\nid: ${Date.now()}-${++counter}\ndata: ${JSON.stringify(record)}\n\n`)
    const set = subscribers.get(key)
    if (set === undefined) return
    for (const controller of set) {
      try {
        controller.enqueue(frame)
        if (controller.desiredSize! < minDesiredSize) {
          controller.error(new Error("subscriber too slow"))
          remove(key, controller)
        }
      } catch {
        remove(key, controller)
      }
    }
  }

  return { subscribe, publish }
}

/** A Bun server exposing a fan-out through the bench's routes. */
export const serve = (fanout: ReturnType<typeof make>, port: number) =>
  Bun.serve({
    port,
    hostname: "127.0.0.1",
    idleTimeout: 0,
    routes: {
      "/api/saacms/v1/:collection/:id/subscribe": {
        GET: (request) => fanout.subscribe(`${request.params.collection}:${request.params.id}`)
      },
      "/bench/publish/:collection/:id": {
        POST: async (request) => {
          fanout.publish(`${request.params.collection}:${request.params.id}`, await request.json())
          return new Response(null, { status: 204 })
        }
      },
      // A burst: the body is a JSON array of records, published one after another inside this request.
      "/bench/burst/:collection/:id": {
        POST: async (request) => {
          const key = `${request.params.collection}:${request.params.id}`
          for (const record of (await request.json()) as ReadonlyArray<unknown>) fanout.publish(key, record)
          return new Response(null, { status: 204 })
        }
      },
      "/bench/gc": { POST: Host.gc }
    },
    fetch: () => new Response("not found", { status: 404 })
  })
