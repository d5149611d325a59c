/**
 * The load client, run by `run.mjs` in its own process:
 * `node bench/client.mjs '<scenario config as JSON>'`. Prints one JSON line
 * (the scenario's result) on stdout; progress goes to stderr.
 */
import { cms } from "./lib/cms.mjs"
import { fanout } from "./lib/fanout.mjs"
import { idle } from "./lib/idle.mjs"
import { slow } from "./lib/slow.mjs"

const config = JSON.parse(process.argv[2])
const scenarios = { cms, fanout, idle, slow }

const result = await scenarios[config.kind](config)
process.stdout.write(`${JSON.stringify(result)}\n`)
process.exit(0)
