/**
 * What an operator watches, as Effect metrics (all named `saacms_realtime_…`),
 * and the Prometheus text exposition of the metric registry with a
 * `GET /metrics` route for an Effect app's router.
 *
 * The core updates these metrics with plain calls (`unsafeUpdate`), never an
 * Effect per frame: the fan-out counts in plain numbers and reports once per
 * flush of the hub (the end of a turn of the event loop) or per batch of
 * history reads. A plain update ignores the fiber's metric tags
 * (`Effect.tagMetrics`): every series here carries exactly the labels listed.
 *
 * Gauges are kept as deltas, so several hubs in one process (several
 * `realtime()` plugins, Durable Objects sharing an isolate) add up; a hub that
 * shuts down takes its own share back out.
 *
 * @since 0.1.0
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricLabel from "effect/MetricLabel"
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"

/**
 * Open subscriptions in this process: one per record (or collection) a
 * stream follows, so a multiplexed stream of three topics counts three.
 *
 * @since 0.1.0
 * @category metrics
 */
export const subscribers = Metric.gauge("saacms_realtime_subscribers", {
  description: "Open realtime subscriptions (a multiplexed stream counts once per topic)"
})

/**
 * Records (and collections) with at least one subscriber in this process:
 * the hub's topics.
 *
 * @since 0.1.0
 * @category metrics
 */
export const activeRecords = Metric.gauge("saacms_realtime_active_records", {
  description: "Records and collections with at least one subscriber"
})

/**
 * Events accepted by `publish` in this process (one per event; its
 * collection's entry is not counted again).
 *
 * @since 0.1.0
 * @category metrics
 */
export const framesPublished = Metric.counter("saacms_realtime_frames_published", {
  description: "Events published",
  incremental: true
})

/**
 * Record frames handed to subscribers (to their stream's queue or socket),
 * live or replayed from the history: one per frame per subscriber. Heartbeats,
 * openings, resyncs and revocations are not counted.
 *
 * @since 0.1.0
 * @category metrics
 */
export const framesDelivered = Metric.counter("saacms_realtime_frames_delivered", {
  description: "Record frames handed to subscribers, live or replayed",
  incremental: true
})

/**
 * History reads that answered a subscriber behind (too slow for its bound,
 * or resuming after a last event id) with at least one frame: one per read,
 * however many frames it held.
 *
 * @since 0.1.0
 * @category metrics
 */
export const replaysServed = Metric.counter("saacms_realtime_replays_served", {
  description: "History reads that served frames to a subscriber behind or resuming",
  incremental: true
})

/**
 * `saacms-resync` frames sent: an unknown or evicted last event id, a
 * subscriber behind whose history was dropped, a history lost by the backend.
 *
 * @since 0.1.0
 * @category metrics
 */
export const resyncsSent = Metric.counter("saacms_realtime_resyncs_sent", {
  description: "saacms-resync frames sent",
  incremental: true
})

/**
 * Times a subscriber fell behind its bound (it then catches up from the
 * history), and subscribers ended because their client took nothing for a
 * whole heartbeat interval while frames waited.
 *
 * @since 0.1.0
 * @category metrics
 */
export const slowSubscribers = Metric.counter("saacms_realtime_slow_subscribers", {
  description: "Subscribers that fell behind their queue bound or stalled",
  incremental: true
})

/**
 * Why a subscribe request was refused: the `error` code of its JSON answer.
 *
 * @since 0.1.0
 * @category models
 */
export type RefusalReason =
  | "invalid_resource_key"
  | "invalid_last_event_id"
  | "invalid_topic"
  | "too_many_topics"
  | "unauthorized"
  | "forbidden"
  | "too_many_subscribers"
  | "unavailable"
  | "internal"

/**
 * Subscribe requests refused, tagged `reason` (see `RefusalReason`):
 * `Metric.tagged(refusals, "reason", "forbidden")` is one series.
 *
 * @since 0.1.0
 * @category metrics
 */
export const refusals = Metric.counter("saacms_realtime_refusals", {
  description: "Subscribe requests refused, by reason",
  incremental: true
})

// One label array per reason, kept: the metric caches its series by the array.
const reasonLabels = new Map<RefusalReason, ReadonlyArray<MetricLabel.MetricLabel>>()

/**
 * Count one refusal (a plain call).
 *
 * @since 0.1.0
 * @category metrics
 */
export const refused = (reason: RefusalReason): void => {
  let labels = reasonLabels.get(reason)
  if (labels === undefined) {
    labels = [MetricLabel.make("reason", reason)]
    reasonLabels.set(reason, labels)
  }
  refusals.unsafeUpdate(1, labels)
}

/**
 * Calls to the history backend (`ReplayBuffer.make` over a driver: Redis, or
 * one of your own; memory never fails) that failed with `Unavailable`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const backendFailures = Metric.counter("saacms_realtime_backend_failures", {
  description: "ReplayBuffer calls that failed with Unavailable",
  incremental: true
})

/**
 * Publish-to-write latency, in milliseconds: from `Realtime.publish` (or
 * `unsafePublish`) accepting an event to the hub handing its frame to the
 * subscribers' queues, at the end of that turn of the event loop. One
 * observation per frame per record (or collection) with subscribers. A frame
 * that reaches this process from a live source (Redis: another instance, or
 * this one's own publish coming back on the channel) is timed from its arrival.
 * Boundaries 0.1 ms × 2ⁿ up to 3 276.8 ms.
 *
 * @since 0.1.0
 * @category metrics
 */
export const publishLatency = Metric.histogram(
  "saacms_realtime_publish_latency_ms",
  MetricBoundaries.exponential({ start: 0.1, factor: 2, count: 17 }),
  "Publish-to-write latency (ms): publish accepted to frame handed to subscribers"
)

/**
 * Every metric of the current metric registry (`Metric.snapshot`) in the
 * Prometheus text exposition format 0.0.4: counters as `counter` (with the
 * conventional `_total` suffix, as OpenTelemetry's Prometheus exporter
 * writes them), gauges as `gauge`, histograms as `histogram` (cumulative
 * `_bucket{le=…}`, `_sum`, `_count`), summaries as `summary`, frequencies as
 * a counter per value (label `key`); tags become labels, the description the
 * HELP line.
 *
 * @since 0.1.0
 * @category exposition
 */
export const prometheus: Effect.Effect<string> = Effect.map(Metric.snapshot, (pairs) => toPrometheus(pairs))

/**
 * The content type of the exposition.
 *
 * @since 0.1.0
 * @category exposition
 */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

/**
 * The exposition as an HTTP response, for any router.
 *
 * @since 0.1.0
 * @category exposition
 */
export const response: Effect.Effect<HttpServerResponse.HttpServerResponse> = Effect.map(
  prometheus,
  (text) => HttpServerResponse.text(text, { contentType, headers: { "Cache-Control": "no-store" } })
)

/**
 * `GET /metrics` for an Effect app's router:
 * `HttpLayerRouter.serve(Layer.mergeAll(RealtimeHttp.layer, Metrics.layerHttp))`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerHttp: Layer.Layer<never, never, HttpLayerRouter.HttpRouter> = HttpLayerRouter.add(
  "GET",
  "/metrics",
  response
)

interface Family {
  readonly name: string
  readonly type: "counter" | "gauge" | "histogram" | "summary"
  readonly help: string | undefined
  readonly lines: Array<readonly [sortKey: string, line: string]>
}

/**
 * The exposition of `pairs` (see `prometheus`).
 *
 * @since 0.1.0
 * @category exposition
 */
export const toPrometheus = (pairs: Iterable<MetricPair.MetricPair.Untyped>): string => {
  const families = new Map<string, Family>()
  const family = (name: string, type: Family["type"], help: string | undefined) => {
    // Two metrics of different types under one name would make one family invalid: keep them apart.
    const id = `${name} ${type}`
    let found = families.get(id)
    if (found === undefined) {
      found = { name, type, help, lines: [] }
      families.set(id, found)
    }
    return found
  }
  for (const { metricKey, metricState } of pairs) {
    const base = metricName(metricKey.name)
    const help = metricKey.description._tag === "Some" ? metricKey.description.value : undefined
    const tags = metricKey.tags.map((tag) => [labelName(tag.key), tag.value] as const)
    const labels = labelText(tags)
    if (MetricState.isCounterState(metricState)) {
      const name = base.endsWith("_total") ? base : `${base}_total`
      family(name, "counter", help).lines.push([labels, `${name}${labels} ${number(metricState.count)}`])
    } else if (MetricState.isGaugeState(metricState)) {
      family(base, "gauge", help).lines.push([labels, `${base}${labels} ${number(metricState.value)}`])
    } else if (MetricState.isHistogramState(metricState)) {
      const lines = family(base, "histogram", help).lines
      // Effect's buckets are cumulative, and its boundaries end with +Inf.
      let infinite = false
      for (const [boundary, count] of metricState.buckets) {
        if (boundary === Infinity) infinite = true
        lines.push([labels, `${base}_bucket${labelText([...tags, ["le", number(boundary)]])} ${count}`])
      }
      if (!infinite) lines.push([labels, `${base}_bucket${labelText([...tags, ["le", "+Inf"]])} ${metricState.count}`])
      lines.push([labels, `${base}_sum${labels} ${number(metricState.sum)}`])
      lines.push([labels, `${base}_count${labels} ${metricState.count}`])
    } else if (MetricState.isSummaryState(metricState)) {
      const lines = family(base, "summary", help).lines
      for (const [quantile, value] of metricState.quantiles) {
        const sample = value._tag === "Some" ? number(value.value) : "NaN"
        lines.push([labels, `${base}${labelText([...tags, ["quantile", number(quantile)]])} ${sample}`])
      }
      lines.push([labels, `${base}_sum${labels} ${number(metricState.sum)}`])
      lines.push([labels, `${base}_count${labels} ${metricState.count}`])
    } else if (MetricState.isFrequencyState(metricState)) {
      const name = base.endsWith("_total") ? base : `${base}_total`
      const lines = family(name, "counter", help).lines
      for (const [word, count] of metricState.occurrences) {
        const withKey = labelText([...tags, ["key", word]])
        lines.push([withKey, `${name}${withKey} ${count}`])
      }
    }
  }
  let text = ""
  for (const found of [...families.values()].sort((a, b) => compare(a.name, b.name) || compare(a.type, b.type))) {
    if (found.help !== undefined) text += `# HELP ${found.name} ${escapeHelp(found.help)}\n`
    text += `# TYPE ${found.name} ${found.type}\n`
    // Series by labels; a histogram's lines keep their order within a series (the sort is stable).
    for (const [, line] of found.lines.sort((a, b) => compare(a[0], b[0]))) text += `${line}\n`
  }
  return text
}

// A metric name Prometheus accepts: [a-zA-Z_:][a-zA-Z0-9_:]*.
const metricName = (name: string): string => {
  const cleaned = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return /^[0-9]/.test(cleaned) || cleaned === "" ? `_${cleaned}` : cleaned
}

// A label name: [a-zA-Z_][a-zA-Z0-9_]*.
const labelName = (name: string): string => {
  const cleaned = name.replace(/[^a-zA-Z0-9_]/g, "_")
  return /^[0-9]/.test(cleaned) || cleaned === "" ? `_${cleaned}` : cleaned
}

const labelText = (labels: ReadonlyArray<readonly [string, string]>): string =>
  labels.length === 0 ? "" : `{${labels.map(([name, value]) => `${name}="${escapeLabel(value)}"`).join(",")}}`

const escapeLabel = (value: string): string => value.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")

const escapeHelp = (value: string): string => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

const number = (value: number | bigint): string => {
  if (typeof value === "bigint") return value.toString()
  if (value === Infinity) return "+Inf"
  if (value === -Infinity) return "-Inf"
  return Number.isNaN(value) ? "NaN" : String(value)
}

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)
