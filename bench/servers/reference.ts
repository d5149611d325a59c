/**
 * The reference we replace, as a saacms host mounts it: the PluginDef of
 * `@saacms/plugin-realtime` 0.1.0 (published build, `SAACMS_REFERENCE`) on a
 * Hono app served by Bun, exactly as `plugin.ts` mounts ours.
 */
import * as Host from "./host.js"
import * as PluginApp from "./pluginApp.js"

const app = PluginApp.make(await PluginApp.loadReference(), () => Host.gc())
const server = Bun.serve({ port: Host.port, hostname: "127.0.0.1", idleTimeout: 0, fetch: app.fetch })
Host.ready(server.port!)
