/**
 * End to end in a real browser: headless Chromium (Debian's `/usr/bin/chromium`,
 * driven by playwright-core) opens ONE `EventSource` on the multiplexed route
 * `GET /api/saacms/v1/subscribe?topic=…` of the demo host, through a TCP proxy
 * in the test process (`test/utils/proxy.ts`) that can cut every browser
 * connection at will. Records are written over the demo's HTTP API; the page
 * keeps what its `EventSource` delivered, and the test reads it back. Node
 * only (no playwright under Bun).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { chromium, type Page } from "playwright-core"
import * as DemoHost from "../src/bin/DemoHost.js"
import * as RealtimeConfig from "../src/RealtimeConfig.js"
import { eventually } from "./utils/eventually.js"
import { describeExchanges, type Proxy, proxyTo } from "./utils/proxy.js"
import * as Server from "./utils/server.js"

// ---------------------------------------------------------------------------
// The browser and its page.
// ---------------------------------------------------------------------------

interface Received {
  readonly type: string
  readonly data: any
  readonly lastEventId: string
}

interface PageState {
  readonly received: ReadonlyArray<Received>
  readonly opens: number
  readonly errors: number
  /** The `EventSource`'s `readyState`: 0 connecting, 1 open, 2 closed (it gave up). */
  readonly readyState: number
}

const eventTypes = ["saacms-welcome", "changed", "deleted", "snapshot", "saacms-resync", "message"]

// The page: one `EventSource` on `url`, every event it delivers kept in
// `window.received` (data parsed as JSON), `open` and `error` counted.
const pageHtml = (url: string) =>
  `<!doctype html>
<meta charset="utf-8">
<title>saacms realtime</title>
<script>
  window.received = []
  window.opens = 0
  window.errors = 0
  const source = window.source = new EventSource(${JSON.stringify(url)})
  source.addEventListener("open", () => { window.opens++ })
  source.addEventListener("error", () => { window.errors++ })
  for (const type of ${JSON.stringify(eventTypes)}) {
    source.addEventListener(type, (e) => {
      let data
      try { data = JSON.parse(e.data) } catch { data = e.data }
      window.received.push({ type: e.type, data, lastEventId: e.lastEventId })
    })
  }
</script>
`

const readState = (page: Page) =>
  Effect.promise(() =>
    page.evaluate((): PageState => {
      const w = window as unknown as PageState & { readonly source: EventSource }
      return { received: w.received, opens: w.opens, errors: w.errors, readyState: w.source.readyState }
    })
  )

/** What `waitFor` polls: cheap to read, short in a failure message. */
interface Counts {
  readonly opens: number
  readonly errors: number
  readonly readyState: number
  /** Events received so far, by type. */
  readonly types: Readonly<Record<string, number>>
}

const readCounts = (page: Page) =>
  Effect.promise(() =>
    page.evaluate((): Counts => {
      const w = window as unknown as PageState & { readonly source: EventSource }
      const types: Record<string, number> = {}
      for (const event of w.received) types[event.type] = (types[event.type] ?? 0) + 1
      return { opens: w.opens, errors: w.errors, readyState: w.source.readyState, types }
    })
  )

/** Launch Chromium, serve the page from the proxy's origin and open it; closed with the scope. */
const openPage = (proxy: Proxy, url: string) =>
  Effect.gen(function*() {
    const browser = yield* Effect.acquireRelease(
      Effect.promise(() => chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] })),
      (browser) => Effect.promise(() => browser.close())
    )
    const page = yield* Effect.promise(() => browser.newPage())
    // Only the page itself is intercepted: same origin as the proxy, so its
    // `EventSource` and `fetch` go through the proxy to the server.
    yield* Effect.promise(() =>
      page.route(`${proxy.origin}/__page`, (route) => route.fulfill({ contentType: "text/html", body: pageHtml(url) }))
    )
    yield* Effect.promise(() => page.goto(`${proxy.origin}/__page`))
    return page
  })

/**
 * Poll the page's counts until `predicate` holds (500 polls, some 5-10 s); fails at once
 * if the `EventSource` gave up (readyState CLOSED: an HTTP error or a wrong
 * content type, which it does not retry). Failures name the HTTP exchanges.
 */
const waitFor = (label: string, page: Page, proxy: Proxy, predicate: (counts: Counts) => boolean) =>
  eventually(
    label,
    Effect.flatMap(readCounts(page), (counts) =>
      counts.readyState === 2
        ? Effect.dieMessage(`${label}: the EventSource closed; HTTP: ${describeExchanges(proxy)}`)
        : Effect.succeed(counts)),
    predicate
  ).pipe(Effect.mapError((error) => new Error(`${error.message}; HTTP: ${describeExchanges(proxy)}`)))

const count = (counts: Counts, type: string) => counts.types[type] ?? 0

// ---------------------------------------------------------------------------

const collection = "posts"
const ids = Array.from({ length: 20 }, (_, i) => `r${i + 1}`)
const topics = ids.map((id) => `${collection}/${id}`)
const subscribePath = `/api/saacms/v1/subscribe?${topics.map((topic) => `topic=${topic}`).join("&")}`

const put = (base: string, id: string, body: unknown) =>
  Effect.tryPromise(() =>
    fetch(`${base}/api/saacms/v1/${collection}/${id}`, { method: "PUT", body: JSON.stringify(body) })
      .then(async (response) => ({ status: response.status, text: await response.text() }))
  ).pipe(
    Effect.orDie,
    Effect.flatMap((response) =>
      response.status === 200
        ? Effect.void
        : Effect.dieMessage(`PUT ${id}: ${response.status} ${response.text}`))
  )

/** Write `posts/:id` as `{ n }` for each n of `ns` in order, records concurrently. */
const putAll = (base: string, ns: ReadonlyArray<number>) =>
  Effect.forEach(ids, (id) => Effect.forEach(ns, (n) => put(base, id, { n }), { discard: true }), {
    concurrency: "unbounded",
    discard: true
  })

const welcomes = (state: PageState) => state.received.filter((event) => event.type === "saacms-welcome")
const changed = (state: PageState) => state.received.filter((event) => event.type === "changed")

/** The topic → status map of a welcome's data. */
const statuses = (welcome: Received | undefined): Record<string, string> =>
  Object.fromEntries(
    ((welcome?.data?.topics ?? []) as Array<{ topic: string; status: string }>).map(({ status, topic }) => [
      topic,
      status
    ])
  )

const allTopics = (status: string) => Object.fromEntries(topics.map((topic) => [topic, status]))

/** Per record, the `n` of its `changed` events in arrival order (checking each event's shape). */
const sequences = (events: ReadonlyArray<Received>): Record<string, Array<number>> => {
  const out: Record<string, Array<number>> = Object.fromEntries(ids.map((id) => [id, []]))
  for (const event of events) {
    assert.strictEqual(event.data.collection, collection)
    assert.include(ids, event.data.id)
    assert.isString(event.data.etag)
    assert.match(event.lastEventId, /^[A-Za-z0-9_-]+$/, "the cursor is base64url")
    out[event.data.id]!.push(event.data.record.n)
  }
  return out
}

describe.skipIf(Server.isBun)(`EventSource in Chromium on the multiplexed subscribe route (${Server.runtime})`, () => {
  // The demo host as EventSource.test.ts runs it, with a short, fixed client
  // retry so that a cut browser comes back quickly.
  const Demo = DemoHost.layer.pipe(
    Layer.provide(RealtimeConfig.layer({ retryMs: 300, retryJitterMs: 0 })),
    Layer.provideMerge(Server.layerTest),
    Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
  )

  const setup = Effect.gen(function*() {
    const base = yield* Server.baseUrl
    const proxy = yield* proxyTo(base)
    const page = yield* openPage(proxy, subscribePath)
    const subscribes = () => proxy.exchanges.filter((e) => e.request.startsWith("GET /api/saacms/v1/subscribe?"))
    return { base, proxy, page, subscribes }
  })

  it.live("watches 20 records over one stream and receives every event", () =>
    Effect.gen(function*() {
      const { base, page, proxy, subscribes } = yield* setup
      yield* waitFor("welcome", page, proxy, (counts) => count(counts, "saacms-welcome") >= 1)
      const welcome = welcomes(yield* readState(page))[0]!
      assert.deepStrictEqual(statuses(welcome), allTopics("fresh"))
      assert.match(welcome.lastEventId, /^[A-Za-z0-9_-]+$/, "the welcome carries the cursor")

      yield* putAll(base, [1, 2, 3])
      yield* waitFor("60 changed", page, proxy, (counts) => count(counts, "changed") >= 60)
      // Time for a stray extra event to show up before counting.
      yield* Effect.sleep("200 millis")
      const final = yield* readState(page)
      assert.deepStrictEqual(sequences(changed(final)), Object.fromEntries(ids.map((id) => [id, [1, 2, 3]])))
      assert.deepStrictEqual(final.received.map((event) => event.type), [
        "saacms-welcome",
        ...Array.from({ length: 60 }, () => "changed")
      ])

      // One stream for all 20 records: the page's other requests still get a connection.
      const fetched = yield* Effect.promise(() =>
        page.evaluate(async () => {
          const response = await fetch("/api/saacms/v1/posts/r1")
          return { status: response.status, body: await response.json() }
        })
      )
      assert.deepStrictEqual(fetched, { status: 200, body: { n: 3 } })
      const after = yield* readState(page)
      assert.strictEqual(after.readyState, 1, "the stream is still open")
      assert.strictEqual(after.opens, 1)
      assert.strictEqual(after.errors, 0)
      assert.strictEqual(subscribes().length, 1, describeExchanges(proxy))
    }).pipe(Effect.scoped, Effect.provide(Demo)))

  it.live("receives what was published while it was reconnecting", () =>
    Effect.gen(function*() {
      const { base, page, proxy, subscribes } = yield* setup
      yield* waitFor("welcome", page, proxy, (counts) => count(counts, "saacms-welcome") >= 1)
      yield* putAll(base, [1])
      yield* waitFor("20 changed", page, proxy, (counts) => count(counts, "changed") >= 20)
      const lastSeen = (yield* readState(page)).received.at(-1)!.lastEventId

      // Cut every browser connection, and write while the browser is away: its
      // reconnection (after `retry:`, 300 ms) waits in the proxy until then.
      proxy.hold()
      proxy.cut()
      yield* putAll(base, [2, 3])
      yield* eventually("the browser tries to reconnect", Effect.sync(proxy.waiting), (n) => n >= 1)
      proxy.release()

      yield* waitFor(
        "a second welcome, then all 60 changed",
        page,
        proxy,
        (counts) => count(counts, "saacms-welcome") >= 2 && count(counts, "changed") >= 60
      )
      yield* Effect.sleep("200 millis")
      const final = yield* readState(page)
      assert.deepStrictEqual(final.received.filter((event) => event.type === "saacms-resync"), [])
      // Every record's full sequence, once each and in order: no gap, no duplicate.
      assert.deepStrictEqual(sequences(changed(final)), Object.fromEntries(ids.map((id) => [id, [1, 2, 3]])))
      // The new stream starts with its welcome, every topic resumed.
      assert.deepStrictEqual(final.received.map((event) => event.type), [
        "saacms-welcome",
        ...Array.from({ length: 20 }, () => "changed"),
        "saacms-welcome",
        ...Array.from({ length: 40 }, () => "changed")
      ])
      assert.deepStrictEqual(statuses(welcomes(final)[1]), allTopics("resumed"))
      assert.strictEqual(final.opens, 2)
      assert.strictEqual(final.readyState, 1)

      // The browser came back by itself, sending the cursor of the last event it had.
      const requests = subscribes()
      assert.strictEqual(requests.length, 2, describeExchanges(proxy))
      assert.strictEqual(requests[0]!.lastEventId, undefined)
      assert.strictEqual(requests[1]!.lastEventId, lastSeen)
    }).pipe(Effect.scoped, Effect.provide(Demo)))
})
