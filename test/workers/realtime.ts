/**
 * The Worker the workerd tests run: the PluginDef with a Durable Object
 * binding, mounted on Hono as a saacms host would, plus test-only routes that
 * publish through the plugin and speak the binding contract to an object directly.
 */
import { Hono } from "hono"
import type * as Namespace from "../../src/DurableObject/Namespace.js"
import { Access, realtime, SaacmsRealtimeDO as Base } from "../../src/index.js"
import type { PluginDef } from "../../src/index.js"

/**
 * Access in this Worker: `x-test-deny` answers 403, `x-test-expires-in` (ms)
 * bounds the grant, `x-test-user` is the subject; the objects hide records
 * marked `private` from everyone but their `owner`.
 */
export const SaacmsRealtimeDO = Base.configure({
  // Refusals are logged at info: the tests' output stays results.
  logLevel: "Warning",
  recheck: (subject, event) =>
    event.type === "deleted" ||
    (event.record as { private?: boolean }).private !== true ||
    (event.record as { owner?: string }).owner === (subject as { user?: string } | undefined)?.user
})

const authorize = (request: Access.AccessRequest): Access.DecisionInput => {
  if (request.headers.has("x-test-deny")) return Access.deny(403, "denied by test")
  const expiresIn = request.headers.get("x-test-expires-in")
  return Access.allow({
    subject: { user: request.headers.get("x-test-user") ?? "anonymous" },
    expiresAt: expiresIn === null ? undefined : Date.now() + Number(expiresIn)
  })
}

interface Env {
  readonly SAACMS_REALTIME: Namespace.DurableObjectNamespaceLike
  /** `socket` for the hibernatable mode (the Worker holds the streams). */
  readonly TEST_DO_MODE?: string
  /** The Worker's heartbeat in socket mode (ms). */
  readonly TEST_WORKER_HEARTBEAT_MS?: string
  /** What a client may leave unread before the Worker pauses its socket (bytes). */
  readonly TEST_WORKER_MAX_QUEUED_BYTES?: string
}

// One plugin per isolate, made with the binding of the first request's env.
let plugin: PluginDef | undefined
const pluginFor = (env: Env) =>
  plugin ??= realtime({
    binding: env.SAACMS_REALTIME,
    logLevel: "Warning",
    authorize,
    durableObjectMode: env.TEST_DO_MODE === "socket" ? "socket" : "stream",
    ...(env.TEST_WORKER_HEARTBEAT_MS === undefined ? {} : { heartbeatMs: Number(env.TEST_WORKER_HEARTBEAT_MS) }),
    ...(env.TEST_WORKER_MAX_QUEUED_BYTES === undefined ? {} : { maxQueuedBytes: Number(env.TEST_WORKER_MAX_QUEUED_BYTES) })
  })

const statusOf: Record<string, number> = { InvalidEvent: 400, InvalidResourceKey: 400, FrameTooLarge: 413 }

const app = new Hono<{ Bindings: Env }>()
app.get("/api/saacms/v1/:collection/:id/subscribe", (c) =>
  pluginFor(c.env).routes["GET /api/saacms/v1/:collection/:id/subscribe"](c))
app.get("/api/saacms/v1/subscribe", (c) => pluginFor(c.env).routes["GET /api/saacms/v1/subscribe"](c))
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
