/**
 * The report of the CMS scenarios (issue 10): per runtime, one table of what
 * each variant measured, one of ratios ours / each baseline, and the goals.
 * Results are keyed `<runtime>/<variant>`.
 */
import { table } from "./report.mjs"

const MiB = 1024 * 1024
const fixed = (digits) => (value) => value === null || value === undefined || Number.isNaN(value) ? "-" : value.toFixed(digits)
const thousands = (value) => value === null || value === undefined ? "-" : Math.round(value).toLocaleString("en-US")
const pair = (a, b, digits = 2) => a === null || a === undefined ? "-" : `${fixed(digits)(a)} / ${fixed(digits)(b)}`

export const ours = ["effect", "plugin"]
export const baselines = ["naive", "coalescing", "reference"]

const problems = (r) => {
  if (r.error !== undefined) return [r.error]
  const out = []
  if (r.failed > 0) out.push(`${r.failed} not connected (${r.firstError})`)
  if (r.publishErrors > 0) out.push(`${r.publishErrors} publish errors (${r.firstPublishError})`)
  const check = r.check
  if (check !== undefined) {
    if (check.complete < check.subscribers) out.push(`${check.subscribers - check.complete} incomplete`)
    for (const field of ["missing", "duplicates", "reorders", "foreign", "malformed", "ended"]) {
      if (check[field] > 0) out.push(`${check[field]} ${field}`)
    }
  }
  if (r.throughput?.reached === false) out.push("burst phase stalled")
  if (r.latency?.timeouts > 0) out.push(`${r.latency.timeouts} lone events timed out`)
  return out
}

const verdict = (r) => {
  const found = problems(r)
  return r.pass === true ? "PASS" : `FAIL${found.length === 0 ? "" : ` (${found.join(", ")})`}`
}

/** The figures a CMS run is compared on, each with whether higher is better. */
export const figures = {
  cpu: { label: "CPU µs/frame", value: (r) => r.throughput?.cpuPerFrameUs },
  rssActive: { label: "RSS/sub after bursts", value: (r) => r.memory?.activeBytesPerSubscriber },
  rssIdle: { label: "idle RSS/sub", value: (r) => r.memory?.idleBytesPerSubscriber },
  connect: { label: "conn/s", value: (r) => r.connection?.perSecond, higherIsBetter: true },
  connectCpu: { label: "CPU µs/conn", value: (r) => r.connection?.serverCpuPerConnectUs },
  baseRss: { label: "base RSS", value: (r) => r.memory?.rssBase },
  p50: { label: "lone p50", value: (r) => r.latency?.p50Ms },
  p99: { label: "lone p99", value: (r) => r.latency?.p99Ms }
}

const runtimesOf = (byKey) => [...new Set(Object.keys(byKey).map((key) => key.split("/")[0]))]

/** The table of one CMS scenario: per runtime, the measurements, then ratios ours / each baseline. */
export const cmsTable = (scenario, byKey, quick) => {
  const out = [`${scenario.name}: ${scenario.title}${quick ? " (--quick: smaller)" : ""}`]
  for (const runtime of runtimesOf(byKey)) {
    const entries = Object.entries(byKey).filter(([key]) => key.startsWith(`${runtime}/`))
    out.push(table(
      [
        runtime, "subs", "frames", "frames/s", "frames/read", "CPU µs/frame", "base RSS MiB", "RSS/sub KiB after bursts",
        "idle RSS/sub KiB", "conn/s", "CPU µs/conn", "1st byte p50/p99 ms", "lone p50/p99 ms", "check"
      ],
      entries.map(([key, r]) => [
        key.slice(runtime.length + 1), thousands(r.connected), thousands(r.throughput?.delivered), thousands(r.throughput?.framesPerSecond),
        fixed(1)(r.throughput?.framesPerRead), fixed(2)(r.throughput?.cpuPerFrameUs),
        fixed(1)(r.memory === undefined ? undefined : r.memory.rssBase / MiB),
        fixed(2)(r.memory === undefined ? undefined : r.memory.activeBytesPerSubscriber / 1024),
        fixed(2)(r.memory === undefined ? undefined : r.memory.idleBytesPerSubscriber / 1024),
        thousands(r.connection?.perSecond), fixed(0)(r.connection?.serverCpuPerConnectUs), pair(r.connection?.firstByteP50Ms, r.connection?.firstByteP99Ms, 1),
        pair(r.latency?.p50Ms, r.latency?.p99Ms), verdict(r)
      ]),
      "lrrrrrrrrrrrrl"
    ))
    const columns = ours.flatMap((variant) => baselines.map((baseline) => [variant, baseline]))
      .filter(([variant, baseline]) => byKey[`${runtime}/${variant}`] !== undefined && byKey[`${runtime}/${baseline}`] !== undefined)
    if (columns.length > 0) {
      out.push(table(
        ["ratio", ...columns.map(([variant, baseline]) => `${variant}/${baseline}`)],
        Object.values(figures).map((figure) => [
          figure.label,
          ...columns.map(([variant, baseline]) => {
            const a = byKey[`${runtime}/${variant}`]
            const b = byKey[`${runtime}/${baseline}`]
            if (a.pass !== true || b.pass !== true) return "n/a"
            const x = figure.value(a)
            const y = figure.value(b)
            return x == null || y == null || y === 0 ? "-" : `${(x / y).toFixed(2)}×`
          })
        ]),
        `l${"r".repeat(columns.length)}`
      ))
    }
    out.push("")
  }
  out.push(
    "frames/read: frames delivered per socket read in the client (what the server wrote together). RSS/sub after bursts:",
    "(RSS after the bursts − base RSS) / subscribers, both after a full GC; idle RSS/sub: slope between N/2 and N connected,",
    "before any publish. conn/s: subscribers / time to connect them all, 200 at a time; CPU µs/conn: server CPU meanwhile",
    "per subscriber. Ratios only between passing rows."
  )
  return out.join("\n")
}

/**
 * The issue-10 goals: `limit` on ours / `baseline` of the same runtime and run
 * (`atLeast`: the ratio must be at least the limit, for rates).
 */
const goals = [
  { goal: "CPU/frame (bursts)", scenario: "cms-1000keys", baseline: "naive", limit: 1.3, figure: figures.cpu },
  { goal: "RSS/subscriber (after bursts)", scenario: "cms-1000keys", baseline: "naive", limit: 1.5, figure: figures.rssActive },
  { goal: "CPU/frame (bursts)", scenario: "cms-1key", baseline: "coalescing", limit: 1.2, figure: figures.cpu },
  { goal: "idle RSS/subscriber", scenario: "cms-1key", baseline: "naive", limit: 1.5, figure: figures.rssIdle },
  { goal: "lone-event p99", scenario: "cms-1000keys", baseline: "naive", limit: 1.0, figure: figures.p99 },
  { goal: "lone-event p99", scenario: "cms-1key", baseline: "naive", limit: 1.0, figure: figures.p99 },
  { goal: "connect rate", scenario: "cms-1000keys", baseline: "naive", limit: 0.8, atLeast: true, figure: figures.connect },
  { goal: "connect rate", scenario: "cms-1key", baseline: "naive", limit: 0.8, atLeast: true, figure: figures.connect },
  { goal: "slow-case growth", scenario: "cms-slow", baseline: "naive", limit: 0.7, figure: { label: "growth", value: (r) => r.growth } },
  // Never worse than the reference we replace, in every shape it supports.
  { goal: "CPU/frame ≤ reference", scenario: "cms-1000keys", baseline: "reference", limit: 1.0, figure: figures.cpu },
  { goal: "CPU/frame ≤ reference", scenario: "cms-1key", baseline: "reference", limit: 1.0, figure: figures.cpu },
  { goal: "RSS/sub after bursts ≤ reference", scenario: "cms-1000keys", baseline: "reference", limit: 1.0, figure: figures.rssActive },
  { goal: "idle RSS/sub ≤ reference", scenario: "cms-1key", baseline: "reference", limit: 1.0, figure: figures.rssIdle },
  { goal: "conn/s ≥ reference", scenario: "cms-1000keys", baseline: "reference", limit: 1.0, atLeast: true, figure: figures.connect },
  { goal: "conn/s ≥ reference", scenario: "cms-1key", baseline: "reference", limit: 1.0, atLeast: true, figure: figures.connect }
]

/** Rows for `goalsTable` (report.mjs): one per goal and runtime that ran. */
export const evaluateCmsGoals = (results) => {
  const rows = []
  for (const { goal, scenario, baseline, limit, atLeast = false, figure } of goals) {
    const byKey = results[scenario]
    if (byKey === undefined) continue
    for (const runtime of runtimesOf(byKey)) {
      const base = byKey[`${runtime}/${baseline}`]
      if (base?.pass !== true || !(figure.value(base) > 0)) continue
      const ratios = {}
      for (const variant of ours) {
        const result = byKey[`${runtime}/${variant}`]
        if (result === undefined) continue
        const value = figure.value(result)
        // Slow case: growth is comparable only over the same number of events (a row cut at its time cap published fewer).
        const comparable = result.events === base.events
        const ratio = value === undefined || value === null || !comparable ? null : value / figure.value(base)
        const passed = result.pass === true
        ratios[variant] = { ratio, passed, met: passed && ratio !== null && (atLeast ? ratio >= limit : ratio <= limit) }
      }
      if (Object.keys(ratios).length === 0) continue
      rows.push({
        goal, figure: figure.label, scenario: `${scenario} (${runtime})`, limit, atLeast, difference: false,
        ours, baseline, stated: true, better: false, ratios
      })
    }
  }
  return rows
}
