/** Baseline: hand-written Bun fan-out, default stream strategy (one chunk queued per write). */
import * as Fanout from "./fanout.js"
import * as Host from "./host.js"

const server = Fanout.serve(Fanout.make(), Host.port)
Host.ready(server.port!)
