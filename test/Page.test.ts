/**
 * The demo host's page (`src/bin/Page.ts`) in headless Chromium: two pages
 * (two browser contexts) on the demo's origin, through the TCP proxy of
 * `test/utils/proxy.ts`. An edit saved in one shows in the other, as does a
 * record written over the HTTP API; unsaved edits are kept and flagged; a cut
 * stream resumes, and the page lists exactly what it missed meanwhile. The
 * test drives and reads the page through its DOM only. Node only (no
 * playwright under Bun).
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { type Browser, chromium, type Page } from "playwright-core"
import * as DemoHost from "../src/bin/DemoHost.js"
import * as DemoPage from "../src/bin/Page.js"
import * as Realtime from "../src/Realtime.js"
import * as RealtimeConfig from "../src/RealtimeConfig.js"
import * as RealtimeHttp from "../src/RealtimeHttp.js"
import { eventually } from "./utils/eventually.js"
import { describeExchanges, type Proxy, proxyTo } from "./utils/proxy.js"
import * as Server from "./utils/server.js"

// ---------------------------------------------------------------------------
// The page as the test sees it: read from the DOM.
// ---------------------------------------------------------------------------

interface View {
  /** The connection state shown in the header. */
  readonly state: string
  /** Record ids in the list, in its order. */
  readonly ids: ReadonlyArray<string>
  /** Each listed record's preview (its JSON). */
  readonly previews: Readonly<Record<string, string>>
  /** `posts/<id>` open in the editor, or "". */
  readonly editing: string
  readonly editor: string
  readonly dirty: boolean
  /** The notice's text while it is shown. */
  readonly notice: string | undefined
  readonly status: string
  readonly caughtUp: {
    readonly state: string | undefined
    readonly summary: string
    readonly events: ReadonlyArray<{ readonly type: string; readonly id: string; readonly etag: string }>
  }
  /** The event log, oldest first, without the time of day. */
  readonly log: ReadonlyArray<string>
  /** `<img>` elements in the document (a record's markup must stay text). */
  readonly images: number
  readonly title: string
}

const readView = (page: Page) =>
  Effect.promise(() =>
    page.evaluate((): View => {
      const text = (selector: string) => document.querySelector(selector)?.textContent ?? ""
      const items = (selector: string) => Array.from(document.querySelectorAll<HTMLElement>(selector))
      const notice = document.querySelector<HTMLElement>("#notice")!
      return {
        state: text("#state"),
        ids: items("#records li").map((li) => li.dataset.id ?? ""),
        previews: Object.fromEntries(
          items("#records li").map((li) => [li.dataset.id, li.querySelector("span")?.textContent ?? ""])
        ),
        editing: text("#editing"),
        editor: document.querySelector<HTMLTextAreaElement>("#editor")!.value,
        dirty: !document.querySelector<HTMLElement>("#dirty")!.hidden,
        notice: notice.hidden ? undefined : text("#notice-text"),
        status: text("#status"),
        caughtUp: {
          state: document.querySelector<HTMLElement>("#caught-up")!.dataset.state,
          summary: text("#caught-up-summary"),
          events: items("#caught-up li").map((li) => ({
            type: li.dataset.type ?? "",
            id: li.dataset.id ?? "",
            etag: li.dataset.etag ?? ""
          }))
        },
        log: items("#log li").map((li) => (li.textContent ?? "").slice(9)).reverse(),
        images: document.images.length,
        title: document.title
      }
    })
  )

/** Poll the page's view until `predicate` holds; failures name the proxy's HTTP exchanges. */
const waitFor = (label: string, page: Page, proxy: Proxy, predicate: (view: View) => boolean) =>
  eventually(label, readView(page), predicate).pipe(
    Effect.mapError((error) => new Error(`${error.message}; HTTP: ${describeExchanges(proxy)}`))
  )

/** The record events of the log (`changed posts/1`), oldest first. */
const recordEvents = (view: View) =>
  view.log.flatMap((line) => {
    const match = /^(changed|snapshot|deleted) (\S+)/.exec(line)
    return match === null ? [] : [`${match[1]} ${match[2]}`]
  })

const pretty = (record: unknown) => JSON.stringify(record, null, 2)
const compact = (record: unknown) => JSON.stringify(record)

// ---------------------------------------------------------------------------
// The server side: the demo's routes plus the page's, and its HTTP API.
// ---------------------------------------------------------------------------

const request = (method: string, url: string, body?: unknown) =>
  Effect.promise(async () => {
    const response = await fetch(url, body === undefined ? { method } : { method, body: JSON.stringify(body) })
    return { status: response.status, headers: response.headers, text: await response.text() }
  })

/** `PUT /api/saacms/v1/posts/:id` (as `curl -X PUT` would); its ETag. */
const put = (base: string, id: string, record: unknown, collection = "posts") =>
  Effect.flatMap(request("PUT", `${base}/api/saacms/v1/${collection}/${id}`, record), (response) =>
    response.status === 200
      ? Effect.succeed(response.headers.get("etag")!)
      : Effect.dieMessage(`PUT ${id}: ${response.status} ${response.text}`))

const del = (base: string, id: string) =>
  Effect.flatMap(request("DELETE", `${base}/api/saacms/v1/posts/${id}`), (response) =>
    response.status === 204 ? Effect.void : Effect.dieMessage(`DELETE ${id}: ${response.status} ${response.text}`))

const get = (base: string, id: string) =>
  Effect.map(request("GET", `${base}/api/saacms/v1/posts/${id}`), (response) => JSON.parse(response.text))

/** Launch Chromium, closed with the scope. */
const launch = Effect.acquireRelease(
  Effect.promise(() => chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] })),
  (browser) => Effect.promise(() => browser.close())
)

/** A page of its own (its own context: its own connections) on `url`. */
const open = (browser: Browser, url: string) =>
  Effect.promise(async () => {
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } })
    const page = await context.newPage()
    await page.goto(url)
    return page
  })

const click = (page: Page, selector: string) => Effect.promise(() => page.click(selector))
const fill = (page: Page, selector: string, value: string) => Effect.promise(() => page.fill(selector, value))

describe.skipIf(Server.isBun)(`the demo page in Chromium (${Server.runtime})`, () => {
  // What `DemoHost.make` serves (the page's routes among them); a short, fixed
  // client retry so that a cut browser comes back quickly.
  const demo = (options: RealtimeConfig.Options = {}) =>
    HttpLayerRouter.serve(DemoHost.routes, {
      routerConfig: RealtimeHttp.routerConfig
    }).pipe(
      Layer.provide(Layer.merge(DemoHost.RecordStore.Default, Realtime.layerMemory)),
      Layer.provide(RealtimeConfig.layer({ retryMs: 300, retryJitterMs: 0, ...options })),
      Layer.provideMerge(Server.layerTest),
      Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
    )
  const Demo = demo()

  it.live("serves the page, and the records of one collection as JSON", () =>
    Effect.gen(function*() {
      const base = yield* Server.baseUrl
      const root = yield* request("GET", `${base}/`)
      assert.strictEqual(root.status, 200)
      assert.strictEqual(root.headers.get("content-type"), "text/html; charset=utf-8")
      assert.strictEqual(root.headers.get("cache-control"), "no-cache")
      assert.match(root.headers.get("content-security-policy") ?? "", /default-src 'none'; script-src 'sha256-/)
      assert.strictEqual(root.text, DemoPage.html)

      const empty = yield* request("GET", `${base}/api/demo/records?collection=posts`)
      assert.deepStrictEqual([empty.status, JSON.parse(empty.text)], [200, []])
      const etag2 = yield* put(base, "2", { title: "Two" })
      const etag10 = yield* put(base, "10", { title: "Ten", tags: ["a"] })
      yield* put(base, "home", { title: "Not a post" }, "pages")
      const list = yield* request("GET", `${base}/api/demo/records?collection=posts`)
      assert.strictEqual(list.status, 200)
      assert.strictEqual(list.headers.get("content-type"), "application/json")
      assert.strictEqual(list.headers.get("cache-control"), "no-store")
      assert.deepStrictEqual(JSON.parse(list.text), [
        { collection: "posts", id: "10", etag: etag10, record: { title: "Ten", tags: ["a"] } },
        { collection: "posts", id: "2", etag: etag2, record: { title: "Two" } }
      ])
      for (const query of ["", "?collection=", "?collection=no:pe", "?collection=a&collection=b"]) {
        const refused = yield* request("GET", `${base}/api/demo/records${query}`)
        assert.strictEqual(refused.status, 400, query)
        assert.strictEqual(JSON.parse(refused.text).error, "invalid_resource_key", query)
      }
    }).pipe(Effect.provide(Demo)))

  it.live("keeps two pages in step: edits saved in one, records written over HTTP, unsaved edits kept", () =>
    Effect.gen(function*() {
      const base = yield* Server.baseUrl
      yield* put(base, "1", { title: "First post" })
      yield* put(base, "2", { title: "Second post" })
      yield* put(base, "home", { title: "Not a post" }, "pages")
      const proxy = yield* proxyTo(base)
      const browser = yield* launch
      const a = yield* open(browser, `${proxy.origin}/`)
      const b = yield* open(browser, `${proxy.origin}/`)
      for (const page of [a, b]) {
        yield* waitFor("live, with the posts listed", page, proxy, (v) => v.state === "live" && v.ids.join() === "1,2")
        yield* click(page, `#records li[data-id="1"] button`)
        yield* waitFor("post 1 in the editor", page, proxy, (v) => v.editor === pretty({ title: "First post" }))
      }

      // Saved in A: B's list and (clean) editor follow.
      const edited = { title: "First post, edited in A" }
      yield* fill(a, "#editor", compact(edited))
      assert.isTrue((yield* readView(a)).dirty)
      yield* click(a, "#save")
      yield* waitFor("B shows A's edit", b, proxy, (v) => v.editor === pretty(edited) && v.previews["1"] === compact(edited))
      const savedA = yield* waitFor("A saved", a, proxy, (v) => v.status.startsWith("saved \"") && !v.dirty)
      assert.strictEqual(savedA.editor, pretty(edited), "A's editor holds the record as stored")
      assert.deepStrictEqual(yield* get(base, "1"), edited)

      // Unsaved edits in B survive a change from elsewhere, with a notice.
      const draft = compact({ title: "B's draft" })
      yield* fill(b, "#editor", draft)
      const fromCurl = { title: "From curl" }
      yield* put(base, "1", fromCurl)
      yield* waitFor("A (clean) takes the change", a, proxy, (v) => v.editor === pretty(fromCurl))
      const flagged = yield* waitFor("B flags the change", b, proxy, (v) => v.notice !== undefined)
      assert.strictEqual(flagged.editor, draft)
      assert.isTrue(flagged.dirty)
      assert.match(flagged.notice!, /^1 changed elsewhere while you were editing/)
      assert.strictEqual(flagged.previews["1"], compact(fromCurl))
      yield* click(b, "#reload")
      const reloaded = yield* readView(b)
      assert.deepStrictEqual([reloaded.editor, reloaded.dirty, reloaded.notice], [pretty(fromCurl), false, undefined])

      // A record created over HTTP shows in both, its markup as text.
      const markup = { title: `<img src=x onerror="document.title='pwned'">` }
      yield* put(base, "3", markup)
      for (const page of [a, b]) {
        const view = yield* waitFor("post 3 listed", page, proxy, (v) => v.ids.join() === "1,2,3")
        assert.strictEqual(view.previews["3"], compact(markup))
        assert.strictEqual(view.images, 0)
        assert.strictEqual(view.title, "saacms realtime: posts")
      }

      // A new record from A's form; deleted from B's editor.
      yield* fill(a, "#new-id", "4")
      yield* click(a, "#new button")
      const fresh = yield* readView(a)
      assert.deepStrictEqual([fresh.editing, fresh.dirty], ["posts/4", true])
      yield* fill(a, "#editor", compact({ title: "Fourth" }))
      yield* click(a, "#save")
      yield* waitFor("B lists post 4", b, proxy, (v) => v.ids.join() === "1,2,3,4")
      yield* click(b, `#records li[data-id="2"] button`)
      yield* click(b, "#delete")
      for (const page of [a, b]) yield* waitFor("post 2 gone", page, proxy, (v) => v.ids.join() === "1,3,4")
      const closed = yield* readView(b)
      assert.deepStrictEqual([closed.editing, closed.editor, closed.status], ["", "", "deleted 2"])

      // Each page got every change once, over one stream that never dropped.
      const expected = ["changed posts/1", "changed posts/1", "changed posts/3", "changed posts/4", "deleted posts/2"]
      for (const page of [a, b]) {
        const view = yield* readView(page)
        assert.deepStrictEqual(recordEvents(view), expected)
        assert.deepStrictEqual(view.log.filter((line) => !expected.some((e) => line.startsWith(e))), [
          "stream open",
          "welcome: posts/* fresh",
          "refetching the list (fresh)"
        ])
      }
      const subscribes = proxy.exchanges.filter((e) => e.request.startsWith("GET /api/saacms/v1/subscribe?"))
      assert.deepStrictEqual(
        subscribes.map((e) => [e.request, e.status]),
        [0, 1].map(() => ["GET /api/saacms/v1/subscribe?topic=posts%2F* HTTP/1.1", 200]),
        describeExchanges(proxy)
      )
    }).pipe(Effect.scoped, Effect.provide(Demo)))

  it.live("resumes after the stream is cut, and lists exactly what it missed", () =>
    Effect.gen(function*() {
      const base = yield* Server.baseUrl
      yield* put(base, "1", { title: "One" })
      yield* put(base, "2", { title: "Two" })
      yield* put(base, "3", { title: "Three" })
      const proxy = yield* proxyTo(base)
      const browser = yield* launch
      const a = yield* open(browser, `${proxy.origin}/`)
      const b = yield* open(browser, `${proxy.origin}/`)
      for (const page of [a, b]) {
        const view = yield* waitFor("live", page, proxy, (v) => v.state === "live" && v.ids.join() === "1,2,3")
        assert.deepStrictEqual(view.caughtUp, { state: undefined, summary: "no reconnect yet", events: [] })
      }
      yield* click(a, `#records li[data-id="1"] button`)

      // Cut every connection and write while the pages are away: their
      // reconnections (after `retry:`, 300 ms) wait in the proxy until then.
      proxy.hold()
      proxy.cut()
      for (const page of [a, b]) yield* waitFor("reconnecting", page, proxy, (v) => v.state === "reconnecting")
      const away1 = yield* put(base, "1", { title: "One, while away" })
      const away4 = yield* put(base, "4", { title: "Four, while away" })
      yield* del(base, "2")
      // The same content again: the same etag, an event that changes nothing.
      yield* put(base, "3", { title: "Three" })
      const twice1 = yield* put(base, "1", { title: "One, twice" })
      const missed = [
        { type: "changed", id: "1", etag: away1 },
        { type: "changed", id: "4", etag: away4 },
        { type: "deleted", id: "2", etag: "" },
        { type: "changed", id: "1", etag: twice1 }
      ]
      yield* eventually("both pages try to reconnect", Effect.sync(proxy.waiting), (n) => n >= 2)
      assert.strictEqual((yield* readView(a)).state, "reconnecting", "still away while held")
      proxy.release()

      for (const page of [a, b]) {
        const view = yield* waitFor("caught up", page, proxy, (v) => v.caughtUp.state === "done")
        assert.strictEqual(view.state, "live")
        assert.deepStrictEqual(view.caughtUp.events, missed)
        assert.match(view.caughtUp.summary, /^reconnected at \d\d:\d\d:\d\d: 4 changes missed while away$/)
        assert.deepStrictEqual(view.ids, ["1", "3", "4"])
        assert.deepStrictEqual(view.log.filter((line) => /^(stream|welcome)/.test(line)), [
          "stream open",
          "welcome: posts/* fresh",
          "stream lost: reconnecting",
          "stream open",
          "welcome: posts/* resumed"
        ])
      }
      assert.strictEqual((yield* readView(a)).editor, pretty({ title: "One, twice" }), "A's open record caught up")

      // A change after the catch-up is live, not "missed".
      yield* put(base, "3", { title: "Three, live" })
      for (const page of [a, b]) {
        const view = yield* waitFor("live change", page, proxy, (v) => v.previews["3"] === compact({ title: "Three, live" }))
        assert.deepStrictEqual(view.caughtUp.events, missed)
        assert.deepStrictEqual(recordEvents(view), [
          "changed posts/1",
          "changed posts/4",
          "deleted posts/2",
          "changed posts/3",
          "changed posts/1",
          "changed posts/3"
        ])
        assert.deepStrictEqual(view.log.filter((line) => line.endsWith("(already had it)")), [
          `changed posts/3 ${compact({ title: "Three" })} (already had it)`
        ])
      }

      // Each page came back by itself with the cursor of the last event it had.
      const subscribes = proxy.exchanges.filter((e) => e.request.startsWith("GET /api/saacms/v1/subscribe?"))
      assert.strictEqual(subscribes.length, 4, describeExchanges(proxy))
      assert.deepStrictEqual(subscribes.map((e) => e.lastEventId === undefined), [true, true, false, false])
    }).pipe(Effect.scoped, Effect.provide(Demo)))

  it.live("refetches the list and says \"resynced\" when what it missed is no longer in the history", () =>
    Effect.gen(function*() {
      const base = yield* Server.baseUrl
      yield* put(base, "1", { title: "One" })
      yield* put(base, "2", { title: "Two" })
      const proxy = yield* proxyTo(base)
      const browser = yield* launch
      const page = yield* open(browser, `${proxy.origin}/`)
      yield* waitFor("live", page, proxy, (v) => v.state === "live" && v.ids.join() === "1,2")
      yield* put(base, "1", { title: "One, live" })
      yield* waitFor("a live change", page, proxy, (v) => v.previews["1"] === compact({ title: "One, live" }))

      // Three changes while away, and the collection's history keeps two.
      proxy.hold()
      proxy.cut()
      yield* waitFor("reconnecting", page, proxy, (v) => v.state === "reconnecting")
      yield* put(base, "3", { title: "Three" })
      yield* put(base, "4", { title: "Four" })
      yield* put(base, "1", { title: "One, while away" })
      yield* eventually("the page tries to reconnect", Effect.sync(proxy.waiting), (n) => n >= 1)
      proxy.release()

      const view = yield* waitFor("resynced", page, proxy, (v) => v.state === "resynced")
      assert.deepStrictEqual(view.ids, ["1", "2", "3", "4"])
      assert.strictEqual(view.previews["1"], compact({ title: "One, while away" }))
      assert.strictEqual(view.caughtUp.state, "refetched")
      assert.deepStrictEqual(view.caughtUp.events, [])
      assert.match(
        view.caughtUp.summary,
        /^\d\d:\d\d:\d\d: the history was gone \(buffer-miss\), so the list was refetched$/
      )
      assert.deepStrictEqual(view.log.slice(-5), [
        "stream lost: reconnecting",
        "stream open",
        "welcome: posts/* resync",
        "resync: buffer-miss",
        "refetching the list (buffer-miss)"
      ])
      const subscribes = proxy.exchanges.filter((e) => e.request.startsWith("GET /api/saacms/v1/subscribe?"))
      assert.deepStrictEqual(subscribes.map((e) => e.lastEventId === undefined), [true, false])
    }).pipe(Effect.scoped, Effect.provide(demo({ retention: { maxEvents: 2 } }))))

  it.live("keeps a change that arrives while the list is being fetched", () =>
    Effect.gen(function*() {
      const base = yield* Server.baseUrl
      yield* put(base, "1", { title: "One" })
      const proxy = yield* proxyTo(base)
      const browser = yield* launch
      const context = yield* Effect.promise(() => browser.newContext())
      const page = yield* Effect.promise(() => context.newPage())
      // The page's first list: fetched from the server at once, handed to the
      // page only once the page has the stream's event for a later change.
      let fetched = false
      let deliver: () => void = () => {}
      yield* Effect.promise(() =>
        page.route("**/api/demo/records?*", async (route) => {
          const response = await route.fetch()
          fetched = true
          await new Promise<void>((resolve) => deliver = resolve)
          await route.fulfill({ response })
        })
      )
      yield* Effect.promise(() => page.goto(`${proxy.origin}/`))
      yield* eventually("the list fetched", Effect.sync(() => fetched), (done) => done)
      yield* put(base, "1", { title: "One, newer than the list" })
      const before = yield* waitFor("the event", page, proxy, (v) => recordEvents(v).length === 1)
      assert.strictEqual(before.state, "connecting")
      deliver()
      const view = yield* waitFor("live", page, proxy, (v) => v.state === "live")
      assert.deepStrictEqual(view.ids, ["1"])
      assert.strictEqual(view.previews["1"], compact({ title: "One, newer than the list" }))
    }).pipe(Effect.scoped, Effect.provide(Demo)))
})
