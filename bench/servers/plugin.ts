/** Ours, as a saacms host mounts it: `realtime()`'s PluginDef on a Hono app served by Bun. */
import { Hono } from "hono"
import { realtime } from "../../src/Plugin.js"
import * as Host from "./host.js"

const plugin = realtime({ heartbeatMs: 3_600_000 })
const route = "GET /api/saacms/v1/:collection/:id/subscribe" as const

const app = new Hono()
app.get("/api/saacms/v1/:collection/:id/subscribe", (c) => plugin.routes[route](c))
app.post("/bench/publish/:collection/:id", async (c) => {
  const record: unknown = await c.req.json()
  await plugin.services.realtime.publish({ type: "changed", slug: c.req.param("collection"), id: c.req.param("id"), record })
  return c.body(null, 204)
})
app.post("/bench/gc", Host.gc)

const server = Bun.serve({ port: Host.port, hostname: "127.0.0.1", idleTimeout: 0, fetch: app.fetch })
Host.ready(server.port!)
