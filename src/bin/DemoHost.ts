/**
 * A demo saacms-style host: an in-memory record store with
 * `GET / PUT / DELETE /api/saacms/v1/:collection/:id` that publishes every
 * change, and the subscribe route. Not part of the package exports.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import type * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Event from "../Event.js"
import * as Frame from "../Frame.js"
import * as Metrics from "../Metrics.js"
import * as Realtime from "../Realtime.js"
import * as RealtimeConfig from "../RealtimeConfig.js"
import * as RealtimeError from "../RealtimeError.js"
import * as RealtimeHttp from "../RealtimeHttp.js"
import * as Page from "./Page.js"
import { RecordStore } from "./RecordStore.js"

export { RecordStore } from "./RecordStore.js"

const contentEtag = (body: string) =>
  Effect.promise(() => crypto.subtle.digest("SHA-256", new TextEncoder().encode(body))).pipe(
    Effect.map((digest) => `"${Buffer.from(digest).subarray(0, 16).toString("base64url")}"`)
  )

/**
 * Seconds a connection may stay silent, except a subscribe stream's
 * (`IDLE_TIMEOUT_S`, 1–255, default 10).
 */
export const idleTimeoutSeconds: Config.Config<number> = Config.integer("IDLE_TIMEOUT_S").pipe(
  Config.validate({ message: "must be between 1 and 255", validation: (n) => n >= 1 && n <= 255 }),
  Config.withDefault(10)
)

/** Room for the JSON around a record in its frame: a body past `maxFrameBytes` plus this cannot be published. */
const bodyAllowance = 4096

class BodyTooLarge extends Data.TaggedError("BodyTooLarge")<{ readonly limit: number }> {}

// The body as text, refused as soon as it is known to pass `limit` bytes: on a
// declared `Content-Length` before any of it is read, else while it streams in.
// Stopping the stream cancels the read (Bun: the 413 goes out, then the
// connection closes) or destroys the request (Node: the connection closes
// before the 413); either way the rest of the body is never read.
// (`HttpServerRequest.withMaxBodySize` would not do: platform-bun ignores it,
// and platform-node's 10 MiB default never reaches a handler.)
const readBody = (request: HttpServerRequest.HttpServerRequest, limit: number) => {
  const length = request.headers["content-length"]
  if (length !== undefined && Number(length) > limit) return Effect.fail(new BodyTooLarge({ limit }))
  // HTTP/1.1: a request with neither header has no body (Bun has no stream for it).
  if (length === "0" || (length === undefined && request.headers["transfer-encoding"] === undefined)) {
    return Effect.succeed("")
  }
  const chunks: Array<Uint8Array> = []
  return request.stream.pipe(
    Stream.runFoldEffect(0, (size, chunk) => {
      if (size + chunk.byteLength > limit) return Effect.fail(new BodyTooLarge({ limit }))
      chunks.push(chunk)
      return Effect.succeed(size + chunk.byteLength)
    }),
    Effect.map(() => Buffer.concat(chunks).toString("utf8"))
  )
}

// Whether JSON text nests objects and arrays deeper than `max`, in one pass:
// `JSON.stringify` overflows its stack on what `JSON.parse` takes (50 000
// nested arrays), after over a second of CPU on Bun.
const nestsDeeperThan = (text: string, max: number): boolean => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true
    } else if (c === 0x5d || c === 0x7d) depth--
  }
  return false
}

const recordKey = Effect.flatMap(HttpLayerRouter.params, (params) => Event.resourceKey(params.collection, params.id))

const recordPath = "/api/saacms/v1/:collection/:id"

const getRecord = Effect.gen(function*() {
  const key = yield* recordKey
  const request = yield* HttpServerRequest.HttpServerRequest
  const stored = (yield* RecordStore).get(key)
  if (stored === undefined) return RealtimeHttp.errorResponse(404, "not_found", "no such record")
  if (request.headers["if-none-match"] === stored.etag) {
    return HttpServerResponse.empty({ status: 304, headers: { ETag: stored.etag } })
  }
  return HttpServerResponse.text(stored.body, { contentType: "application/json", headers: { ETag: stored.etag } })
})

const putRecord = Effect.gen(function*() {
  const key = yield* recordKey
  const request = yield* HttpServerRequest.HttpServerRequest
  const { maxFrameBytes } = yield* RealtimeConfig.RealtimeConfig
  const text = yield* readBody(request, maxFrameBytes + bodyAllowance)
  if (nestsDeeperThan(text, Frame.maxDepth)) {
    return yield* new RealtimeError.InvalidEvent({ reason: `record nests deeper than ${Frame.maxDepth} levels` })
  }
  const record = yield* Effect.try(() => JSON.parse(text) as unknown)
  // The store keeps the canonical text: padding in a body costs no memory, and
  // the ETag names the record, not its formatting.
  const body = JSON.stringify(record)
  const etag = yield* contentEtag(body)
  const [collection, id] = key.split(":") as [string, string]
  yield* Effect.flatMap(Realtime.Realtime, (realtime) =>
    realtime.publish({ type: "changed", slug: collection, id, record, etag }))
  ;(yield* RecordStore).set(key, { body, etag })
  return HttpServerResponse.text(body, { contentType: "application/json", headers: { ETag: etag } })
})

const deleteRecord = Effect.gen(function*() {
  const key = yield* recordKey
  const store = yield* RecordStore
  if (!store.delete(key)) return RealtimeHttp.errorResponse(404, "not_found", "no such record")
  const [collection, id] = key.split(":") as [string, string]
  yield* Effect.flatMap(Realtime.Realtime, (realtime) => realtime.publish({ type: "deleted", slug: collection, id }))
  return HttpServerResponse.empty({ status: 204 })
})

type DemoError =
  | RealtimeError.RealtimeError
  | HttpServerError.RequestError
  | Cause.UnknownException
  | BodyTooLarge

const handled = <R>(effect: Effect.Effect<HttpServerResponse.HttpServerResponse, DemoError, R>) =>
  Effect.catchAll(effect, (error) => {
    switch (error._tag) {
      case "UnknownException":
        return Effect.succeed(RealtimeHttp.errorResponse(400, "invalid_json", "request body is not JSON"))
      // The rest of the body is not read: close the connection rather than drain it.
      case "BodyTooLarge":
        return Effect.succeed(
          RealtimeHttp.errorResponse(413, "frame_too_large", `request body is larger than ${error.limit} bytes`).pipe(
            HttpServerResponse.setHeader("Connection", "close")
          )
        )
      case "InvalidResourceKey":
      case "InvalidEvent":
      case "FrameTooLarge":
      case "InvalidLastEventId":
      case "InvalidTopic":
      case "TooManySubscribers":
      case "Unavailable": {
        // The package's one mapping; an unreachable history store (Redis) is logged: nothing was published, try again.
        const { error: code, message, retryAfter, status } = RealtimeError.toHttp(error)
        const response = RealtimeHttp.errorResponse(status, code, message)
        const answer = retryAfter === undefined ? response : HttpServerResponse.setHeader(response, "Retry-After", String(retryAfter))
        return error._tag === "Unavailable"
          ? Effect.as(Effect.logWarning("realtime backend unavailable", error.reason), answer)
          : Effect.succeed(answer)
      }
      default:
        return Effect.logError("demo host request failed", error).pipe(
          Effect.as(RealtimeHttp.errorResponse(500, "internal", "internal error"))
        )
    }
  })

/** The demo's routes: records, the realtime subscribe routes, the live page (`Page.ts`) and `GET /metrics`. */
export const routes = Layer.mergeAll(
  RealtimeHttp.layer,
  Page.routes,
  Metrics.layerHttp,
  HttpLayerRouter.addAll([
    HttpLayerRouter.route("GET", recordPath, handled(getRecord)),
    HttpLayerRouter.route("PUT", recordPath, handled(putRecord)),
    HttpLayerRouter.route("DELETE", recordPath, handled(deleteRecord))
  ])
)

/**
 * The realtime core: in memory, or over Redis when `REDIS_URL` is set (then
 * several instances share fan-out and history; `REDIS_KEY_PREFIX` optional).
 * The demo's record store stays per instance: a real host has a database.
 */
const backend: Layer.Layer<Realtime.Realtime, ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.map(
    Config.all({
      url: Config.option(Config.string("REDIS_URL")),
      keyPrefix: Config.option(Config.string("REDIS_KEY_PREFIX"))
    }),
    ({ keyPrefix, url }) =>
      Option.isNone(url)
        ? Realtime.layerMemory
        : Layer.unwrapEffect(Effect.map(
          Effect.promise(() => import("../Redis.js")),
          (Redis) => Redis.layer({ url: url.value, keyPrefix: Option.getOrUndefined(keyPrefix) })
        ))
  )
)

/**
 * The whole demo app for a server layer to run (`HttpServer` still to provide).
 * `keepOpen` runs as each subscribe request arrives: the runtime's way to lift
 * its idle timeout for that connection, since a stream is silent between
 * heartbeats; every other connection keeps the timeout.
 */
export const make = (keepOpen: (request: HttpServerRequest.HttpServerRequest) => Effect.Effect<void>) =>
  HttpLayerRouter.serve(routes, {
    routerConfig: RealtimeHttp.routerConfig,
    middleware: (app) =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
        RealtimeHttp.isSubscribeRequest(request) ? Effect.zipRight(keepOpen(request), app) : app)
  }).pipe(
    Layer.provide(Layer.merge(RecordStore.Default, backend)),
    Layer.provide(RealtimeConfig.layerConfig()),
    HttpMiddleware.withTracerDisabledWhen(RealtimeHttp.isSubscribeRequest)
  )

/** The demo app with nothing to lift a server's idle timeout (for in-process tests with short streams). */
export const layer = make(() => Effect.void)
