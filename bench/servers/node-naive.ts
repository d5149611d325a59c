/** Baseline on Node: hand-written `node:http` fan-out, one `res.write` per frame. */
import * as NodeFanout from "./nodeFanout.js"

NodeFanout.serve(NodeFanout.make())
