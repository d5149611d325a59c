/**
 * The attack client, run by `run.mjs` in its own process:
 * `node bench/probe/client.mjs '{"vector":"1a","port":…,"pid":…,"scale":…}'`.
 * Prints one JSON line: the vector's row, or `{ error }`.
 */
import { vectors } from "./vectors.mjs"

const config = JSON.parse(process.argv[2])
const vector = vectors.find((v) => v.id === config.vector)
const row = await vector.run(config).catch((error) => ({ error: error.stack ?? String(error) }))
process.stdout.write(`${JSON.stringify(row)}\n`)
process.exit(0)
