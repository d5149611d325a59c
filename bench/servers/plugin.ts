/** Ours, as a saacms host mounts it: `realtime()`'s PluginDef on a Hono app served by Bun. */
import { realtime } from "../../src/Plugin.js"
import * as Host from "./host.js"
import * as PluginApp from "./pluginApp.js"

const app = PluginApp.make(realtime({ heartbeatMs: 3_600_000 }), () => Host.gc())
const server = Bun.serve({ port: Host.port, hostname: "127.0.0.1", idleTimeout: 0, fetch: app.fetch })
Host.ready(server.port!)
