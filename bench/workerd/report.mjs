/** The printed report of the workerd bench: every round, the medians, and ours against each baseline. */
import { table } from "../lib/report.mjs"

const fixed = (digits) => (value) => value === null || value === undefined ? "-" : value.toFixed(digits)
const thousands = (value) => value === null || value === undefined ? "-" : Math.round(value).toLocaleString("en-US")

/** The median of the numbers in `values` (nulls left out); `null` when there are none. */
export const median = (values) => {
  const sorted = values.filter((value) => typeof value === "number" && Number.isFinite(value)).sort((a, b) => a - b)
  if (sorted.length === 0) return null
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

const problems = (r) => {
  if (r.error !== undefined) return [r.error]
  const out = []
  if (r.failed > 0) out.push(`${r.failed} not connected (${r.firstError})`)
  if (r.publishErrors > 0) out.push(`${r.publishErrors} publish errors (${r.firstPublishError})`)
  for (const field of ["missing", "duplicates", "reorders", "foreign", "malformed", "ended"]) {
    if (r.check?.[field] > 0) out.push(`${r.check[field]} ${field}`)
  }
  if (r.throughput?.reached === false) out.push("burst stalled")
  if (r.latency?.timeouts > 0) out.push(`${r.latency.timeouts} lone events timed out`)
  return out
}

export const verdict = (r) => r.pass === true ? "PASS" : `FAIL (${problems(r).join(", ") || "?"})`

/** The figures a round contributes to the medians. */
const figures = {
  framesPerSecond: (r) => r.throughput?.framesPerSecond,
  cpuPerFrameUs: (r) => r.throughput?.cpuPerFrameUs,
  loneCpuPerFrameUs: (r) => r.latency?.cpuPerFrameUs,
  p50Ms: (r) => r.latency?.p50Ms,
  p99Ms: (r) => r.latency?.p99Ms
}

/** One row per round, in the order they ran. */
export const roundsTable = (rounds) => table(
  ["variant", "round", "subscribers", "frames", "frames/s", "frames/chunk", "burst CPU µs/frame", "lone CPU µs/frame", "p50 ms", "p99 ms", "client CPU", "check"],
  rounds.map(({ variant, round, result: r }) => [
    variant, round, thousands(r.connected), thousands(r.throughput?.delivered), thousands(r.throughput?.framesPerSecond),
    fixed(1)(r.throughput?.framesPerChunk), fixed(2)(r.throughput?.cpuPerFrameUs), fixed(2)(r.latency?.cpuPerFrameUs),
    fixed(2)(r.latency?.p50Ms), fixed(2)(r.latency?.p99Ms),
    r.throughput?.clientCpuShare === undefined ? "-" : `${Math.round(r.throughput.clientCpuShare * 100)} %`,
    verdict(r)
  ]),
  "lrrrrrrrrrrl"
)

/** Per variant: the medians over its passing rounds of every figure, and how many rounds passed. */
export const medians = (rounds, variants) => Object.fromEntries(variants.map((variant) => {
  const mine = rounds.filter((round) => round.variant === variant)
  const passed = mine.filter((round) => round.result.pass === true).map((round) => round.result)
  const out = { rounds: mine.length, passed: passed.length }
  for (const [name, figure] of Object.entries(figures)) out[name] = median(passed.map(figure))
  return [variant, out]
}))

export const mediansTable = (byVariant) => table(
  ["variant", "rounds passed", "frames/s", "burst CPU µs/frame", "lone CPU µs/frame", "p50 ms", "p99 ms"],
  Object.entries(byVariant).map(([variant, m]) => [
    variant, `${m.passed}/${m.rounds}`, thousands(m.framesPerSecond), fixed(2)(m.cpuPerFrameUs), fixed(2)(m.loneCpuPerFrameUs),
    fixed(2)(m.p50Ms), fixed(2)(m.p99Ms)
  ]),
  "lrrrrrr"
)

/**
 * Ours against one baseline (`name`, for the labels), each ratio oriented as
 * its goal states: throughput ours/baseline (≥ 0.8), p99 baseline/ours (≥ 0.8:
 * at least 0.8× as good), CPU per frame ours/baseline (lower is better, no goal).
 */
export const ratios = (ours, baseline, name = "baseline", subject = "ours") => {
  const ratio = (a, b) => a === null || b === null || b === 0 ? null : a / b
  const usable = ours.passed > 0 && baseline.passed > 0
  const rows = [
    { name: "throughput", figure: `frames/s, ${subject} / ${name}`, value: ratio(ours.framesPerSecond, baseline.framesPerSecond), goal: 0.8 },
    { name: "lone p99", figure: `p99 ms, ${name} / ${subject}`, value: ratio(baseline.p99Ms, ours.p99Ms), goal: 0.8 },
    { name: "lone p50", figure: `p50 ms, ${name} / ${subject}`, value: ratio(baseline.p50Ms, ours.p50Ms), goal: null },
    { name: "CPU/frame (burst)", figure: `workerd CPU µs/frame, ${subject} / ${name} (lower is better)`, value: ratio(ours.cpuPerFrameUs, baseline.cpuPerFrameUs), goal: null },
    { name: "CPU/frame (lone)", figure: `workerd CPU µs/frame, ${subject} / ${name} (lower is better)`, value: ratio(ours.loneCpuPerFrameUs, baseline.loneCpuPerFrameUs), goal: null }
  ]
  return rows.map((row) => ({
    ...row,
    met: row.goal === null ? null : usable && row.value !== null && row.value >= row.goal
  }))
}

export const ratiosTable = (rows) => table(
  ["ratio", "figure", "value", "goal"],
  rows.map((row) => [
    row.name, row.figure, row.value === null ? "n/a" : `${row.value.toFixed(2)}×`,
    row.goal === null ? "-" : `≥ ${row.goal}: ${row.met ? "met" : "MISSED"}`
  ]),
  "llrl"
)
