/**
 * The Worker the workerd tests run: the PluginDef with a Durable Object
 * binding, mounted on Hono as a saacms host would, plus test-only routes that
 * publish through the plugin and speak the binding contract to an object directly.
 */
import { Hono } from "hono"
import type * as Namespace from "../../src/DurableObject/Namespace.js"
import { realtime } from "../../src/index.js"
import type { PluginDef } from "../../src/index.js"

export { SaacmsRealtimeDO } from "../../src/index.js"

interface Env {
  readonly SAACMS_REALTIME: Namespace.DurableObjectNamespaceLike
}

// One plugin per isolate, made with the binding of the first request's env.
let plugin: PluginDef | undefined
const pluginFor = (env: Env) => plugin ??= realtime({ binding: env.SAACMS_REALTIME })

const statusOf: Record<string, number> = { InvalidEvent: 400, InvalidResourceKey: 400, FrameTooLarge: 413 }

const app = new Hono<{ Bindings: Env }>()
app.get("/api/saacms/v1/:collection/:id/subscribe", (c) =>
  pluginFor(c.env).routes["GET /api/saacms/v1/:collection/:id/subscribe"](c))
app.post("/publish", async (c) => {
  try {
    return c.json(await pluginFor(c.env).services.realtime.publish(await c.req.json()))
  } catch (error) {
    const tag = (error as { _tag?: string })._tag ?? "Error"
    return c.json({ error: tag }, (statusOf[tag] ?? 500) as 400)
  }
})
// The binding contract, straight to the object named `name`.
app.all("/object/:name", (c) => {
  const binding = c.env.SAACMS_REALTIME
  return binding.get(binding.idFromName(c.req.param("name"))).fetch(new Request("https://saacms-realtime-do/", c.req.raw))
})

export default app
