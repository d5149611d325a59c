/** The printed report: one table per scenario, then the goals. */

const MiB = 1024 * 1024

const fixed = (digits) => (value) => value === null || value === undefined ? "-" : value.toFixed(digits)
const thousands = (value) => value === null || value === undefined ? "-" : Math.round(value).toLocaleString("en-US")
const mib = (bytes) => bytes === undefined ? "-" : `${(bytes / MiB).toFixed(1)} MiB`
const kib = (bytes) => bytes === undefined ? "-" : `${(bytes / 1024).toFixed(2)} KiB`

/** A text table; `align` has one letter per column, `l` or `r`. */
export const table = (headers, rows, align) => {
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => String(row[i]).length)))
  const line = (cells) =>
    cells.map((cell, i) => align[i] === "l" ? String(cell).padEnd(widths[i]) : String(cell).padStart(widths[i])).join("  ").trimEnd()
  return [line(headers), widths.map((width) => "-".repeat(width)).join("  "), ...rows.map(line)].join("\n")
}

const problems = (result) => {
  if (result.error !== undefined) return [result.error]
  const out = []
  if (result.failed > 0) out.push(`${result.failed} not connected (${result.firstError})`)
  if (result.publishErrors > 0) out.push(`${result.publishErrors} publish errors (${result.firstPublishError})`)
  const ingress = result.throughput?.ingress
  if (ingress?.errors > 0) out.push(`${ingress.errors} ingress-phase publish errors (${ingress.firstError})`)
  const check = result.check
  if (check !== undefined) {
    if (check.complete < check.subscribers) out.push(`${check.subscribers - check.complete} incomplete`)
    for (const field of ["missing", "duplicates", "reorders", "foreign", "malformed"]) {
      if (check[field] > 0) out.push(`${check[field]} ${field}`)
    }
    if (check.ended > 0) out.push(`${check.ended} ended`)
  }
  if (result.throughput?.reached === false) out.push("throughput phase stalled")
  if (result.latency?.timeouts > 0) out.push(`${result.latency.timeouts} lone events timed out`)
  if (result.ended > 0) out.push(`${result.ended} idle streams ended`)
  return out
}

const verdict = (result) => {
  const found = problems(result)
  return result.pass === true ? "PASS" : `FAIL${found.length === 0 ? "" : ` (${found.join(", ")})`}`
}

const rowsByKind = {
  fanout: {
    headers: ["variant", "subscribers", "frames", "frames/s", "frames/chunk", "ingress µs/publish", "total CPU µs/frame", "fan-out CPU µs/frame", "lone p50 ms", "lone p99 ms", "check"],
    align: "lrrrrrrrrrl",
    row: (variant, r) => [
      variant, thousands(r.connected), thousands(r.throughput?.delivered), thousands(r.throughput?.framesPerSecond),
      fixed(1)(r.throughput?.framesPerChunk), fixed(1)(r.throughput?.ingressUsPerPublish), fixed(2)(r.throughput?.cpuPerFrameUs),
      fixed(2)(r.throughput?.fanoutCpuPerFrameUs),
      fixed(2)(r.latency?.p50Ms), fixed(2)(r.latency?.p99Ms), verdict(r)
    ]
  },
  idle: {
    headers: ["variant", "subscribers", "RSS empty", "RSS N/2", "RSS N", "per subscriber", "check"],
    align: "lrrrrrl",
    row: (variant, r) => [
      variant, thousands(r.connected), mib(r.rssEmpty), mib(r.rssHalf), mib(r.rssFull), kib(r.bytesPerSubscriber), verdict(r)
    ]
  },
  slow: {
    headers: ["variant", "fast", "events", "seconds", "RSS before", "RSS peak", "growth", "fast complete", "paused got", "check"],
    align: "lrrrrrrrrl",
    row: (variant, r) => [
      variant, thousands(r.connected), thousands(r.events), fixed(1)(r.seconds), mib(r.baseline), mib(r.peak), mib(r.growth),
      r.check === undefined ? "-" : `${r.check.complete}/${r.check.subscribers}`,
      r.paused === undefined || r.paused === null ? "-" : `${r.paused.received}${r.paused.cutOff ? ", cut off" : ", open"}`,
      verdict(r)
    ]
  }
}

/** The table of one scenario, one row per variant that ran. */
export const scenarioTable = (scenario, byVariant, quick) => {
  const { headers, align, row } = rowsByKind[scenario.kind]
  const rows = Object.entries(byVariant).map(([variant, result]) => row(variant, result))
  return `${scenario.name}: ${scenario.title}${quick ? " (--quick: smaller)" : ""}\n${table(headers, rows, align)}`
}

const fanouts = ["1k-1key", "10k-1key", "10k-1000keys"]

/**
 * The goals, each with its limit, the baseline it names (`stated`), other
 * baselines it is always shown against (`also`), and the measured figure it
 * divides (`figure`, printed in the summary).
 */
const goals = [
  {
    goal: "CPU/frame (fan-out)", scenarios: fanouts, limit: 1.1, stated: "coalescing",
    figure: "fan-out CPU µs/frame = (throughput CPU − publishes × ingress µs/publish) / frames",
    metric: (r) => r.throughput?.fanoutCpuPerFrameUs
  },
  {
    goal: "CPU/frame (total)", scenarios: fanouts, limit: 1.1, stated: "coalescing",
    figure: "total CPU µs/frame = throughput CPU / frames, the bench's publish ingress included",
    metric: (r) => r.throughput?.cpuPerFrameUs
  },
  {
    goal: "lone-event p99", scenarios: fanouts, limit: 1.0, stated: "naive",
    figure: "lone p99 ms over all (subscriber, event) deliveries",
    metric: (r) => r.latency?.p99Ms
  },
  {
    goal: "RSS per idle subscriber", scenarios: ["idle"], limit: 1.5, stated: "naive",
    figure: "(RSS(N) − RSS(N/2)) / (N/2), after full GCs",
    metric: (r) => r.bytesPerSubscriber
  },
  {
    goal: "slow-case growth", scenarios: ["slow"], limit: 0.7, stated: "naive", also: ["coalescing"],
    figure: "peak RSS − RSS after a GC; met only with every fast subscriber complete",
    metric: (r) => r.growth
  }
]

const ours = ["effect", "plugin"]
const baselines = ["naive", "coalescing"]

const usable = (result) => result !== undefined && result.pass === true

/**
 * Ratios ours/baseline for every goal and scenario that ran, against the
 * baseline the goal names and, when the other baseline did better, against it
 * too. A goal counts as met only if the variant's own run also passed its checks.
 */
export const evaluateGoals = (results) => {
  const rows = []
  for (const { goal, scenarios, limit, stated, also = [], figure, metric } of goals) {
    for (const scenario of scenarios) {
      const byVariant = results[scenario] ?? {}
      const valid = baselines.filter((name) => usable(byVariant[name]) && metric(byVariant[name]) > 0)
      if (valid.length === 0) continue
      const better = valid.reduce((a, b) => metric(byVariant[b]) < metric(byVariant[a]) ? b : a, valid.includes(stated) ? stated : valid[0])
      const against = [...new Set([stated, better, ...also])].filter((name) => valid.includes(name))
      for (const baseline of against) {
        const ratios = {}
        for (const variant of ours) {
          const result = byVariant[variant]
          if (result === undefined) continue
          const value = metric(result)
          const ratio = value === undefined || value === null ? null : value / metric(byVariant[baseline])
          ratios[variant] = { ratio, passed: usable(result), met: usable(result) && ratio !== null && ratio <= limit }
        }
        if (Object.keys(ratios).length === 0) continue
        rows.push({ goal, figure, scenario, limit, baseline, stated: baseline === stated, better: baseline === better, ratios })
      }
    }
  }
  return rows
}

const againstLabel = (row) => row.stated ? "" : row.better ? " (better)" : " (also)"

/** The goals as a table, then the figure each goal divides. */
export const goalsTable = (rows) => {
  const cell = (entry) => {
    if (entry === undefined) return "-"
    const ratio = entry.ratio === null ? "n/a" : `${entry.ratio.toFixed(2)}×`
    return `${ratio} ${entry.met ? "met" : "MISSED"}${entry.passed ? "" : " (run FAILED)"}`
  }
  const figures = [...new Map(rows.map((row) => [row.goal, row.figure])).entries()]
  return [
    table(
      ["goal", "scenario", "limit", "effect", "plugin"],
      rows.map((row) => [
        row.goal, row.scenario,
        `≤ ${row.limit} × ${row.baseline}${againstLabel(row)}`,
        cell(row.ratios.effect), cell(row.ratios.plugin)
      ]),
      "lllll"
    ),
    "",
    "Each goal divides ours by the baseline on this figure:",
    ...figures.map(([goal, figure]) => `  ${goal}: ${figure}`),
    "The CPU goal is judged on the fan-out figure: the subscribe route and fan-out, with the cost of the",
    "bench's own publish requests (measured in the ingress phase) taken out. The total figure is shown for reference."
  ].join("\n")
}
