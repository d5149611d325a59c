/**
 * A TCP proxy between a browser and the server under test: every connection
 * is piped to the server, its request heads and response status lines noted
 * (for assertions on `Last-Event-ID` and for failure messages); `cut()`
 * destroys every connection open at that moment, and while `hold()` is in
 * force new connections wait (accepted, their bytes unread) until `release()`.
 */
import * as Effect from "effect/Effect"
import * as net from "node:net"

export interface Exchange {
  readonly connection: number
  /** The request line, e.g. `GET /api/saacms/v1/subscribe?topic=posts/r1 HTTP/1.1`. */
  readonly request: string
  /** The request's `Last-Event-ID` header, if any. */
  readonly lastEventId: string | undefined
  status: number | undefined
}

export interface Proxy {
  readonly origin: string
  readonly exchanges: ReadonlyArray<Exchange>
  /** Destroy every client and upstream socket open now (new connections are still accepted). */
  readonly cut: () => void
  /** From now on, new connections wait in the proxy (not yet connected to the server). */
  readonly hold: () => void
  /** Connections waiting since `hold()`. */
  readonly waiting: () => number
  /** Connect the waiting connections to the server, and new ones again at once. */
  readonly release: () => void
}

/** The HTTP exchanges seen so far, one line each, for failure messages. */
export const describeExchanges = (proxy: Proxy): string =>
  proxy.exchanges.map((e) => `#${e.connection} ${e.request} -> ${e.status ?? "(no response)"}`).join("; ")

/** A proxy to `target` (`http://host:port`) on a random local port, closed with the scope. */
export const proxyTo = (target: string) =>
  Effect.acquireRelease(
    Effect.async<{ readonly proxy: Proxy; readonly server: net.Server; readonly sockets: Set<net.Socket> }>(
      (resume) => {
        const { hostname, port } = new URL(target)
        const sockets = new Set<net.Socket>()
        const exchanges: Array<Exchange> = []
        let held: Array<() => void> | undefined = undefined
        let connections = 0
        const track = (socket: net.Socket) => {
          sockets.add(socket)
          socket.on("error", () => {})
          socket.on("close", () => sockets.delete(socket))
        }
        const server = net.createServer((client) => {
          const connection = ++connections
          track(client)
          // Without a `data` listener yet, the client's bytes wait in its socket.
          const start = () => {
            if (client.destroyed) return
            const upstream = net.connect(Number(port), hostname)
            track(upstream)
            client.on("close", () => upstream.destroy())
            upstream.on("close", () => client.destroy())
            // Each head ends at a blank line; a body is skipped by its
            // `Content-Length` (browsers send none chunked for a string body).
            let head = ""
            let body = 0
            client.on("data", (chunk: Buffer) => {
              head += chunk.toString("latin1")
              for (;;) {
                if (body > 0) {
                  const skipped = Math.min(body, head.length)
                  head = head.slice(skipped)
                  body -= skipped
                  if (body > 0) return
                }
                const end = head.indexOf("\r\n\r\n")
                if (end === -1) return
                const [request = "", ...lines] = head.slice(0, end).split("\r\n")
                const header = (name: string) =>
                  lines.find((line) => line.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim()
                exchanges.push({ connection, request, lastEventId: header("last-event-id"), status: undefined })
                body = Number(header("content-length") ?? 0)
                head = head.slice(end + 4)
              }
            })
            upstream.on("data", (chunk: Buffer) => {
              for (const [, status] of chunk.toString("latin1").matchAll(/HTTP\/1\.1 (\d{3}) /g)) {
                const exchange = exchanges.find((e) => e.connection === connection && e.status === undefined)
                if (exchange !== undefined) exchange.status = Number(status)
              }
            })
            client.pipe(upstream)
            upstream.pipe(client)
          }
          if (held === undefined) start()
          else held.push(start)
        })
        server.listen(0, "127.0.0.1", () => {
          const address = server.address() as net.AddressInfo
          resume(Effect.succeed({
            server,
            sockets,
            proxy: {
              origin: `http://127.0.0.1:${address.port}`,
              exchanges,
              cut: () => {
                for (const socket of [...sockets]) socket.destroy()
              },
              hold: () => {
                held ??= []
              },
              waiting: () => held?.length ?? 0,
              release: () => {
                const starts = held ?? []
                held = undefined
                for (const start of starts) start()
              }
            }
          }))
        })
      }
    ),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ proxy }) => proxy))
