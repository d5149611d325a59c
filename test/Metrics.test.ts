/**
 * Metrics and tracing: exact changes of every metric under known actions (in
 * the in-memory core and through the subscribe routes on the runtime's real
 * server), the Prometheus exposition (parsed), `GET /metrics`, and the spans of
 * publish and subscribe (one each, none per frame). Metrics are global to the
 * process: every check compares a delta.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import * as Access from "../src/Access.js"
import * as Hub from "../src/Hub.js"
import * as Metrics from "../src/Metrics.js"
import * as Realtime from "../src/Realtime.js"
import * as RealtimeConfig from "../src/RealtimeConfig.js"
import * as RealtimeError from "../src/RealtimeError.js"
import * as RealtimeHttp from "../src/RealtimeHttp.js"
import * as ReplayBuffer from "../src/ReplayBuffer.js"
import { eventually } from "./utils/eventually.js"
import { awaitSubscribers, key, memory, nextTurn } from "./utils/layers.js"
import * as Server from "./utils/server.js"
import * as Sse from "./utils/sse.js"

const posts1 = key("posts", "1")
const posts2 = key("posts", "2")

const changed = (id: string, n: number) => ({ type: "changed", slug: "posts", id, record: { n } }) as const

// Every metric the core updates, read at once.
interface Counts {
  published: number
  delivered: number
  replays: number
  resyncs: number
  slow: number
  failures: number
  subscribers: number
  active: number
  latency: number
}
const read = Effect.sync((): Counts => ({
  published: Metrics.framesPublished.unsafeValue([]).count,
  delivered: Metrics.framesDelivered.unsafeValue([]).count,
  replays: Metrics.replaysServed.unsafeValue([]).count,
  resyncs: Metrics.resyncsSent.unsafeValue([]).count,
  slow: Metrics.slowSubscribers.unsafeValue([]).count,
  failures: Metrics.backendFailures.unsafeValue([]).count,
  subscribers: Metrics.subscribers.unsafeValue([]).value,
  active: Metrics.activeRecords.unsafeValue([]).value,
  latency: Metrics.publishLatency.unsafeValue([]).count
}))

/** What changed since `before` (only the metrics that did). */
const delta = (before: Counts) =>
  Effect.map(read, (after) => {
    const changes: Partial<Counts> = {}
    for (const name of Object.keys(after) as Array<keyof Counts>) {
      if (after[name] !== before[name]) changes[name] = after[name] - before[name]
    }
    return changes
  })

const refusalsOf = (reason: Metrics.RefusalReason) =>
  Effect.map(Metric.value(Metric.tagged(Metrics.refusals, "reason", reason)), (state) => state.count)

/** The mailbox behind a subscriber, read by hand (as a client that takes its frames when it likes). */
const mailbox = (subscriber: Realtime.Subscriber) => subscriber as Hub.Subscriber

/** Take what `subscriber` holds, then say its client has taken it (a subscriber behind reads on). */
const take = (subscriber: Hub.Subscriber) =>
  Effect.sync(() => {
    const chunks = subscriber.poll() ?? []
    subscriber.drained()
    return Sse.parse(chunks).filter((event) => event.event === "changed").length
  })

/** Take frames until `count` record frames arrived, letting the hub's history reads run in between. */
const takeAll = (subscriber: Hub.Subscriber, count: number) =>
  Effect.gen(function*() {
    let got = 0
    for (let i = 0; i < 1000 && got < count; i++) {
      got += yield* take(subscriber)
      yield* Effect.yieldNow()
    }
    return got
  })

// The Prometheus text format 0.0.4, strictly enough to catch a malformed line.
interface Sample {
  readonly name: string
  readonly labels: Record<string, string>
  readonly value: number
}
const parsePrometheus = (text: string) => {
  const types = new Map<string, string>()
  const help = new Map<string, string>()
  const samples: Array<Sample> = []
  assert.isTrue(text.endsWith("\n"), "the exposition ends with a newline")
  const familyOf = (name: string) => {
    if (types.has(name)) return name
    for (const suffix of ["_bucket", "_sum", "_count"]) {
      const base = name.endsWith(suffix) ? name.slice(0, -suffix.length) : undefined
      if (base !== undefined && (types.get(base) === "histogram" || types.get(base) === "summary")) return base
    }
    return undefined
  }
  let current: string | undefined
  for (const line of text.slice(0, -1).split("\n")) {
    const comment = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line)
    if (comment !== null) {
      const [, kind, name, rest] = comment as unknown as [string, string, string, string]
      if (kind === "TYPE") {
        assert.include(["counter", "gauge", "histogram", "summary", "untyped"], rest, line)
        assert.isFalse(types.has(name), `one TYPE line per family: ${name}`)
        types.set(name, rest)
        current = name
      } else {
        assert.isFalse(types.has(name), `HELP precedes TYPE and samples: ${name}`)
        help.set(name, rest)
      }
      continue
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    assert.isNotNull(sample, `a sample line: ${JSON.stringify(line)}`)
    const [, name, labelText, value] = sample as unknown as [string, string, string | undefined, string]
    const family = familyOf(name)
    assert.isDefined(family, `${name} has a TYPE line before it`)
    assert.strictEqual(family, current, `${name} follows its own family's TYPE line`)
    const labels: Record<string, string> = {}
    if (labelText !== undefined) {
      const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"(,|$)/y
      let at = 0
      while (at < labelText.length) {
        label.lastIndex = at
        const match = label.exec(labelText)
        assert.isNotNull(match, `labels of ${JSON.stringify(line)}`)
        labels[match![1]!] = match![2]!.replace(/\\(\\|"|n)/g, (_, c: string) => (c === "n" ? "\n" : c))
        at = label.lastIndex
      }
    }
    const number = value === "+Inf" ? Infinity : value === "-Inf" ? -Infinity : Number(value)
    assert.isFalse(Number.isNaN(number) && value !== "NaN", `a number: ${line}`)
    samples.push({ name, labels, value: number })
  }
  const find = (name: string, labels: Record<string, string> = {}) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  return { types, help, samples, find }
}

// A tracer that keeps every span it starts.
class RecordedSpan implements Tracer.Span {
  readonly _tag = "Span"
  readonly spanId: string
  readonly traceId: string
  readonly sampled = true
  status: Tracer.SpanStatus
  readonly attributes = new Map<string, unknown>()
  readonly links: Array<Tracer.SpanLink>
  constructor(
    readonly name: string,
    readonly parent: Option.Option<Tracer.AnySpan>,
    readonly context: Context.Context<never>,
    links: ReadonlyArray<Tracer.SpanLink>,
    startTime: bigint,
    readonly kind: Tracer.SpanKind,
    id: number
  ) {
    this.status = { _tag: "Started", startTime }
    this.spanId = `span${id}`
    this.traceId = parent._tag === "Some" ? parent.value.traceId : `trace${id}`
    this.links = [...links]
  }
  end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
    this.status = { _tag: "Ended", startTime: this.status.startTime, endTime, exit }
  }
  attribute(key: string, value: unknown): void {
    this.attributes.set(key, value)
  }
  event(): void {}
  addLinks(links: ReadonlyArray<Tracer.SpanLink>): void {
    this.links.push(...links)
  }
}
const recordingTracer = () => {
  const spans: Array<RecordedSpan> = []
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind) => {
      const span = new RecordedSpan(name, parent, context, links, startTime, kind, spans.length)
      spans.push(span)
      return span
    },
    context: (f) => f()
  })
  return { spans, tracer }
}
const ours = (spans: ReadonlyArray<RecordedSpan>) => spans.filter((span) => span.name.startsWith("saacms."))

describe("metrics of the core", () => {
  it("Hub's metrics are the same as Metrics'", () => {
    assert.strictEqual(Hub.subscribersGauge, Metrics.subscribers)
    assert.strictEqual(Hub.slowSubscribers, Metrics.slowSubscribers)
  })

  it.scoped("subscribers and active records are gauges that follow joins and leaves, and a stopped hub takes its share out", () =>
    Effect.gen(function*() {
      const before = yield* read
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(memory(), scope)
      const realtime = Context.get(context, Realtime.Realtime)
      const a = yield* realtime.open(posts1)
      const b = yield* realtime.open(posts1)
      const c = yield* realtime.open(posts2)
      assert.deepStrictEqual(yield* delta(before), { subscribers: 3, active: 2 })
      a.close()
      yield* Effect.provide(awaitSubscribers(posts1, 1), context)
      assert.deepStrictEqual(yield* delta(before), { subscribers: 2, active: 2 })
      b.close()
      yield* Effect.provide(awaitSubscribers(posts1, 0), context)
      assert.deepStrictEqual(yield* delta(before), { subscribers: 1, active: 1 })
      // Shut down with one subscriber still open: the gauges are back where they were.
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* delta(before), {})
      c.close()
      yield* Effect.yieldNow()
      assert.deepStrictEqual(yield* delta(before), {})
    }))

  it.scoped("a publish counts once; each frame handed to a subscriber counts once; the histogram times each frame once", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const subscribers = [yield* realtime.open(posts1), yield* realtime.open(posts1)].map(mailbox)
      yield* Effect.forEach(subscribers, take) // the openings
      const before = yield* read
      // Five in one turn (handed out as one run), then three more one turn each.
      for (let n = 0; n < 5; n++) yield* realtime.publish(changed("1", n))
      yield* nextTurn
      for (let n = 5; n < 8; n++) {
        yield* realtime.publish(changed("1", n))
        yield* nextTurn
      }
      // Nobody watches posts/2: published, not delivered, not timed.
      yield* realtime.publish(changed("2", 0))
      yield* nextTurn
      assert.deepStrictEqual(yield* delta(before), { published: 9, delivered: 16, latency: 8 })
      assert.deepStrictEqual(yield* Effect.forEach(subscribers, take), [8, 8])

      // The plain call (the PluginDef's path) counts the same.
      const unsafe = yield* read
      for (let n = 0; n < 4; n++) realtime.unsafePublish!(changed("1", 100 + n))
      yield* nextTurn
      assert.deepStrictEqual(yield* delta(unsafe), { published: 4, delivered: 8, latency: 4 })
    }).pipe(Effect.provide(memory())))

  it.scopedLive("the latency histogram holds each frame's time from publish to the end of its flush", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      yield* realtime.open(posts1)
      const before = Metrics.publishLatency.unsafeValue([])
      for (let n = 0; n < 10; n++) yield* realtime.publish(changed("1", n))
      yield* nextTurn
      const after = Metrics.publishLatency.unsafeValue([])
      assert.strictEqual(after.count - before.count, 10)
      assert.isAbove(after.sum - before.sum, 0)
      // Within a turn: far below a second, each.
      assert.isBelow((after.sum - before.sum) / 10, 1000)
      // Cumulative buckets, ending with +Inf at the count.
      const counts = after.buckets.map(([, count]) => count)
      assert.deepStrictEqual(counts, [...counts].sort((x, y) => x - y))
      assert.deepStrictEqual(after.buckets[after.buckets.length - 1], [Infinity, after.count])
      assert.strictEqual(after.buckets[0]![0], 0.1)
    }).pipe(Effect.provide(memory())))

  it.scoped("a subscriber too slow for its bound counts once as slow, then one replay per history read", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const subscriber = mailbox(yield* realtime.open(posts1))
      yield* take(subscriber)
      const before = yield* read
      // Room for 4 frames: the 5th puts it behind.
      for (let n = 0; n < 10; n++) yield* realtime.publish(changed("1", n))
      yield* nextTurn
      assert.deepStrictEqual(yield* delta(before), { published: 10, delivered: 4, slow: 1, latency: 10 })
      // Its client takes 4, the hub reads 5–8 for it (one read), then 9–10 (another).
      assert.strictEqual(yield* takeAll(subscriber, 10), 10)
      assert.deepStrictEqual(yield* delta(before), { published: 10, delivered: 10, slow: 1, replays: 2, latency: 10 })
      // Live again: the next frame is handed on directly.
      yield* realtime.publish(changed("1", 10))
      yield* nextTurn
      assert.strictEqual(yield* take(subscriber), 1)
      assert.deepStrictEqual(yield* delta(before), { published: 11, delivered: 11, slow: 1, replays: 2, latency: 11 })
    }).pipe(Effect.provide(memory({ queueCapacity: 4 }))))

  it.scoped("resyncs: an unknown last event id, and a subscriber behind whose history was dropped", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      yield* realtime.publish(changed("1", 0))
      const before = yield* read
      const resumed = mailbox(yield* realtime.open(posts1, "no-such-id"))
      assert.deepStrictEqual(yield* delta(before), { subscribers: 1, active: 1, resyncs: 1 })
      assert.strictEqual(Sse.parse(resumed.poll() ?? []).filter((e) => e.event === "saacms-resync").length, 1)
      resumed.drained()

      // Room for 2 frames, history of 3: behind after 2 of 10, and 3–7 are gone when it reads on.
      const gone = yield* read
      for (let n = 1; n <= 10; n++) yield* realtime.publish(changed("1", n))
      yield* nextTurn
      assert.strictEqual(yield* take(resumed), 2)
      // The hub reads on for it: the entry after its position is gone.
      let chunks: Array<Uint8Array> | undefined
      for (let i = 0; i < 1000 && chunks === undefined; i++) {
        yield* Effect.yieldNow()
        chunks = resumed.poll()
      }
      assert.deepStrictEqual(Sse.parse(chunks ?? []).map((e) => e.event), ["saacms-resync"])
      assert.deepStrictEqual(yield* delta(gone), { published: 10, delivered: 2, slow: 1, resyncs: 1, latency: 10 })
    }).pipe(Effect.provide(memory({ queueCapacity: 2, retention: { maxEvents: 3 } }))))

  it.scoped("a backend that fails counts each failed call, and refuses what it could not do", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const before = yield* read
      const published = yield* Effect.either(realtime.publish(changed("1", 0)))
      assert.isTrue(published._tag === "Left" && published.left._tag === "Unavailable")
      const opened = yield* Effect.either(realtime.open(posts1))
      assert.isTrue(opened._tag === "Left" && opened.left._tag === "Unavailable")
      // One failed append, one failed retain; nothing published, nobody left subscribed.
      assert.deepStrictEqual(yield* delta(before), { failures: 2 })
    }).pipe(Effect.provide(Realtime.layerOver(Layer.succeed(ReplayBuffer.ReplayBuffer, ReplayBuffer.make(failing))))))
})

const down = new RealtimeError.Unavailable({ reason: "down" })
const failing: ReplayBuffer.Driver = {
  append: () => Effect.fail(down),
  position: () => Effect.fail(down),
  headSeq: () => Effect.fail(down),
  read: () => Effect.fail(down),
  retain: () => Effect.fail(down),
  release: () => Effect.void,
  size: () => Effect.fail(down),
  stats: Effect.succeed({ records: 0, recordsWithHistory: 0, entries: 0, bytes: 0 })
}

describe("the Prometheus exposition", () => {
  it.effect("parses, names each family once, and holds every series with its value", () =>
    Effect.gen(function*() {
      // Something in every metric of ours.
      Metrics.refused("forbidden")
      const escaped = Metric.counter("saacms_realtime_test_escapes", { description: "a \\ back\nslash" }).pipe(
        Metric.tagged("path", "a\\b\"c\nd")
      )
      escaped.unsafeUpdate(2, [])
      const { find, help, types } = parsePrometheus(yield* Metrics.prometheus)
      const expected: Record<string, string> = {
        saacms_realtime_subscribers: "gauge",
        saacms_realtime_active_records: "gauge",
        saacms_realtime_frames_published_total: "counter",
        saacms_realtime_frames_delivered_total: "counter",
        saacms_realtime_replays_served_total: "counter",
        saacms_realtime_resyncs_sent_total: "counter",
        saacms_realtime_slow_subscribers_total: "counter",
        saacms_realtime_refusals_total: "counter",
        saacms_realtime_backend_failures_total: "counter",
        saacms_realtime_publish_latency_ms: "histogram"
      }
      for (const [name, type] of Object.entries(expected)) {
        assert.strictEqual(types.get(name), type, name)
        assert.isDefined(help.get(name), name)
      }
      assert.strictEqual(
        find("saacms_realtime_frames_published_total")[0]?.value,
        Metrics.framesPublished.unsafeValue([]).count
      )
      assert.strictEqual(
        find("saacms_realtime_refusals_total", { reason: "forbidden" })[0]?.value,
        yield* refusalsOf("forbidden")
      )
      // Labels and HELP escaped: the parser reads the value back exactly.
      assert.strictEqual(help.get("saacms_realtime_test_escapes_total"), "a \\\\ back\\nslash")
      assert.deepStrictEqual(find("saacms_realtime_test_escapes_total"), [
        { name: "saacms_realtime_test_escapes_total", labels: { path: "a\\b\"c\nd" }, value: 2 }
      ])
      // The histogram: cumulative buckets ending at +Inf = _count, then _sum and _count.
      const latency = Metrics.publishLatency.unsafeValue([])
      const buckets = find("saacms_realtime_publish_latency_ms_bucket")
      assert.deepStrictEqual(buckets.map((b) => b.labels.le), [
        ...latency.buckets.slice(0, -1).map(([boundary]) => String(boundary)),
        "+Inf"
      ])
      assert.deepStrictEqual(buckets.map((b) => b.value), latency.buckets.map(([, count]) => count))
      assert.strictEqual(buckets[buckets.length - 1]!.value, latency.count)
      assert.strictEqual(find("saacms_realtime_publish_latency_ms_count")[0]?.value, latency.count)
      assert.strictEqual(find("saacms_realtime_publish_latency_ms_sum")[0]?.value, latency.sum)
    }))

  it.effect("the exact text of a counter with labels, a gauge and a histogram", () =>
    Effect.sync(() => {
      const pairs = Metric.unsafeSnapshot().filter((pair) =>
        pair.metricKey.name === "saacms_realtime_test_escapes" || pair.metricKey.name === "saacms_realtime_subscribers"
      )
      const text = Metrics.toPrometheus(pairs)
      const subscribers = Metrics.subscribers.unsafeValue([]).value
      assert.strictEqual(
        text,
        [
          "# HELP saacms_realtime_subscribers Open realtime subscriptions (a multiplexed stream counts once per topic)",
          "# TYPE saacms_realtime_subscribers gauge",
          `saacms_realtime_subscribers ${subscribers}`,
          "# HELP saacms_realtime_test_escapes_total a \\\\ back\\nslash",
          "# TYPE saacms_realtime_test_escapes_total counter",
          "saacms_realtime_test_escapes_total{path=\"a\\\\b\\\"c\\nd\"} 2",
          ""
        ].join("\n")
      )
    }))
})

// The routes on the runtime's server, with GET /metrics, an `authorize` that
// refuses `private` and a tracer that records every span.
const traces = recordingTracer()
const app = Server.layerRealtime({
  routes: Layer.mergeAll(RealtimeHttp.layer, Metrics.layerHttp),
  services: Layer.mergeAll(
    Access.layer({
      authorize: (request) => Effect.succeed(request.collection === "private" ? Access.deny(403) : Access.allow())
    }),
    RealtimeConfig.layer({ maxTopics: 3 }),
    Layer.setTracer(traces.tracer)
  )
})

const get = Server.get
const body = (response: Response) => Effect.promise(() => response.text())

describe(`metrics and spans of the routes (${Server.runtime})`, () => {
  it.scopedLive("refusals by reason, a resync, GET /metrics", () =>
    Effect.gen(function*() {
      const forbidden = yield* refusalsOf("forbidden")
      const invalid = yield* refusalsOf("invalid_resource_key")
      const topics = yield* refusalsOf("too_many_topics")
      const resyncs = Metrics.resyncsSent.unsafeValue([]).count

      const refusedKey = yield* get("/api/saacms/v1/a:b/1/subscribe")
      assert.strictEqual(refusedKey.status, 400)
      assert.strictEqual(JSON.parse(yield* body(refusedKey)).error, "invalid_resource_key")
      const denied = yield* get("/api/saacms/v1/private/1/subscribe")
      assert.strictEqual(denied.status, 403)
      yield* body(denied)
      const deniedMany = yield* get("/api/saacms/v1/subscribe?topic=private/1&topic=private/*")
      assert.strictEqual(deniedMany.status, 403)
      yield* body(deniedMany)
      const tooMany = yield* get("/api/saacms/v1/subscribe?topic=a/1&topic=a/2&topic=a/3&topic=a/4")
      assert.strictEqual(tooMany.status, 400)
      yield* body(tooMany)
      assert.strictEqual((yield* refusalsOf("invalid_resource_key")) - invalid, 1)
      assert.strictEqual((yield* refusalsOf("forbidden")) - forbidden, 2)
      assert.strictEqual((yield* refusalsOf("too_many_topics")) - topics, 1)

      // An id the history does not hold: one resync.
      const resumed = yield* get("/api/saacms/v1/posts/9/subscribe", { "Last-Event-ID": "unknown" })
      const reader = yield* Sse.reader(resumed)
      yield* reader.readUntil(Sse.hasEvents(1))
      assert.strictEqual(Metrics.resyncsSent.unsafeValue([]).count - resyncs, 1)
      yield* reader.cancel

      const metrics = yield* get("/metrics")
      assert.strictEqual(metrics.status, 200)
      assert.strictEqual(metrics.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8")
      const { find } = parsePrometheus(yield* body(metrics))
      assert.strictEqual(
        find("saacms_realtime_refusals_total", { reason: "forbidden" })[0]?.value,
        yield* refusalsOf("forbidden")
      )
      assert.strictEqual(find("saacms_realtime_resyncs_sent_total")[0]?.value, Metrics.resyncsSent.unsafeValue([]).count)
    }).pipe(Effect.provide(app)))

  it.scopedLive("one span per subscribe and per publish, none per frame", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      traces.spans.length = 0

      // A subscribe: one span, ended by the time the response arrives.
      const response = yield* get("/api/saacms/v1/posts/1/subscribe")
      assert.strictEqual(response.status, 200)
      const reader = yield* Sse.reader(response)
      yield* reader.readUntil((received) => received.comments.length > 0)
      const [subscribe, ...others] = ours(traces.spans)
      assert.deepStrictEqual(others, [])
      assert.strictEqual(subscribe?.name, "saacms.realtime.subscribe")
      assert.strictEqual(subscribe?.status._tag, "Ended")
      assert.deepStrictEqual(Object.fromEntries(subscribe!.attributes), {
        "saacms.realtime.key": "posts:1",
        "saacms.realtime.resume": false,
        "saacms.realtime.status": 200
      })
      // Inside the server's request span.
      const parent = subscribe!.parent
      assert.isTrue(parent._tag === "Some" && traces.spans.includes(parent.value as RecordedSpan))

      // A refused subscribe: its status and reason.
      yield* body(yield* get("/api/saacms/v1/private/1/subscribe"))
      const refused = ours(traces.spans).slice(1)
      assert.deepStrictEqual(refused.map((span) => [span.name, Object.fromEntries(span.attributes)]), [[
        "saacms.realtime.subscribe",
        {
          "saacms.realtime.key": "private:1",
          "saacms.realtime.resume": false,
          "saacms.realtime.refusal": "forbidden",
          "saacms.realtime.status": 403
        }
      ]])

      // A multiplexed subscribe: one span with the topic count.
      traces.spans.length = 0
      const many = yield* get("/api/saacms/v1/subscribe?topic=posts/2&topic=pages/*")
      const manyReader = yield* Sse.reader(many)
      yield* manyReader.readUntil(Sse.hasEvents(1))
      assert.deepStrictEqual(ours(traces.spans).map((span) => [span.name, Object.fromEntries(span.attributes)]), [[
        "saacms.realtime.subscribe_many",
        { "saacms.realtime.topics": 2, "saacms.realtime.resume": false, "saacms.realtime.status": 200 }
      ]])
      yield* manyReader.cancel

      // A publish: one span.
      traces.spans.length = 0
      yield* realtime.publish(changed("1", 0))
      assert.deepStrictEqual(traces.spans.map((span) => [span.name, span.status._tag, Object.fromEntries(span.attributes)]), [
        ["saacms.realtime.publish", "Ended", { "saacms.realtime.key": "posts:1", "saacms.realtime.seq": 1 }]
      ])
      yield* reader.readUntil(Sse.hasEvents(1))
      // Inside the caller's span; a refused publish ends its span with the failure.
      traces.spans.length = 0
      yield* Effect.withSpan(realtime.publish(changed("1", -1)), "host.save")
      const [host, nested] = traces.spans
      assert.deepStrictEqual([host?.name, nested?.name], ["host.save", "saacms.realtime.publish"])
      assert.isTrue(nested!.parent._tag === "Some" && nested!.parent.value === host)
      traces.spans.length = 0
      const invalid = yield* Effect.either(realtime.publish({ type: "changed", slug: "-bad", id: "1", record: {} }))
      assert.strictEqual(invalid._tag, "Left")
      const [failed] = traces.spans
      assert.strictEqual(failed?.status._tag, "Ended")
      assert.isTrue(failed?.status._tag === "Ended" && Exit.isFailure(failed.status.exit))
      assert.deepStrictEqual(Object.fromEntries(failed!.attributes), {})
      yield* reader.readUntil(Sse.hasEvents(2))

      // 100 events to the open stream: the 100 publishes' spans, nothing for the frames.
      traces.spans.length = 0
      for (let n = 1; n <= 100; n++) yield* realtime.publish(changed("1", n))
      yield* reader.readUntil(Sse.hasEvents(102))
      yield* Effect.repeatN(nextTurn, 3)
      assert.strictEqual(traces.spans.length, 100)
      assert.isTrue(traces.spans.every((span) => span.name === "saacms.realtime.publish"))
      // And the plain call has none.
      traces.spans.length = 0
      for (let n = 101; n <= 200; n++) realtime.unsafePublish!(changed("1", n))
      yield* reader.readUntil(Sse.hasEvents(202))
      assert.strictEqual(traces.spans.length, 0)
      yield* reader.cancel
      yield* eventually("posts:1 released", Effect.flatMap(Hub.Hub, (hub) => hub.subscriberCount(posts1)), (n) => n === 0)
    }).pipe(Effect.withTracer(traces.tracer), Effect.provide(app)))
})
