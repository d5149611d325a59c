/**
 * Ours, as an Effect app mounts it: `RealtimeHttp.layer` plus a publish route on
 * `HttpLayerRouter`, over `Realtime.layerMemory` and `BunHttpServer`.
 */
import * as Realtime from "../../src/Realtime.js"
import * as EffectApp from "./effectApp.js"

EffectApp.launch(Realtime.layerMemory)
