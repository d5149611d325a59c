/**
 * What every Node bench server shares (the Node counterpart of `host.ts`): the
 * port (first argument, else `PORT`), the `READY <port>` line, a full GC
 * (`node --expose-gc`), a `node:http` server with no idle or request timeouts
 * (as Bun's `idleTimeout: 0`), and reading a request body.
 */
import * as http from "node:http"

export const port: number = Number(process.argv[2] ?? process.env.PORT ?? 0)

export const ready = (listening: number): void => {
  process.stdout.write(`READY ${listening}\n`)
}

/** A full garbage collection (the process runs with `--expose-gc`). */
export const gc = (): void => {
  const collect = (globalThis as { gc?: () => void }).gc
  if (collect === undefined) throw new Error("run node with --expose-gc")
  collect()
}

/**
 * A `node:http` server: keep-alive connections never time out (the
 * publisher's may sit idle while a burst drains), nor do requests.
 */
export const createServer = (handler?: http.RequestListener): http.Server => {
  const server = http.createServer({ keepAliveTimeout: 0, requestTimeout: 0, headersTimeout: 0 }, handler)
  server.keepAliveTimeout = 0
  return server
}

/** Listen on 127.0.0.1 and print `READY <port>`. */
export const listen = (server: http.Server): void => {
  server.listen(port, "127.0.0.1", () => {
    const address = server.address()
    ready(typeof address === "object" && address !== null ? address.port : 0)
  })
}

/** The whole request body. */
export const body = (request: http.IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)))
    request.on("error", reject)
  })
