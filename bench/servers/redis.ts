/**
 * Ours, as an Effect app mounts it over Redis: the `effect` variant with
 * `Redis.layer` in place of `Realtime.layerMemory`. Several of these processes
 * with the same `BENCH_REDIS_PREFIX` form one cluster.
 *
 * Environment: `REDIS_URL` (default `redis://127.0.0.1:6379`) and
 * `BENCH_REDIS_PREFIX`, the key prefix (required: a bench server never writes
 * under the library's default prefix; the orchestrator picks one per run and
 * deletes its keys afterwards).
 */
import * as Redis from "../../src/Redis.js"
import * as EffectApp from "./effectApp.js"

const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"
const keyPrefix = process.env.BENCH_REDIS_PREFIX
if (keyPrefix === undefined || keyPrefix === "") throw new Error("BENCH_REDIS_PREFIX is required")

EffectApp.launch(Redis.layer({ url, keyPrefix }))
