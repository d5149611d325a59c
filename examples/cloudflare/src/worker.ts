/**
 * A saacms host on Cloudflare Workers with realtime records: each PUT or
 * DELETE of a record is published to that record's Durable Object, and clients
 * follow a record over SSE at `GET /api/saacms/v1/:collection/:id/subscribe`.
 *
 * The example stores no records; a real host saves the record first (D1, KV,
 * R2, …) and publishes once the write has succeeded.
 */
import { realtime, RealtimeError } from "@saacms/realtime"
import type { PluginDef, RealtimeEvent } from "@saacms/realtime"
import { Hono } from "hono"
import type { Context } from "hono"
import type { ContentfulStatusCode } from "hono/utils/http-status"

// workerd finds Durable Object classes among the entry module's exports;
// wrangler.toml binds this one as SAACMS_REALTIME.
export { SaacmsRealtimeDO } from "@saacms/realtime"

interface Env {
  readonly SAACMS_REALTIME: DurableObjectNamespace
}

type App = { Bindings: Env }

// One plugin per isolate. Bindings arrive with requests, so the first request
// makes it and every later one reuses it.
let plugin: PluginDef | undefined
const realtimeFor = (env: Env): PluginDef => plugin ??= realtime({ binding: env.SAACMS_REALTIME })

// A strong content ETag: the first 16 bytes of the body's SHA-256, in hex.
// It is also the event's SSE id, which clients send back as Last-Event-ID.
const contentEtag = async (body: string): Promise<string> => {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(body)))
  return `"${Array.from(digest.subarray(0, 16), (byte) => byte.toString(16).padStart(2, "0")).join("")}"`
}

// publish rejects with the library's typed errors; `RealtimeError.toHttp` is
// how the library itself answers them over HTTP.
const isRealtimeError = (error: unknown): error is RealtimeError.RealtimeError =>
  RealtimeError.decode(error) !== undefined

const publish = async (c: Context<App>, event: RealtimeEvent, headers: Record<string, string> = {}) => {
  try {
    const { key, id, seq } = await realtimeFor(c.env).services.realtime.publish(event)
    return c.json({ key, id, seq }, 200, headers)
  } catch (error) {
    if (!isRealtimeError(error)) {
      console.error("publish failed", error)
      return c.json({ error: "internal", message: "internal error" }, 500)
    }
    const { error: code, message, retryAfter, status } = RealtimeError.toHttp(error)
    return c.json({ error: code, message }, status as ContentfulStatusCode, retryAfter === undefined ? {} : { "Retry-After": String(retryAfter) })
  }
}

const app = new Hono<App>()

// The plugin's route, mounted as a saacms host mounts plugin routes.
app.get("/api/saacms/v1/:collection/:id/subscribe", (c) =>
  realtimeFor(c.env).routes["GET /api/saacms/v1/:collection/:id/subscribe"](c))

// Save a record (here: only publish it); the body is the record as JSON.
app.put("/api/saacms/v1/:collection/:id", async (c) => {
  const body = await c.req.text()
  let record: unknown
  try {
    record = JSON.parse(body)
  } catch {
    return c.json({ error: "invalid_json", message: "the body must be the record as JSON" }, 400)
  }
  const etag = await contentEtag(body)
  const event: RealtimeEvent = { type: "changed", slug: c.req.param("collection"), id: c.req.param("id"), record, etag }
  return publish(c, event, { ETag: etag })
})

app.delete("/api/saacms/v1/:collection/:id", (c) =>
  publish(c, { type: "deleted", slug: c.req.param("collection"), id: c.req.param("id") }))

export default app
