/**
 * The scenarios, with their full and `--quick` sizes. Each runs once per
 * server variant (`variants`, by default the first four), on fresh server
 * processes: one, or `instances[variant]`. A scenario with a `group` is also
 * selected by the group's name.
 */

export const variants = ["effect", "plugin", "naive", "coalescing", "redis", "reference"]

export const defaultVariants = ["effect", "plugin", "naive", "coalescing"]

const publishing = { size: 100, depth: 16, gapMs: 10, stallMs: 10_000, burstSeconds: 20, latencySeconds: 30 }

/**
 * Publishes go to each server in turn, 16 at a time, and each block is
 * answered before the next (see `rotation.mjs`); over 16 connections per
 * server (at most one per key) without pipelining, since Bun.serve closes a
 * connection that pipelines behind an async handler (see `publisher.mjs`).
 * A key's publishes are therefore one at a time.
 */
const clusterPublishing = { ...publishing, block: 16, lanes: 16, pipelining: false }

/** Two Redis-backed instances (subscribers split, publishes on both) against one in-memory `effect` server. */
const redisCluster = { group: "redis-2x", kind: "fanout", table: "cluster", variants: ["effect", "redis"], instances: { redis: 2 } }

const slowPublishing = { size: 1_024, depth: 16, stallMs: 10_000, burstSeconds: 60 }

export const scenarios = [
  {
    name: "1k-1key",
    title: "1 000 subscribers on one key",
    kind: "fanout",
    full: { ...publishing, subscribers: 1_000, keys: 1, events: 1_000, latencyEvents: 200 },
    quick: { ...publishing, subscribers: 200, keys: 1, events: 200, latencyEvents: 30 }
  },
  {
    name: "10k-1key",
    title: "10 000 subscribers on one key",
    kind: "fanout",
    full: { ...publishing, subscribers: 10_000, keys: 1, events: 100, latencyEvents: 100 },
    quick: { ...publishing, subscribers: 1_000, keys: 1, events: 50, latencyEvents: 20 }
  },
  {
    name: "10k-1000keys",
    title: "10 000 subscribers over 1 000 keys (10 per key)",
    kind: "fanout",
    full: { ...publishing, subscribers: 10_000, keys: 1_000, events: 20_000, latencyEvents: 200 },
    quick: { ...publishing, subscribers: 1_000, keys: 100, events: 2_000, latencyEvents: 30 }
  },
  {
    name: "idle",
    title: "idle subscribers over 1 000 keys: RSS per subscriber",
    kind: "idle",
    full: { subscribers: 10_000, keys: 1_000 },
    quick: { subscribers: 1_000, keys: 100 }
  },
  {
    name: "slow",
    title: "one paused subscriber beside fast ones on one key, 1 KiB events",
    kind: "slow",
    full: { ...slowPublishing, subscribers: 100, events: 20_000 },
    quick: { ...slowPublishing, subscribers: 20, events: 2_000 }
  },
  {
    ...redisCluster,
    name: "redis-2x-1key",
    title: "2 Redis-backed instances against 1 in-memory, 2 000 subscribers on one key",
    full: { ...clusterPublishing, subscribers: 2_000, keys: 1, events: 400, latencyEvents: 200 },
    quick: { ...clusterPublishing, subscribers: 400, keys: 1, events: 200, latencyEvents: 30 }
  },
  {
    ...redisCluster,
    name: "redis-2x-200keys",
    title: "2 Redis-backed instances against 1 in-memory, 2 000 subscribers over 200 keys (10 per key)",
    full: { ...clusterPublishing, subscribers: 2_000, keys: 200, events: 6_000, latencyEvents: 200 },
    quick: { ...clusterPublishing, subscribers: 400, keys: 40, events: 1_000, latencyEvents: 30 }
  }
]

/** The runtimes a server variant can run on (`--runtime`); scenarios without `runtimes` run on Bun only. */
export const runtimes = ["bun", "node"]

/**
 * The CMS shapes (issue 10), on Bun and on Node: ours (`effect`, `plugin`), the
 * hand-written baselines and the reference we replace, every one on each
 * runtime (`bench/servers/<variant>.ts` under Bun, `node-<variant>.ts` bundled
 * for Node). Results are keyed `<runtime>/<variant>`.
 */
const cms = { group: "cms", kind: "cms", runtimes, variants: ["effect", "plugin", "naive", "coalescing", "reference"] }

const bursting = { size: 100, depth: 16, burstSize: 10, gapMs: 10, stallMs: 10_000, burstSeconds: 60, latencySeconds: 30 }

scenarios.push(
  {
    ...cms,
    name: "cms-1000keys",
    title: "10 000 subscribers over 1 000 records (10 each), bursts of 10 events per record",
    full: { ...bursting, subscribers: 10_000, keys: 1_000, bursts: 10, latencyEvents: 200 },
    quick: { ...bursting, subscribers: 1_000, keys: 100, bursts: 4, latencyEvents: 20 }
  },
  {
    ...cms,
    name: "cms-1key",
    title: "10 000 subscribers on one record, bursts of 10 events",
    full: { ...bursting, subscribers: 10_000, keys: 1, bursts: 20, latencyEvents: 50 },
    quick: { ...bursting, subscribers: 1_000, keys: 1, bursts: 10, latencyEvents: 10 }
  },
  {
    ...cms,
    name: "cms-slow",
    title: "the slow case on Bun and Node: one paused subscriber beside fast ones on one key, 1 KiB events",
    kind: "slow",
    full: { ...slowPublishing, subscribers: 100, events: 20_000 },
    quick: { ...slowPublishing, subscribers: 20, events: 2_000 }
  }
)

/** Wall-clock bound for one client run. */
export const clientTimeoutMs = 240_000
