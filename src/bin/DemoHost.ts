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
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Event from "../Event.js"
import * as Realtime from "../Realtime.js"
import * as RealtimeConfig from "../RealtimeConfig.js"
import type * as RealtimeError from "../RealtimeError.js"
import * as RealtimeHttp from "../RealtimeHttp.js"

interface StoredRecord {
  readonly body: string
  readonly etag: string
}

/** Demo-only record store: one `Map`, keyed like the realtime core. */
export class RecordStore extends Effect.Service<RecordStore>()("demo/RecordStore", {
  sync: () => new Map<Event.ResourceKey, StoredRecord>()
}) {}

const contentEtag = (body: string) =>
  Effect.promise(() => crypto.subtle.digest("SHA-256", new TextEncoder().encode(body))).pipe(
    Effect.map((digest) => `"${Buffer.from(digest).subarray(0, 16).toString("base64url")}"`)
  )

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
  const body = yield* request.text
  const record = yield* Effect.try(() => JSON.parse(body) as unknown)
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

const handled = <R>(effect: Effect.Effect<HttpServerResponse.HttpServerResponse, DemoError, R>) =>
  Effect.catchAll(effect, (error) => {
    switch (error._tag) {
      case "InvalidResourceKey":
        return Effect.succeed(RealtimeHttp.errorResponse(400, "invalid_resource_key", error.reason))
      case "InvalidEvent":
        return Effect.succeed(RealtimeHttp.errorResponse(400, "invalid_record", error.reason))
      case "UnknownException":
        return Effect.succeed(RealtimeHttp.errorResponse(400, "invalid_json", "request body is not JSON"))
      case "FrameTooLarge":
        return Effect.succeed(RealtimeHttp.errorResponse(413, "record_too_large", "record is larger than maxFrameBytes"))
      default:
        return Effect.logError("demo host request failed", error).pipe(
          Effect.as(RealtimeHttp.errorResponse(500, "internal", "internal error"))
        )
    }
  })

/** The demo's routes: records plus the realtime subscribe route. */
export const routes = Layer.mergeAll(
  RealtimeHttp.layer,
  HttpLayerRouter.addAll([
    HttpLayerRouter.route("GET", recordPath, handled(getRecord)),
    HttpLayerRouter.route("PUT", recordPath, handled(putRecord)),
    HttpLayerRouter.route("DELETE", recordPath, handled(deleteRecord))
  ])
)

/** The whole demo app for a server layer to run (`HttpServer` still to provide). */
export const layer = HttpLayerRouter.serve(routes, { routerConfig: RealtimeHttp.routerConfig }).pipe(
  Layer.provide(Layer.merge(RecordStore.Default, Realtime.layerMemory)),
  Layer.provide(RealtimeConfig.layerConfig),
  HttpMiddleware.withTracerDisabledWhen(RealtimeHttp.isSubscribeRequest)
)
