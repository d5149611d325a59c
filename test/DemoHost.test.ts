/**
 * The demo host as shipped (`src/bin/bun.ts` under Bun, `src/bin/node.ts`
 * under Node) in a child process, over raw `node:net` sockets: every request
 * body bounded by `maxFrameBytes` + 4 KiB before it is read whole, records
 * stored as canonical JSON, and an idle timeout on every connection except a
 * subscribe stream's.
 */
import { assert, layer } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { createHash } from "node:crypto"
import * as net from "node:net"
import * as Server from "./utils/server.js"
import * as Sse from "./utils/sse.js"

/** The frame limit the host runs with (the schema's floor is 256), and the body limit it implies. */
const maxFrameBytes = 4096
const bodyLimit = maxFrameBytes + 4096
const idleTimeoutS = 1

class Demo extends Context.Tag("test/DemoHost/Demo")<Demo, { readonly port: number }>() {}

const DemoLive = Layer.scoped(
  Demo,
  Effect.gen(function*() {
    const port = yield* Server.freePort
    yield* Server.entryPoint(port, {
      REALTIME_MAX_FRAME_BYTES: String(maxFrameBytes),
      IDLE_TIMEOUT_S: String(idleTimeoutS)
    })
    return { port }
  })
)

// ---------------------------------------------------------------------------
// One raw HTTP/1.1 connection: what the server sent, whether it closed.
// ---------------------------------------------------------------------------

interface Reply {
  readonly status: number
  readonly headers: ReadonlyMap<string, string>
  readonly body: string
}

class Connection {
  readonly socket: net.Socket
  received: Buffer = Buffer.alloc(0)
  closed = false
  /** Body bytes `pump` has handed to the socket. */
  sent = 0
  private readonly listeners = new Set<() => void>()

  constructor(port: number) {
    this.socket = net.connect(port, "127.0.0.1")
    this.socket.on("data", (data: Buffer) => {
      this.received = Buffer.concat([this.received, data])
      this.notify()
    })
    // EPIPE / ECONNRESET while a body is still going out: the server stopped reading.
    this.socket.on("error", () => this.notify())
    this.socket.on("close", () => {
      this.closed = true
      this.notify()
    })
  }

  write(data: string): void {
    this.socket.write(data)
  }

  /** The first response, once complete (by its `Content-Length`, else by the close). */
  reply(): Reply | undefined {
    const end = this.received.indexOf("\r\n\r\n")
    if (end === -1) return undefined
    const [statusLine = "", ...lines] = this.received.subarray(0, end).toString("latin1").split("\r\n")
    const headers = new Map(lines.map((line) => {
      const colon = line.indexOf(":")
      return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()] as const
    }))
    const length = headers.get("content-length")
    const rest = this.received.subarray(end + 4)
    if (length === undefined ? !this.closed : rest.byteLength < Number(length)) return undefined
    const body = rest.subarray(0, length === undefined ? rest.byteLength : Number(length)).toString("utf8")
    return { status: Number(statusLine.split(" ")[1]), headers, body }
  }

  /** Wait until `predicate` holds, re-checked on every byte and socket event; fail after `timeout`. */
  until(label: string, predicate: (connection: Connection) => boolean, timeout: Duration.DurationInput = "5 seconds") {
    return Effect.async<void>((resume) => {
      const check = () => {
        if (!predicate(this)) return
        this.listeners.delete(check)
        resume(Effect.void)
      }
      this.listeners.add(check)
      check()
      return Effect.sync(() => this.listeners.delete(check))
    }).pipe(Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => new Error(`${label}: not met in time; closed ${this.closed}, received ${this.received.toString("latin1", 0, 300)}`)
    }))
  }

  /**
   * Write `chunk` as HTTP chunks, each once the socket has taken the last,
   * until `total` bytes went out or the server answered or closed.
   */
  pump(chunk: string, total: number) {
    const framed = `${Buffer.byteLength(chunk).toString(16)}\r\n${chunk}\r\n`
    const stop = () => this.closed || this.socket.destroyed || this.reply() !== undefined || this.sent >= total
    return Effect.async<void>((resume) => {
      let waiting = false
      const step = () => {
        waiting = false
        while (!stop()) {
          this.sent += Buffer.byteLength(chunk)
          if (!this.socket.write(framed)) {
            waiting = true
            return
          }
        }
        this.listeners.delete(onEvent)
        this.socket.off("drain", step)
        resume(Effect.void)
      }
      const onEvent = () => {
        if (waiting && stop()) step()
      }
      this.listeners.add(onEvent)
      this.socket.on("drain", step)
      step()
      return Effect.sync(() => {
        this.listeners.delete(onEvent)
        this.socket.off("drain", step)
      })
    })
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener()
  }
}

/** A connection to the demo host, destroyed when the scope closes. */
const connect = Effect.flatMap(Demo, ({ port }) =>
  Effect.acquireRelease(
    Effect.sync(() => new Connection(port)),
    (connection) => Effect.sync(() => connection.socket.destroy())
  ))

/** One request on its own connection (`Connection: close`), and its complete reply. */
const request = (method: string, path: string, body?: string) =>
  Effect.gen(function*() {
    const connection = yield* connect
    const length = body === undefined ? "" : `Content-Length: ${Buffer.byteLength(body)}\r\n`
    connection.write(`${method} ${path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n${length}\r\n${body ?? ""}`)
    yield* connection.until(`${method} ${path} answered`, (c) => c.reply() !== undefined)
    return connection.reply()!
  }).pipe(Effect.scoped)

/** The ETag the host gives a record: SHA-256 of its canonical JSON, 16 bytes, base64url. */
const etagOf = (canonical: string) =>
  `"${createHash("sha256").update(canonical).digest().subarray(0, 16).toString("base64url")}"`

const recordPath = (id: string) => `/api/saacms/v1/posts/${id}`

/** The record at `path` as GET returns it. */
const current = (path: string) => Effect.map(request("GET", path), (reply) => [reply.status, reply.body] as const)

/** Milliseconds `effect` took, on the live clock. */
const millis = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    yield* effect
    return (yield* Clock.currentTimeMillis) - start
  })

// A child process and real sockets: the live clock throughout (no TestClock).
layer(DemoLive, { excludeTestServices: true, timeout: "30 seconds" })(
  `the demo host's entry point (${Server.runtime})`,
  (it) => {
    it.scoped("answers 413 frame_too_large on a Content-Length past the limit, before the body arrives", () =>
      Effect.gen(function*() {
        const path = recordPath("declared")
        assert.strictEqual((yield* request("PUT", path, "{\"v\":1}")).status, 200)
        // The size of the array that took the old Node host down: only the head is sent.
        for (const length of [bodyLimit + 1, 120 * 1024 * 1024]) {
          const connection = yield* connect
          connection.write(`PUT ${path} HTTP/1.1\r\nHost: demo\r\nContent-Length: ${length}\r\n\r\n[0,`)
          yield* connection.until("answered", (c) => c.reply() !== undefined)
          const reply = connection.reply()!
          assert.strictEqual(reply.status, 413)
          assert.deepStrictEqual(JSON.parse(reply.body), {
            error: "frame_too_large",
            message: `request body is larger than ${bodyLimit} bytes`
          })
          // The rest of the body is not wanted: the server closes rather than drain it.
          assert.strictEqual(reply.headers.get("connection")?.toLowerCase(), "close")
          yield* connection.until("closed by the server", (c) => c.closed)
        }
        assert.deepStrictEqual(yield* current(path), [200, "{\"v\":1}"])
      }))

    it.scoped("serves GET /metrics in the Prometheus text format, counting what it published", () =>
      Effect.gen(function*() {
        const published = (body: string) =>
          Number(/^saacms_realtime_frames_published_total (\d+)$/m.exec(body)?.[1] ?? Number.NaN)
        const before = yield* request("GET", "/metrics")
        assert.strictEqual(before.status, 200)
        assert.match(before.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/)
        assert.strictEqual((yield* request("PUT", recordPath("metered"), "{\"v\":1}")).status, 200)
        const after = yield* request("GET", "/metrics")
        assert.match(after.body, /^# TYPE saacms_realtime_frames_published_total counter$/m)
        assert.strictEqual(published(after.body), (Number.isNaN(published(before.body)) ? 0 : published(before.body)) + 1)
      }))

    it.scoped("takes a body of exactly the limit (padding and all), stored as canonical JSON", () =>
      Effect.gen(function*() {
        const path = recordPath("padded")
        const record = { title: "Hello", tags: ["a", "b"], nested: { n: 1.5, ok: true, none: null } }
        const canonical = JSON.stringify(record)
        const pretty = JSON.stringify(record, null, 4)
        const padded = pretty + " \n\t\r".repeat(Math.floor((bodyLimit - pretty.length) / 4))
        const exact = padded + " ".repeat(bodyLimit - padded.length)
        assert.strictEqual(Buffer.byteLength(exact), bodyLimit)

        const put = yield* request("PUT", path, exact)
        assert.strictEqual(put.status, 200, put.body)
        assert.strictEqual(put.body, canonical)
        assert.strictEqual(put.headers.get("etag"), etagOf(canonical))
        const get = yield* request("GET", path)
        assert.strictEqual(get.status, 200)
        assert.strictEqual(get.body, canonical)
        assert.strictEqual(get.headers.get("etag"), etagOf(canonical))
        // The same record written compactly is the same version.
        assert.strictEqual((yield* request("PUT", path, canonical)).headers.get("etag"), etagOf(canonical))
        // One byte more is refused.
        const over = yield* request("PUT", path, exact + " ")
        assert.strictEqual(over.status, 413)
        assert.deepStrictEqual(yield* current(path), [200, canonical])
      }))

    it.scoped("stops reading a chunked body once it passes the limit, and keeps serving", () =>
      Effect.gen(function*() {
        const path = recordPath("chunked")
        assert.strictEqual((yield* request("PUT", path, "{\"v\":1}")).status, 200)
        const total = 64 * 1024 * 1024
        const connection = yield* connect
        connection.write(`PUT ${path} HTTP/1.1\r\nHost: demo\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n[\r\n`)
        yield* connection.pump("0,".repeat(32 * 1024), total)
        yield* connection.until("answered or closed", (c) => c.reply() !== undefined || c.closed)
        // Bun answers the 413 and closes; Node closes (the request is destroyed as the read stops).
        const reply = connection.reply()
        if (reply !== undefined) {
          assert.strictEqual(reply.status, 413)
          assert.strictEqual(JSON.parse(reply.body).error, "frame_too_large")
        }
        // Had the server kept reading, all 64 MiB would have gone out; the
        // socket buffers between the two take about 4 MiB here.
        assert.isBelow(connection.sent, total / 4, `${connection.sent} bytes went out`)
        assert.deepStrictEqual(yield* current(path), [200, "{\"v\":1}"])
      }))

    it.scoped("closes a keep-alive connection left idle after a response, while a silent subscribe stream outlives it", () =>
      Effect.gen(function*() {
        const { port } = yield* Demo
        const path = recordPath("quiet")
        // The stream, opened first: silent after its opening (the heartbeat is 30 s).
        const controller = yield* Effect.acquireRelease(
          Effect.sync(() => new AbortController()),
          (controller) => Effect.sync(() => controller.abort())
        )
        const response = yield* Effect.promise(() =>
          fetch(`http://127.0.0.1:${port}${path}/subscribe`, { signal: controller.signal })
        )
        assert.strictEqual(response.status, 200)
        const stream = yield* Sse.reader(response)
        yield* stream.readUntil((received) => received.comments.includes("keepalive"))

        const idle = yield* connect
        idle.write(`GET ${path} HTTP/1.1\r\nHost: demo\r\n\r\n`)
        yield* idle.until("answered", (c) => c.reply() !== undefined)
        assert.strictEqual(idle.reply()?.status, 404)
        // Bun checks its idle timeout every 4 s; Node closes 1 s past keepAliveTimeout.
        const elapsed = yield* millis(idle.until("closed by the server", (c) => c.closed, "8 seconds"))
        assert.isAtLeast(elapsed, idleTimeoutS * 1000 - 100)

        // The stream has been silent at least as long, and is still open.
        const put = yield* request("PUT", path, "{\"after\":\"idle\"}")
        assert.strictEqual(put.status, 200)
        const received = yield* stream.readUntil((received) => received.events.length >= 1)
        assert.deepStrictEqual(received.events, [{ event: "changed", id: put.headers.get("etag"), data: "{\"after\":\"idle\"}" }])
        assert.isFalse(received.done)
      }))

    it.scoped("closes a connection whose body stalls", () =>
      Effect.gen(function*() {
        const path = recordPath("stalled")
        assert.strictEqual((yield* request("PUT", path, "{\"v\":1}")).status, 200)
        const connection = yield* connect
        connection.write(`PUT ${path} HTTP/1.1\r\nHost: demo\r\nContent-Length: 100\r\n\r\n{"v":`)
        yield* connection.until("closed by the server", (c) => c.closed, "8 seconds")
        assert.deepStrictEqual(yield* current(path), [200, "{\"v\":1}"])
      }))

    // Bun closes a connection that has not sent a whole request head after a
    // fixed ~10 s (12 s measured with Bun 1.4.5, whatever `idleTimeout` is):
    // past this suite's budget, so this one runs on Node (`headersTimeout` and
    // the socket timeout).
    it.scoped.skipIf(Server.isBun)("closes a connection that sends nothing", () =>
      Effect.gen(function*() {
        const connection = yield* connect
        const elapsed = yield* millis(connection.until("closed by the server", (c) => c.closed, "5 seconds"))
        assert.isAtLeast(elapsed, idleTimeoutS * 1000 - 100)
      }))
  }
)
