/** Baseline on Node: `node-naive` with cork/uncork once per turn of the event loop and a 1 MiB bound per subscriber. */
import * as NodeFanout from "./nodeFanout.js"

NodeFanout.serve(NodeFanout.make({ coalesce: true, maxQueuedBytes: 1024 * 1024 }))
