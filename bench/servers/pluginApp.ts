/**
 * A saacms-style host of a realtime `PluginDef` (ours, `src/Plugin.ts`, or the
 * reference, `@saacms/plugin-realtime` 0.1.0): a `new Hono()` app with the
 * plugin's subscribe route (and its multiplexed one, `GET /api/saacms/v1/subscribe`,
 * when the plugin has it: ours does, the reference does not) and the bench's
 * publish, burst and GC routes. Bun serves `app.fetch` with `Bun.serve`, Node
 * through `nodeFetch.ts`.
 */
import { Hono } from "hono"

/** What the host uses of a realtime `PluginDef`; ours and the reference both have it. */
export interface RealtimePlugin {
  readonly routes: {
    readonly "GET /api/saacms/v1/:collection/:id/subscribe": (c: any) => Response | Promise<Response>
    /** One stream for many `?topic=` records: ours only. */
    readonly "GET /api/saacms/v1/subscribe"?: (c: any) => Response | Promise<Response>
  }
  readonly services: {
    readonly realtime: {
      publish(event: { type: "changed"; slug: string; id: string; record: unknown }): Promise<unknown>
    }
  }
}

export const make = (plugin: RealtimePlugin, gc: () => void) => {
  const subscribe = plugin.routes["GET /api/saacms/v1/:collection/:id/subscribe"]
  const subscribeMany = plugin.routes["GET /api/saacms/v1/subscribe"]
  const app = new Hono()
  if (subscribeMany !== undefined) app.get("/api/saacms/v1/subscribe", (c) => subscribeMany(c))
  app.get("/api/saacms/v1/:collection/:id/subscribe", (c) => subscribe(c))
  app.post("/bench/publish/:collection/:id", async (c) => {
    const record: unknown = await c.req.json()
    await plugin.services.realtime.publish({ type: "changed", slug: c.req.param("collection"), id: c.req.param("id"), record })
    return c.body(null, 204)
  })
  // A burst: the body is a JSON array of records, published one after another, each awaited, inside this request.
  app.post("/bench/burst/:collection/:id", async (c) => {
    const records: ReadonlyArray<unknown> = await c.req.json()
    const slug = c.req.param("collection")
    const id = c.req.param("id")
    for (const record of records) await plugin.services.realtime.publish({ type: "changed", slug, id, record })
    return c.body(null, 204)
  })
  app.post("/bench/gc", (c) => {
    gc()
    return c.body(null, 204)
  })
  return app
}

/**
 * The reference, `realtime` of `@saacms/plugin-realtime` 0.1.0's published
 * build, loaded from the path in `SAACMS_REFERENCE` (the orchestrator sets it:
 * `../shared/seed/dist/index.js` beside the repository unless given).
 */
export const loadReference = async (): Promise<RealtimePlugin> => {
  const path = process.env.SAACMS_REFERENCE
  if (path === undefined || path === "") throw new Error("SAACMS_REFERENCE (the reference's dist/index.js) is not set")
  const module: { realtime: (options: { heartbeatMs: number }) => RealtimePlugin } = await import(path)
  return module.realtime({ heartbeatMs: 3_600_000 })
}
