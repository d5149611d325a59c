/** The probe's markdown table: one row per vector. */

const MiB = 1024 * 1024

const mib = (bytes) => typeof bytes === "number" ? `${(bytes / MiB).toFixed(0)} MiB` : "-"
const delta = (from, to) => typeof from === "number" && typeof to === "number" ? `${to >= from ? "+" : ""}${((to - from) / MiB).toFixed(0)} MiB` : "-"
const ms = (value) => typeof value === "number" ? value < 10 ? value.toFixed(1) : value.toFixed(0) : "-"
const latency = (summary) =>
  summary === undefined || summary === null || summary.n === undefined
    ? "-"
    : `${ms(summary.p50Ms)} / ${ms(summary.maxMs)}${summary.failures > 0 ? ` (${summary.failures} failed)` : ""}`
const cell = (text) => String(text).replaceAll("|", "\\|").replaceAll("\n", " ")

const headers = [
  "vector", "parameters", "RSS before", "RSS peak", "RSS after", "RSS settled", "Δ settled", "attack s",
  "GET during p50 / max ms", "GET after ms", "notes"
]

const row = (r) => {
  const env = Object.entries(r.env).map(([name, value]) => `${name}=${value}`).join(" ")
  const notes = [...(r.notes ?? [])]
  if (r.frame !== undefined) notes.unshift(`live frames during: p50 / max ${latency(r.frame)} ms over ${r.frame.n}`)
  if (r.error !== undefined) notes.unshift(`ERROR: ${r.error.split("\n")[0]}`)
  return [
    `${r.vector.id} ${r.vector.title}`,
    `${r.params ?? "-"}${env === "" ? "" : `; ${env}`}`,
    mib(r.before), mib(r.peak), mib(r.after), mib(r.settled), delta(r.before, r.settled),
    typeof r.attackSeconds === "number" ? r.attackSeconds.toFixed(1) : "-",
    latency(r.get),
    typeof r.getAfterMs === "number" ? ms(r.getAfterMs) : r.getAfterMs ?? "-",
    notes.join("; ")
  ]
}

export const table = (rows) =>
  [headers, headers.map(() => "---"), ...rows.map(row)].map((cells) => `| ${cells.map(cell).join(" | ")} |`).join("\n")
