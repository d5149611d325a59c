/** Ours, as a saacms host mounts it on Node: `realtime()`'s PluginDef on a Hono app behind `nodeFetch.ts`. */
import { realtime } from "../../src/Plugin.js"
import * as NodeFetch from "./nodeFetch.js"
import * as NodeHost from "./nodeHost.js"
import * as PluginApp from "./pluginApp.js"

NodeFetch.serve(PluginApp.make(realtime({ heartbeatMs: 3_600_000 }), NodeHost.gc).fetch)
