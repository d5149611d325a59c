/** The reference (`@saacms/plugin-realtime` 0.1.0) on Node: its PluginDef on a Hono app behind `nodeFetch.ts`, as `node-plugin.ts` mounts ours. */
import * as NodeFetch from "./nodeFetch.js"
import * as NodeHost from "./nodeHost.js"
import * as PluginApp from "./pluginApp.js"

NodeFetch.serve(PluginApp.make(await PluginApp.loadReference(), NodeHost.gc).fetch)
