/**
 * The typed client in real Chromium (Debian's `/usr/bin/chromium` through
 * playwright-core): `src/Client.ts` bundled for the browser with esbuild and
 * loaded by a page that subscribes with its callback face, sending an
 * `Authorization` header (which `EventSource` cannot). A TCP proxy between
 * the page and the server cuts the connection; the client comes back by
 * itself with the last cursor and the page gets every event once, in order.
 * Node only (no playwright under Bun).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { chromium } from "playwright-core"
import * as Access from "../src/Access.js"
import * as Realtime from "../src/Realtime.js"
import * as RealtimeConfig from "../src/RealtimeConfig.js"
import { eventually } from "./utils/eventually.js"
import { describeExchanges, proxyTo } from "./utils/proxy.js"
import * as Server from "./utils/server.js"

const App = Server.layerRealtime({
  services: Layer.mergeAll(
    RealtimeConfig.layer({ retryMs: 300, retryJitterMs: 0 }),
    Access.layer({
      authorize: (request) =>
        Effect.succeed(request.headers.get("authorization") === "Bearer page" ? Access.allow() : Access.deny(401))
    })
  )
})

// The client as a browser module, bundled from the sources.
const bundle = Effect.promise(async () => {
  const esbuild = await import("esbuild")
  const result = await esbuild.build({
    entryPoints: [new URL("../src/Client.ts", import.meta.url).pathname],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "silent"
  })
  return result.outputFiles[0]!.text
})

const page = `<!doctype html><meta charset="utf-8"><title>client</title>
<script type="module">
  import { connect } from "/__client.js"
  window.got = []
  window.states = []
  window.errors = []
  window.subscription = connect(["posts/1", "posts/*"], {
    headers: () => ({ Authorization: "Bearer page" }),
    onRecord: (topic, event) => window.got.push(topic + " " + event.id + ":" + event.record.n),
    onState: (state) => window.states.push(state),
    onError: (error) => window.errors.push(error.error)
  })
</script>`

interface PageState {
  readonly got: Array<string>
  readonly states: Array<string>
  readonly errors: Array<string>
}

describe.skipIf(Server.isBun)(`the client in Chromium (${Server.runtime})`, () => {
  it.live("subscribes with an Authorization header and resumes a cut connection with no gap and no repeat", () =>
    Effect.gen(function*() {
      const proxy = yield* proxyTo(yield* Server.baseUrl)
      const client = yield* bundle
      const browser = yield* Effect.acquireRelease(
        Effect.promise(() => chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] })),
        (browser) => Effect.promise(() => browser.close())
      )
      const tab = yield* Effect.promise(() => browser.newPage())
      yield* Effect.promise(() =>
        tab.route(`${proxy.origin}/__client.js`, (route) => route.fulfill({ contentType: "text/javascript", body: client }))
      )
      yield* Effect.promise(() => tab.route(`${proxy.origin}/__page`, (route) => route.fulfill({ contentType: "text/html", body: page })))
      yield* Effect.promise(() => tab.goto(`${proxy.origin}/__page`))
      const state = Effect.promise(() => tab.evaluate(() => {
        const w = window as unknown as PageState
        return { got: [...w.got], states: [...w.states], errors: [...w.errors] }
      }))
      const waitFor = (label: string, done: (s: PageState) => boolean) =>
        eventually(label, state, done).pipe(Effect.mapError((error) => new Error(`${error.message}; HTTP: ${describeExchanges(proxy)}`)))

      yield* waitFor("live", (s) => s.states.includes("live"))
      const realtime = yield* Realtime.Realtime
      const publish = (id: string, n: number) =>
        realtime.publish({ type: "changed", slug: "posts", id, etag: `${id}-${n}`, record: { n } })
      for (let n = 1; n <= 3; n++) yield* publish("1", n)
      yield* publish("2", 1)
      yield* waitFor("7 events", (s) => s.got.length >= 7)

      // Cut the connection and publish while the page is away; its reconnection waits in the proxy.
      proxy.hold()
      proxy.cut()
      for (let n = 4; n <= 6; n++) yield* publish("1", n)
      yield* publish("2", 2)
      yield* eventually("the client tries again", Effect.sync(proxy.waiting), (n) => n >= 1)
      proxy.release()
      yield* waitFor("all 14 events", (s) => s.got.length >= 14)
      yield* Effect.sleep("100 millis")
      const final = yield* state
      assert.deepStrictEqual(final.got.filter((g) => g.startsWith("posts/1 ")), [1, 2, 3, 4, 5, 6].map((n) => `posts/1 1:${n}`))
      assert.deepStrictEqual(
        final.got.filter((g) => g.startsWith("posts/* ")),
        ["1:1", "1:2", "1:3", "2:1", "1:4", "1:5", "1:6", "2:2"].map((e) => `posts/* ${e}`)
      )
      assert.deepStrictEqual(final.states, ["connecting", "live", "reconnecting", "live"])
      assert.deepStrictEqual(final.errors, [])
      // It came back by itself, with the cursor of the last event it had.
      const subscribes = proxy.exchanges.filter((e) => e.request.startsWith("GET /api/saacms/v1/subscribe?"))
      assert.strictEqual(subscribes.length, 2, describeExchanges(proxy))
      assert.strictEqual(subscribes[0]!.lastEventId, undefined)
      assert.match(subscribes[1]!.lastEventId ?? "", /^B[A-Za-z0-9_-]+$/)
      assert.deepStrictEqual(subscribes.map((e) => e.status), [200, 200])
    }).pipe(Effect.scoped, Effect.provide(App)))
})
