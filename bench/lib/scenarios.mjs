/**
 * The scenarios, with their full and `--quick` sizes. Each runs once per
 * server variant, on a fresh server process.
 */

export const variants = ["effect", "plugin", "naive", "coalescing"]

const publishing = { size: 100, depth: 16, gapMs: 10, stallMs: 10_000, burstSeconds: 20, latencySeconds: 30 }

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
  }
]

/** Wall-clock bound for one client run. */
export const clientTimeoutMs = 240_000
