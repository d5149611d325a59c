/**
 * Baseline: the naive fan-out with a 64 KiB byte-length strategy, so Bun writes
 * queued frames together, and a 1 MiB bound per subscriber.
 */
import * as Fanout from "./fanout.js"
import * as Host from "./host.js"

const fanout = Fanout.make({
  strategy: new ByteLengthQueuingStrategy({ highWaterMark: 64 * 1024 }),
  maxQueuedBytes: 1024 * 1024
})
const server = Fanout.serve(fanout, Host.port)
Host.ready(server.port!)
