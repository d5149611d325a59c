/**
 * Hostile clients over raw `node:net` sockets against the demo host, served by
 * the runtime's own server (Bun or Node): connect/abort storms, half-open and
 * stalled connections, garbage requests. After each, the server still serves a
 * normal subscribe + publish round trip and no subscriber is left registered.
 *
 * The app is the demo host's (`DemoHost.routes`, its record store and its
 * environment config through `RealtimeConfig.layerConfig`), composed as
 * `DemoHost.layer` composes it, except that the in-memory core is merged into
 * the output so the test can read `Hub` counts.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { createParser, type EventSourceParser } from "eventsource-parser"
import * as net from "node:net"
import * as DemoHost from "../src/bin/DemoHost.js"
import * as Event from "../src/Event.js"
import * as Heartbeat from "../src/Heartbeat.js"
import * as Hub from "../src/Hub.js"
import * as Realtime from "../src/Realtime.js"
import * as RealtimeConfig from "../src/RealtimeConfig.js"
import * as RealtimeHttp from "../src/RealtimeHttp.js"
import { eventually } from "./utils/eventually.js"
import * as Server from "./utils/server.js"

/** A subscriber may hold 16 frames (the demo reads it from `REALTIME_QUEUE_CAPACITY`). */
const queueCapacity = 16
const maxQueuedBytes = 1024 * 1024
const heartbeatMs = 1000

const Demo = HttpLayerRouter.serve(DemoHost.routes, { routerConfig: RealtimeHttp.routerConfig }).pipe(
  Layer.provide(DemoHost.RecordStore.Default),
  Layer.provideMerge(Realtime.layerMemory),
  Layer.provide(RealtimeConfig.layerConfig()),
  // The demo's configuration comes from the environment; this one, not the CI's.
  Layer.provide(Layer.setConfigProvider(
    ConfigProvider.fromMap(new Map([
      ["REALTIME_QUEUE_CAPACITY", String(queueCapacity)],
      ["REALTIME_MAX_QUEUED_BYTES", String(maxQueuedBytes)],
      ["REALTIME_HEARTBEAT_MS", String(heartbeatMs)]
    ]))
  )),
  HttpMiddleware.withTracerDisabledWhen(RealtimeHttp.isSubscribeRequest),
  Layer.provideMerge(Server.layerTest),
  // The demo serves with the request logger on; keep test output to warnings.
  Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
)

const serverPort = Effect.map(Server.baseUrl, (url) => Number(new URL(url).port))

// ---------------------------------------------------------------------------
// A raw HTTP/1.1 client: one socket, the response head, the body de-chunked
// and fed to eventsource-parser as it arrives.
// ---------------------------------------------------------------------------

type Item =
  | { readonly _tag: "event"; readonly event: string | undefined; readonly id: string | undefined; readonly data: string }
  | { readonly _tag: "comment"; readonly text: string }
  | { readonly _tag: "retry"; readonly ms: number }
  | { readonly _tag: "error"; readonly type: string; readonly line: string | undefined }

interface Head {
  readonly status: number
  readonly headers: ReadonlyMap<string, string>
  readonly text: string
}

type Close = "destroy" | "end" | "reset"

class RawClient {
  readonly socket: net.Socket
  head: Head | undefined = undefined
  /** The body's first 64 KiB as text (error bodies; SSE goes to `items` as well). */
  body = ""
  readonly items: Array<Item> = []
  /** The whole response body arrived (its `Content-Length`, or the last chunk). */
  complete = false
  /** The socket closed. */
  closed = false
  error: string | undefined = undefined
  /** Bytes after a complete response (a server never sends any here). */
  extra = 0
  private pending: Buffer = Buffer.alloc(0)
  private mode: "head" | "size" | "data" | "crlf" | "trailer" | "length" | "close" | "done" = "head"
  private remaining = 0
  private readonly decoder = new TextDecoder()
  private readonly parser: EventSourceParser
  private readonly listeners = new Set<() => void>()

  constructor(port: number) {
    this.parser = createParser({
      onEvent: (message) => this.items.push({ _tag: "event", event: message.event, id: message.id, data: message.data }),
      onComment: (text) => this.items.push({ _tag: "comment", text }),
      onRetry: (ms) => this.items.push({ _tag: "retry", ms }),
      onError: (error) => this.items.push({ _tag: "error", type: error.type, line: error.line })
    })
    this.socket = net.connect(port, "127.0.0.1")
    this.socket.on("data", (data: Buffer) => {
      this.pending = this.pending.byteLength === 0 ? data : Buffer.concat([this.pending, data])
      this.advance()
      this.notify()
    })
    // ECONNRESET, EPIPE: the server dropped us, which hostile clients may earn.
    this.socket.on("error", (error) => {
      this.error = error.message
      this.notify()
    })
    this.socket.on("close", () => {
      this.closed = true
      if (this.mode === "close") this.finish()
      this.notify()
    })
  }

  write(data: string | Uint8Array): void {
    if (!this.socket.destroyed) this.socket.write(data)
  }

  close(how: Close = "destroy"): void {
    if (how === "end") this.socket.end()
    else if (how === "reset" && !this.socket.destroyed && !this.socket.connecting) this.socket.resetAndDestroy()
    else this.socket.destroy()
  }

  /** The events received, after checking the opening (see `afterOpening`). */
  events(): Array<Extract<Item, { _tag: "event" }>> {
    return this.items.flatMap((item) => item._tag === "event" ? [item] : [])
  }

  hasKeepalive(): boolean {
    return this.items.some((item) => item._tag === "comment" && item.text === "keepalive")
  }

  describe(): string {
    return `status ${this.head?.status ?? "-"}, closed ${this.closed}, error ${this.error ?? "-"}, ` +
      `head ${JSON.stringify(this.head?.text ?? "")}, body ${JSON.stringify(this.body.slice(0, 300))}`
  }

  /** Wait until `predicate` holds, re-checked on every byte and socket event; fail after `timeout`. */
  until(label: string, predicate: (client: RawClient) => boolean, timeout: Duration.DurationInput = "5 seconds") {
    return Effect.async<void>((resume) => {
      const check = () => {
        if (!predicate(this)) return
        this.listeners.delete(check)
        resume(Effect.void)
      }
      this.listeners.add(check)
      check()
      return Effect.sync(() => this.listeners.delete(check))
    }).pipe(
      Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`${label}: not met in time; ${this.describe()}`) })
    )
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener()
  }

  private onBody(bytes: Uint8Array): void {
    const text = this.decoder.decode(bytes, { stream: true })
    if (this.body.length < 65_536) this.body += text.slice(0, 65_536 - this.body.length)
    this.parser.feed(text)
  }

  private finish(): void {
    this.mode = "done"
    this.complete = true
  }

  private line(): string | undefined {
    const end = this.pending.indexOf("\r\n")
    if (end === -1) return undefined
    const line = this.pending.subarray(0, end).toString("latin1")
    this.pending = this.pending.subarray(end + 2)
    return line
  }

  private advance(): void {
    while (true) {
      switch (this.mode) {
        case "head": {
          const end = this.pending.indexOf("\r\n\r\n")
          if (end === -1) return
          const text = this.pending.subarray(0, end).toString("latin1")
          this.pending = this.pending.subarray(end + 4)
          const [statusLine = "", ...lines] = text.split("\r\n")
          const headers = new Map(lines.map((line) => {
            const colon = line.indexOf(":")
            return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()] as const
          }))
          this.head = { status: Number(statusLine.split(" ")[1]), headers, text }
          if (headers.get("transfer-encoding")?.toLowerCase() === "chunked") this.mode = "size"
          else if (headers.has("content-length")) {
            this.remaining = Number(headers.get("content-length"))
            this.mode = "length"
            if (this.remaining === 0) this.finish()
          } else this.mode = "close"
          break
        }
        case "size": {
          const line = this.line()
          if (line === undefined) return
          const size = Number.parseInt(line.split(";")[0]!, 16)
          if (size === 0) this.mode = "trailer"
          else {
            this.remaining = size
            this.mode = "data"
          }
          break
        }
        case "data":
        case "length": {
          if (this.pending.byteLength === 0) return
          const n = Math.min(this.remaining, this.pending.byteLength)
          this.onBody(this.pending.subarray(0, n))
          this.pending = this.pending.subarray(n)
          this.remaining -= n
          if (this.remaining === 0) {
            if (this.mode === "data") this.mode = "crlf"
            else this.finish()
          }
          break
        }
        case "crlf": {
          if (this.pending.byteLength < 2) return
          this.pending = this.pending.subarray(2)
          this.mode = "size"
          break
        }
        case "trailer": {
          const line = this.line()
          if (line === undefined) return
          if (line === "") this.finish()
          break
        }
        case "close": {
          if (this.pending.byteLength > 0) this.onBody(this.pending)
          this.pending = Buffer.alloc(0)
          return
        }
        case "done": {
          this.extra += this.pending.byteLength
          this.pending = Buffer.alloc(0)
          return
        }
      }
    }
  }
}

/** A raw connection to the test server, destroyed when the scope closes. */
const connect = (port: number) =>
  Effect.acquireRelease(Effect.sync(() => new RawClient(port)), (client) => Effect.sync(() => client.close()))

const subscribePath = (collection: string, id: string) => `/api/saacms/v1/${collection}/${id}/subscribe`

const request = (method: string, path: string, headers: Record<string, string> = {}, body = "") =>
  `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
  Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("") +
  (body === "" ? "" : `Content-Length: ${Buffer.byteLength(body)}\r\n`) + `\r\n${body}`

/** Open a subscription over a raw socket; succeeds once its `:keepalive` arrived (it is registered). */
const subscribe = (port: number, path: string, headers: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const client = yield* connect(port)
    client.write(request("GET", path, headers))
    yield* client.until(`subscribed to ${path}`, (c) => c.hasKeepalive() || c.closed)
    assert.strictEqual(client.head?.status, 200, client.describe())
    return client
  })

/**
 * What follows a stream's opening: `:keepalive`, then one `retry: <ms>` (none
 * when `retryMs` is 0); after that only events (no comment, `retry:` or parse error).
 */
const afterOpening = (client: RawClient, label: string): Array<Extract<Item, { _tag: "event" }>> => {
  const items = client.items
  assert.deepStrictEqual(items[0], { _tag: "comment", text: "keepalive" }, `${label}: ${client.describe()}`)
  const rest = items.slice(items[1]?._tag === "retry" ? 2 : 1)
  for (const item of rest) {
    // Heartbeats may come at any point.
    if (item._tag === "comment" && item.text === "keepalive") continue
    assert.strictEqual(item._tag, "event", `${label}: unexpected ${JSON.stringify(item)}`)
  }
  return client.events()
}

/** The server still works: a raw subscriber gets the `changed` event of a `PUT` to the demo host, and only that. */
const roundTrip = (port: number, recordId: string) =>
  Effect.scoped(Effect.gen(function*() {
    const subscriber = yield* subscribe(port, subscribePath("posts", recordId))
    const put = yield* connect(port)
    const body = JSON.stringify({ title: `round trip ${recordId}`, text: "a\r\nevent: evil\n\n" })
    put.write(request("PUT", `/api/saacms/v1/posts/${recordId}`, { "Content-Type": "application/json" }, body))
    yield* put.until("PUT answered", (c) => c.complete || c.closed)
    assert.strictEqual(put.head?.status, 200, put.describe())
    const etag = put.head?.headers.get("etag")
    assert.match(etag ?? "", /^"[A-Za-z0-9_-]+"$/)
    yield* subscriber.until("the changed event", (c) => c.events().length >= 1 || c.closed)
    assert.deepStrictEqual(afterOpening(subscriber, "round trip"), [{ _tag: "event", event: "changed", id: etag, data: body }])
  }))

const noSubscribersLeft = Effect.gen(function*() {
  const hub = yield* Hub.Hub
  const heartbeat = yield* Heartbeat.Heartbeat
  yield* eventually("no subscriber left", hub.totalSubscribers, (n) => n === 0)
  yield* eventually("no heartbeat left", heartbeat.active, (n) => n === 0)
  assert.strictEqual(yield* hub.activeKeys, 0)
})

/** A response body must not leak internals. */
const assertNoStackTrace = (client: RawClient, label: string) =>
  assert.notMatch(client.body, /\bat \S+ \(|\.(ts|js):\d+|node_modules|FiberFailure|Error:|\bstack\b/i, label)

// ---------------------------------------------------------------------------

describe(`hostile clients over raw sockets (${Server.runtime})`, () => {
  it.live("2 000 connect/abort cycles on the subscribe route leave no subscriber, and the server serving", () =>
    Effect.gen(function*() {
      const port = yield* serverPort
      const seen = { heads: 0, registered: 0, endedByServer: 0 }
      const cycle = (i: number) =>
        Effect.scoped(Effect.gen(function*() {
          const kind = i % 5
          const how: Close = (["destroy", "reset", "end"] as const)[Math.floor(i / 5) % 3]!
          const full = request("GET", subscribePath("posts", `${i % 10}`), i % 2 === 0 ? { "Last-Event-ID": `e${i}` } : {})
          const client = yield* connect(port)
          // 0: nothing sent; 1: cut anywhere before the blank line; 2: the whole request, then gone at once;
          // 3: gone after the response head; 4: gone once registered (after the `:keepalive`).
          if (kind === 1) client.write(full.slice(0, 1 + (i * 7919) % (full.length - 2)))
          if (kind >= 2) client.write(full)
          if (kind === 3) {
            yield* client.until("response head", (c) => c.head !== undefined)
            seen.heads++
          }
          if (kind === 4) {
            yield* client.until("registered", (c) => c.hasKeepalive())
            seen.registered++
          }
          client.close(how)
          if (how === "end" && kind >= 2) {
            // Half-closed by the client (FIN): the server must let go of the connection too.
            yield* client.until("server closed after the client's FIN", (c) => c.closed)
            seen.endedByServer++
          }
        }))
      yield* Effect.forEach(Array.from({ length: 2_000 }, (_, i) => i), cycle, { concurrency: 100, discard: true })
      const halfClosed = Array.from({ length: 2_000 }, (_, i) => i).filter((i) => i % 5 >= 2 && Math.floor(i / 5) % 3 === 2)
      assert.deepStrictEqual(seen, { heads: 400, registered: 400, endedByServer: halfClosed.length })
      yield* noSubscribersLeft
      yield* roundTrip(port, "after-storm")
      yield* noSubscribersLeft
    }).pipe(Effect.provide(Demo)), { timeout: 60_000 })

  it.live("half-open and stalled connections: readers get every frame in order, the stalled hold their bound and are ended, nothing stays", () =>
    Effect.gen(function*() {
      const port = yield* serverPort
      const hub = yield* Hub.Hub
      const realtime = yield* Realtime.Realtime
      const key = yield* Event.resourceKey("posts", "firehose")
      const path = subscribePath("posts", "firehose")

      // Requests that never complete, then silence.
      const partial = [
        ...Array.from({ length: 10 }, () => "GET /api/saacms/v1/posts/fire"),
        ...Array.from({ length: 10 }, () => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: x`),
        ...Array.from({ length: 5 }, () => ""),
        ...Array.from({ length: 5 }, () =>
          "PUT /api/saacms/v1/posts/firehose HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{\"a\":")
      ]
      const halfOpen = yield* Effect.forEach(partial, (bytes) =>
        Effect.map(connect(port), (client) => {
          if (bytes !== "") client.write(bytes)
          return client
        }))
      // Three subscribers that stop reading once registered, two that keep reading.
      const stalled = yield* Effect.forEach([1, 2, 3], () => subscribe(port, path))
      for (const client of stalled) client.socket.pause()
      const readers = yield* Effect.forEach([1, 2], () => subscribe(port, path))
      assert.strictEqual(yield* hub.subscriberCount(key), 5)
      // The half-open connections registered nothing.
      assert.strictEqual(yield* hub.totalSubscribers, 5)

      // Frames of 128 KiB, each published once every reader has the one before:
      // a reader is never behind; a stalled subscriber fills its socket's
      // buffers, then holds at most its bound (it is behind: the rest is history).
      const payload = "x".repeat(128 * 1024)
      const ids: Array<string> = []
      const publish = Effect.gen(function*() {
        const n = ids.length
        const id = `f${n}`
        yield* realtime.publish({ type: "changed", slug: "posts", id: "firehose", record: { n, payload }, etag: id })
        ids.push(id)
        yield* Effect.forEach(readers, (reader) => reader.until(`a reader got ${id}`, (c) => c.events().at(-1)?.id === id || c.closed))
      })
      for (let i = 0; i < 80; i++) {
        yield* publish
        // Bytes waiting in the server for its clients: the bound of each stalled one, at most.
        assert.isAtMost(yield* hub.queuedBytes, 3 * maxQueuedBytes + 2 * 140 * 1024)
      }
      // Taking nothing for a whole heartbeat interval while frames wait, they are ended.
      yield* eventually("the stalled subscribers ended", hub.subscriberCount(key), (n) => n === readers.length, 1000)
      assert.strictEqual(yield* hub.queuedBytes, 0)
      // The readers are untouched: three more frames, then everything is checked.
      for (let i = 0; i < 3; i++) yield* publish
      for (const [i, reader] of readers.entries()) {
        const events = afterOpening(reader, `reader ${i}`)
        assert.deepStrictEqual(events.map((event) => event.id), ids, `reader ${i}: every frame, in order, once`)
        events.forEach((event, n) => {
          assert.strictEqual(event.event, "changed")
          assert.strictEqual(event.data, JSON.stringify({ n, payload }))
        })
      }
      // The server keeps serving while all of these hang.
      yield* roundTrip(port, "while-stalled")
      yield* eventually("the round trip's subscriber released", hub.totalSubscribers, (n) => n === readers.length)

      // A stalled client that reads again gets an unbroken prefix, then the end of the response.
      for (const [i, client] of stalled.entries()) {
        client.socket.resume()
        // Its response ends (Node ends the chunked body; Bun's web stream was failed, so it drops the connection).
        yield* client.until(`stalled ${i}: the response ends`, (c) => c.complete || c.closed, "10 seconds")
        const got = afterOpening(client, `stalled ${i}`).map((event) => event.id)
        assert.isBelow(got.length, ids.length, `stalled ${i}`)
        assert.deepStrictEqual(got, ids.slice(0, got.length), `stalled ${i}: no hole`)
        assert.strictEqual(client.extra, 0, `stalled ${i}: nothing after the response`)
      }

      for (const client of [...halfOpen, ...stalled, ...readers]) client.close()
      yield* noSubscribersLeft
      yield* roundTrip(port, "after-stalled")
    }).pipe(Effect.scoped, Effect.provide(Demo)), { timeout: 60_000 })

  // `reject`: the server answers 4xx (505 from Bun's parser for a bad version)
  // or closes the connection. `benign`: once the HTTP parser is done, the
  // request is a valid subscribe to `record` (duplicate or split headers, an
  // absolute URI, …): either rejected, or a clean stream of that record, with
  // one resync when it carries a last event id and nothing injected. Those in
  // `mustStream` are valid on any parser: they must be the stream.
  type Case =
    | { readonly name: string; readonly bytes: string | Uint8Array; readonly expect: "reject" }
    | {
      readonly name: string
      readonly bytes: string | Uint8Array
      readonly expect: { readonly record: readonly [string, string]; readonly resync: boolean }
    }
  const sub = subscribePath
  const get = (target: string, extra = "") => `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`
  const junk = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 256)
  const cases: ReadonlyArray<Case> = [
    { name: "not HTTP", bytes: "GARBAGE\r\n\r\n", expect: "reject" },
    { name: "binary junk", bytes: junk, expect: "reject" },
    { name: "a TLS ClientHello", bytes: Uint8Array.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), expect: "reject" },
    { name: "HTTP/9.9", bytes: `GET ${sub("posts", "1")} HTTP/9.9\r\nHost: x\r\n\r\n`, expect: "reject" },
    { name: "NUL in the method", bytes: `G\0T ${sub("posts", "1")} HTTP/1.1\r\nHost: x\r\n\r\n`, expect: "reject" },
    { name: "no Host", bytes: `GET ${sub("posts", "1")} HTTP/1.1\r\n\r\n`, expect: "reject" },
    { name: "a 100 KB header line", bytes: get(sub("posts", "1"), `X-Long: ${"a".repeat(100_000)}\r\n`), expect: "reject" },
    { name: "a 100 KB request line", bytes: get(sub("posts", "i".repeat(100_000))), expect: "reject" },
    { name: "5 000 headers", bytes: get(sub("posts", "1"), "X-A: b\r\n".repeat(5_000)), expect: "reject" },
    { name: "space before the colon", bytes: get(sub("posts", "1"), "Last-Event-ID : a\r\n"), expect: "reject" },
    { name: "Last-Event-ID with a bare CR", bytes: get(sub("posts", "1"), "Last-Event-ID: a\rb\r\n"), expect: "reject" },
    { name: "Last-Event-ID with a bare LF", bytes: get(sub("posts", "1"), "Last-Event-ID: a\nid: b\r\n"), expect: "reject" },
    { name: "Last-Event-ID with NUL", bytes: get(sub("posts", "1"), "Last-Event-ID: a\0b\r\n"), expect: "reject" },
    { name: "Last-Event-ID folded (obs-fold)", bytes: get(sub("posts", "1"), "Last-Event-ID: a\r\n event: evil\r\n"), expect: "reject" },
    { name: "Last-Event-ID of 300 characters", bytes: get(sub("posts", "1"), `Last-Event-ID: ${"x".repeat(300)}\r\n`), expect: "reject" },
    { name: "?lastEventId= with CR LF", bytes: get(`${sub("posts", "1")}?lastEventId=a%0D%0Aevent:%20evil`), expect: "reject" },
    { name: "?lastEventId= with NUL", bytes: get(`${sub("posts", "1")}?lastEventId=a%00b`), expect: "reject" },
    { name: "%00 as the id", bytes: get(sub("posts", "%00")), expect: "reject" },
    { name: "%00 in the collection", bytes: get(sub("posts%00", "1")), expect: "reject" },
    { name: ": in the collection", bytes: get(sub("po:sts", "1")), expect: "reject" },
    { name: ": in the id", bytes: get(sub("posts", "a:b")), expect: "reject" },
    { name: "%3A in the collection", bytes: get(sub("po%3Asts", "1")), expect: "reject" },
    { name: "%2F in the id", bytes: get(sub("posts", "a%2Fb")), expect: "reject" },
    { name: "a malformed %-escape", bytes: get(sub("posts", "%E0%A4%A")), expect: "reject" },
    { name: "%ZZ", bytes: get(sub("posts", "%ZZ")), expect: "reject" },
    { name: "a traversal", bytes: get("/api/saacms/v1/../../../etc/passwd"), expect: "reject" },
    { name: "an id of 129 characters", bytes: get(sub("posts", "i".repeat(129))), expect: "reject" },
    { name: "an id of 2 000 characters", bytes: get(sub("posts", "i".repeat(2_000))), expect: "reject" },
    { name: "a collection of 65 characters", bytes: get(sub("p".repeat(65), "1")), expect: "reject" },
    { name: "GET *", bytes: get("*"), expect: "reject" },
    { name: "OPTIONS *", bytes: "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", expect: "reject" },
    { name: "CONNECT", bytes: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", expect: "reject" },
    {
      name: "Content-Length with Transfer-Encoding",
      bytes: "POST /api/saacms/v1/posts/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      expect: "reject"
    },
    // JSON.parse takes it; JSON.stringify overflows the stack (after ~1.4 s of CPU on Bun).
    {
      name: "a PUT of 50 000 nested arrays",
      bytes: request("PUT", "/api/saacms/v1/posts/deep", {}, `${"[".repeat(50_000)}${"]".repeat(50_000)}`),
      expect: "reject"
    },
    { name: "a PUT that is not JSON", bytes: request("PUT", "/api/saacms/v1/posts/nojson", {}, "{\"a\":\0}"), expect: "reject" },
    {
      name: "CR LF injected in Last-Event-ID (it ends the header)",
      bytes: get(sub("posts", "crlf"), "Last-Event-ID: a\r\nevent: evil\r\ndata: x\r\n"),
      expect: { record: ["posts", "crlf"], resync: true }
    },
    {
      name: "Last-Event-ID as UTF-8",
      bytes: Buffer.from(get(sub("posts", "utf8"), "Last-Event-ID: é😀\u2028\r\n"), "utf8"),
      expect: { record: ["posts", "utf8"], resync: true }
    },
    {
      name: "Last-Event-ID as raw high bytes",
      bytes: Buffer.from(get(sub("posts", "latin1"), "Last-Event-ID: \xff\xfe\x85\r\n"), "latin1"),
      expect: { record: ["posts", "latin1"], resync: true }
    },
    { name: "Last-Event-ID twice", bytes: get(sub("posts", "twice"), "Last-Event-ID: a\r\nLast-Event-ID: b\r\n"), expect: { record: ["posts", "twice"], resync: true } },
    { name: "Last-Event-ID empty", bytes: get(sub("posts", "empty"), "Last-Event-ID:\r\n"), expect: { record: ["posts", "empty"], resync: false } },
    { name: "Last-Event-ID of 256 characters", bytes: get(sub("posts", "b256"), `Last-Event-ID: ${"x".repeat(256)}\r\n`), expect: { record: ["posts", "b256"], resync: true } },
    { name: "?lastEventId= malformed %-escape", bytes: get(`${sub("posts", "pctq")}?lastEventId=%E0%A4%A`), expect: { record: ["posts", "pctq"], resync: true } },
    { name: "Host twice", bytes: `GET ${sub("posts", "hosts")} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`, expect: { record: ["posts", "hosts"], resync: false } },
    { name: "an absolute URI", bytes: get(`http://evil.example${sub("posts", "abs")}`), expect: { record: ["posts", "abs"], resync: false } },
    { name: "no HTTP version", bytes: `GET ${sub("posts", "h09")}\r\n\r\n`, expect: { record: ["posts", "h09"], resync: false } },
    { name: "LF line ends", bytes: `GET ${sub("posts", "lf")} HTTP/1.1\nHost: x\n\n`, expect: { record: ["posts", "lf"], resync: false } },
    // `..` is a valid record id (README: `[A-Za-z0-9._~-]{1,128}`); Node passes the raw path, Bun normalises it away.
    { name: "`..` as the id", bytes: get("/api/saacms/v1/posts/../subscribe"), expect: { record: ["posts", ".."], resync: false } },
    { name: "`%2e%2e` as the id", bytes: get("/api/saacms/v1/posts/%2e%2e/subscribe"), expect: { record: ["posts", ".."], resync: false } }
  ]

  const mustStream = [
    "CR LF injected in Last-Event-ID (it ends the header)",
    "Last-Event-ID twice",
    "Last-Event-ID empty",
    "Last-Event-ID of 256 characters",
    "?lastEventId= malformed %-escape",
    "an absolute URI"
  ]

  it.live("garbage requests get 4xx or a closed connection, never a stack trace; other streams and the server carry on", () =>
    Effect.gen(function*() {
      const port = yield* serverPort
      const hub = yield* Hub.Hub
      const realtime = yield* Realtime.Realtime
      // A subscriber that must not notice any of this.
      const watcher = yield* subscribe(port, subscribePath("posts", "watch"))
      const outcomes: Array<{ readonly name: string; readonly status: number | "closed" }> = []
      for (const [index, testCase] of cases.entries()) {
        yield* Effect.scoped(Effect.gen(function*() {
          const label = testCase.name
          const client = yield* connect(port)
          client.write(testCase.bytes)
          yield* client.until(label, (c) =>
            c.closed || c.complete || (c.head?.status === 200 && c.hasKeepalive()), "10 seconds")
          assertNoStackTrace(client, label)
          const status = client.head?.status
          outcomes.push({ name: label, status: status ?? "closed" })
          if (status === undefined) return assert.isTrue(client.closed, label)
          if (status !== 200 || testCase.expect === "reject") {
            assert.isTrue(status >= 400 && status < 500 || status === 505, `${label}: ${client.describe()}`)
            assert.notStrictEqual(client.head?.headers.get("content-type"), "text/event-stream", label)
            if (client.head?.headers.get("content-type")?.startsWith("application/json") === true) {
              yield* client.until(`${label}: body`, (c) => c.complete || c.closed)
              const body = JSON.parse(client.body) as Record<string, unknown>
              assert.deepStrictEqual(Object.keys(body).sort(), ["error", "message"], label)
            }
            // Registered nothing (the stream of an earlier case may still be on its way out).
            yield* eventually(`${label}: registered nothing`, hub.totalSubscribers, (n) => n === 1)
            return
          }
          // A clean stream of the record: the opening, one resync if owed, then what is published.
          assert.strictEqual(client.head?.headers.get("content-type"), "text/event-stream", label)
          const [slug, id] = testCase.expect.record
          const sentinel = yield* realtime.publish({ type: "changed", slug, id, record: { index }, etag: `s${index}` })
          yield* client.until(`${label}: live event`, (c) => c.events().some((event) => event.id === sentinel.id) || c.closed)
          const events = afterOpening(client, label)
          const live = { _tag: "event", event: "changed", id: sentinel.id, data: JSON.stringify({ index }) } as const
          if (testCase.expect.resync) {
            assert.strictEqual(events.length, 2, `${label}: ${client.describe()}`)
            const [resync] = events
            assert.strictEqual(resync?.event, "saacms-resync", label)
            assert.strictEqual(resync?.data, "{\"reason\":\"buffer-miss\"}", label)
            // A record with no history: the current time, ISO 8601.
            assert.strictEqual(new Date(resync?.id ?? "").toISOString(), resync?.id, label)
            assert.deepStrictEqual(events[1], live, label)
          } else {
            assert.deepStrictEqual(events, [live], label)
          }
        }))
      }
      // A benign case may be refused (parsers differ), but not all of them: these are
      // plain valid subscribes on any HTTP/1.1 parser, and were served as streams.
      const statusOf = new Map(outcomes.map(({ name, status }) => [name, status]))
      assert.deepStrictEqual(
        mustStream.map((name) => [name, statusOf.get(name)]),
        mustStream.map((name) => [name, 200]),
        "valid subscribes were refused"
      )
      // And the watcher saw nothing of them.
      assert.deepStrictEqual(afterOpening(watcher, "watcher"), [])
      yield* eventually("only the watcher left", hub.totalSubscribers, (n) => n === 1)
      const last = yield* realtime.publish({ type: "changed", slug: "posts", id: "watch", record: { ok: true }, etag: "w" })
      yield* watcher.until("the watcher's event", (c) => c.events().length >= 1 || c.closed)
      assert.deepStrictEqual(afterOpening(watcher, "watcher"), [{ _tag: "event", event: "changed", id: last.id, data: "{\"ok\":true}" }])
      yield* roundTrip(port, "after-garbage")
      watcher.close()
      yield* noSubscribersLeft
    }).pipe(Effect.scoped, Effect.provide(Demo)), { timeout: 60_000 })
})
