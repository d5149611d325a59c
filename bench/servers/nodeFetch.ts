/**
 * A minimal fetch bridge for `node:http` (no `@hono/node-server` in
 * node_modules): each request becomes a web `Request` (URL, method, headers,
 * body, and a signal aborted when the response closes), the handler's
 * `Response` goes back with `res.writeHead`, and its body is read chunk by
 * chunk and written with `res.write`, waiting for `drain` when the socket is
 * behind; when the client goes away the body stream is cancelled. The Node
 * hosts of ours (`node-plugin.ts`) and of the reference (`node-reference.ts`)
 * both go through it.
 */
import type * as http from "node:http"
import * as NodeHost from "./nodeHost.js"

type Fetch = (request: Request) => Response | Promise<Response>

const toHeaders = (raw: ReadonlyArray<string>): Headers => {
  const headers = new Headers()
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!)
  return headers
}

const send = async (response: Response, res: http.ServerResponse): Promise<void> => {
  const headers: Record<string, string> = {}
  response.headers.forEach((value, name) => {
    headers[name] = value
  })
  res.writeHead(response.status, headers)
  if (response.body === null) {
    res.end()
    return
  }
  const reader = response.body.getReader()
  let closed = false
  let wake: (() => void) | undefined
  res.on("close", () => {
    closed = true
    wake?.()
    reader.cancel().catch(() => {})
  })
  res.on("drain", () => wake?.())
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done || closed) break
      if (!res.write(value)) {
        await new Promise<void>((resolve) => wake = resolve)
        wake = undefined
        if (closed) break
      }
    }
  } catch {
    // The stream failed (or was cancelled): end the response.
  }
  if (!closed) res.end()
}

export const serve = (fetch: Fetch): void => {
  const server = NodeHost.createServer(async (req, res) => {
    const controller = new AbortController()
    res.on("close", () => controller.abort())
    const method = req.method ?? "GET"
    const init: RequestInit = { method, headers: toHeaders(req.rawHeaders), signal: controller.signal }
    if (method !== "GET" && method !== "HEAD") init.body = (await NodeHost.body(req)) as unknown as BodyInit
    try {
      await send(await fetch(new Request(`http://127.0.0.1${req.url ?? "/"}`, init)), res)
    } catch (error) {
      if (!res.headersSent) res.writeHead(500).end(String(error))
      else res.destroy()
    }
  })
  NodeHost.listen(server)
}
