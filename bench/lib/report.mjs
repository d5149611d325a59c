/** The printed report: one table per scenario, then the goals. */

const MiB = 1024 * 1024

const fixed = (digits) => (value) => value === null || value === undefined ? "-" : value.toFixed(digits)
const thousands = (value) => value === null || value === undefined ? "-" : Math.round(value).toLocaleString("en-US")
const mib = (bytes) => bytes === undefined ? "-" : `${(bytes / MiB).toFixed(1)} MiB`
const pair = (a, b) => a === null || a === undefined ? "-" : `${fixed(2)(a)} / ${fixed(2)(b)}`
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
  const roundTrip = result.roundTrip
  if (roundTrip?.errors > 0) out.push(`${roundTrip.errors} round-trip-phase publish errors (${roundTrip.firstError})`)
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
  cluster: {
    headers: [
      "variant", "subscribers", "frames", "frames/s", "ingress µs/publish", "CPU µs/frame", "fan-out CPU µs/frame",
      "redis-server µs/frame", "lone p50 / p99 ms", "publish RTT p50 / p99 ms", "RTT, no subscribers", "check"
    ],
    align: "lrrrrrrrrrrl",
    row: (variant, r) => [
      `${variant}${r.servers > 1 ? ` ×${r.servers}` : ""}`,
      r.perServer === undefined ? "-" : r.perServer.map(thousands).join(" + "),
      thousands(r.throughput?.delivered), thousands(r.throughput?.framesPerSecond),
      fixed(1)(r.throughput?.ingressUsPerPublish), fixed(2)(r.throughput?.cpuPerFrameUs),
      fixed(2)(r.throughput?.fanoutCpuPerFrameUs), fixed(2)(r.throughput?.redisCpuPerFrameUs),
      pair(r.latency?.p50Ms, r.latency?.p99Ms), pair(r.latency?.roundTripP50Ms, r.latency?.roundTripP99Ms),
      pair(r.roundTrip?.p50Ms, r.roundTrip?.p99Ms), verdict(r)
    ],
    notes: [
      "CPU µs/frame: the servers' CPU (both instances, summed) over the throughput phase per frame delivered; redis-server's",
      "own CPU is not in it but in its own column (in the effect row: what other clients cost the shared Redis meanwhile).",
      "publish RTT: request written → 204 read, in the lone-event phase; RTT, no subscribers: the same, one at a time, to",
      "records nobody watches. Publishes go to each instance in turn, 16 at a time, each block answered before the next."
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

/** The table of one scenario, one row per variant that ran (the layout of `scenario.table`, else of its kind). */
export const scenarioTable = (scenario, byVariant, quick) => {
  const { headers, align, row, notes = [] } = rowsByKind[scenario.table ?? scenario.kind]
  const rows = Object.entries(byVariant).map(([variant, result]) => row(variant, result))
  return [`${scenario.name}: ${scenario.title}${quick ? " (--quick: smaller)" : ""}`, table(headers, rows, align), ...notes].join("\n")
}

const fanouts = ["1k-1key", "10k-1key", "10k-1000keys"]
const clusters = ["redis-2x-1key", "redis-2x-200keys"]

/** Ours and the baselines: the single-process library against the hand-written fan-outs… */
const single = { ours: ["effect", "plugin"], baselines: ["naive", "coalescing"] }
/** …and two Redis-backed instances against the in-memory `effect` server of the same scenario. */
const cluster = { ours: ["redis"], baselines: ["effect"], stated: "effect" }

/**
 * The goals, each with its limit, the baseline it names (`stated`), other
 * baselines it is always shown against (`also`), and the measured figure it
 * divides (`figure`, printed in the summary). A goal with `difference` limits
 * ours − baseline (in `unit`) instead of ours / baseline; `ourMetric`, when
 * given, is what ours is measured on.
 */
const goals = [
  {
    ...single, goal: "CPU/frame (fan-out)", scenarios: fanouts, limit: 1.1, stated: "coalescing",
    figure: "fan-out CPU µs/frame = (throughput CPU − publishes × ingress µs/publish) / frames",
    metric: (r) => r.throughput?.fanoutCpuPerFrameUs
  },
  {
    ...single, goal: "CPU/frame (total)", scenarios: fanouts, limit: 1.1, stated: "coalescing",
    figure: "total CPU µs/frame = throughput CPU / frames, the bench's publish ingress included",
    metric: (r) => r.throughput?.cpuPerFrameUs
  },
  {
    ...single, goal: "lone-event p99", scenarios: fanouts, limit: 1.0, stated: "naive",
    figure: "lone p99 ms over all (subscriber, event) deliveries",
    metric: (r) => r.latency?.p99Ms
  },
  {
    ...single, goal: "RSS per idle subscriber", scenarios: ["idle"], limit: 1.5, stated: "naive",
    figure: "(RSS(N) − RSS(N/2)) / (N/2), after full GCs",
    metric: (r) => r.bytesPerSubscriber
  },
  {
    ...single, goal: "slow-case growth", scenarios: ["slow"], limit: 0.7, stated: "naive", also: ["coalescing"],
    figure: "peak RSS − RSS after a GC; met only with every fast subscriber complete",
    metric: (r) => r.growth
  },
  {
    ...cluster, goal: "Redis CPU/frame", scenarios: clusters, limit: 1.5,
    figure: "CPU µs/frame = the servers' CPU over the throughput phase (both Redis-backed instances summed) / frames; " +
      "redis-server not included",
    metric: (r) => r.throughput?.cpuPerFrameUs
  },
  {
    ...cluster, goal: "Redis CPU/frame (+ redis-server)", scenarios: clusters, limit: 1.5,
    figure: "as above, with redis-server's CPU over the same phase added to ours (it also served other clients)",
    metric: (r) => r.throughput?.cpuPerFrameUs,
    ourMetric: ({ throughput: t }) => t?.cpuPerFrameUs == null || t.redisCpuPerFrameUs == null ? null : t.cpuPerFrameUs + t.redisCpuPerFrameUs
  },
  {
    ...cluster, goal: "Redis lone-event p50", scenarios: clusters, limit: 2, difference: true, unit: "ms",
    figure: "lone p50 ms over all (subscriber, event) deliveries, ours − baseline",
    metric: (r) => r.latency?.p50Ms
  }
]

const usable = (result) => result !== undefined && result.pass === true

/**
 * Ratios ours/baseline (or differences) for every goal and scenario that ran,
 * against the baseline the goal names and, when another baseline did better,
 * against it too. A goal counts as met only if the variant's own run also
 * passed its checks.
 */
export const evaluateGoals = (results) => {
  const rows = []
  for (const { goal, scenarios, limit, stated, also = [], ours, baselines, difference = false, unit, figure, metric, ourMetric = metric } of goals) {
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
          const value = ourMetric(result)
          const base = metric(byVariant[baseline])
          const ratio = value === undefined || value === null ? null : difference ? value - base : value / base
          ratios[variant] = { [difference ? "difference" : "ratio"]: ratio, passed: usable(result), met: usable(result) && ratio !== null && ratio <= limit }
        }
        if (Object.keys(ratios).length === 0) continue
        rows.push({ goal, figure, scenario, limit, difference, unit, ours, baseline, stated: baseline === stated, better: baseline === better, ratios })
      }
    }
  }
  return rows
}

const againstLabel = (row) => row.stated ? "" : row.better ? " (better)" : " (also)"

const limitLabel = (row) =>
  `${row.difference ? `≤ ${row.baseline} + ${row.limit} ${row.unit}` : `${row.atLeast ? "≥" : "≤"} ${row.limit} × ${row.baseline}`}${againstLabel(row)}`

/** The goals as a table, one column per variant of ours that has a goal, then the figure each goal divides. */
export const goalsTable = (rows) => {
  const cell = (row, entry) => {
    if (entry === undefined) return "-"
    const figure = row.difference
      ? entry.difference === null ? "n/a" : `${entry.difference < 0 ? "−" : "+"}${Math.abs(entry.difference).toFixed(2)} ${row.unit}`
      : entry.ratio === null ? "n/a" : `${entry.ratio.toFixed(2)}×`
    return `${figure} ${entry.met ? "met" : "MISSED"}${entry.passed ? "" : " (run FAILED)"}`
  }
  const columns = [...new Set(rows.flatMap((row) => row.ours))]
  const figures = [...new Map(rows.map((row) => [row.goal, row.figure])).entries()]
  const notes = [
    ...(rows.some((row) => row.goal === "CPU/frame (fan-out)")
      ? [
        "The CPU goal is judged on the fan-out figure: the subscribe route and fan-out, with the cost of the",
        "bench's own publish requests (measured in the ingress phase) taken out. The total figure is shown for reference."
      ]
      : []),
    ...(rows.some((row) => row.ours.includes("redis"))
      ? [
        "The Redis goals compare the pair of Redis-backed instances (redis) with the in-memory effect server of the",
        "same scenario and run; the CPU goal is judged without redis-server's CPU, the row with it is for reference."
      ]
      : [])
  ]
  return [
    table(
      ["goal", "scenario", "limit", ...columns],
      rows.map((row) => [row.goal, row.scenario, limitLabel(row), ...columns.map((variant) => cell(row, row.ratios[variant]))]),
      `lll${"l".repeat(columns.length)}`
    ),
    "",
    `Each goal divides ours by the baseline on this figure${rows.some((row) => row.difference) ? " (or, where the limit is a sum, subtracts it)" : ""}:`,
    ...figures.map(([goal, figure]) => `  ${goal}: ${figure}`),
    ...notes
  ].join("\n")
}
