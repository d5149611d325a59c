/**
 * The subscribe route, `GET /api/saacms/v1/:collection/:id/subscribe`, as an
 * `HttpLayerRouter` layer and as a plain handler the adapters reuse.
 *
 * @since 0.1.0
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Event from "./Event.js"
import * as Frame from "./Frame.js"
import * as Realtime from "./Realtime.js"

/**
 * The route, in the form the reference's plugin uses as its `routes` key.
 *
 * @since 0.1.0
 * @category models
 */
export const path = "/api/saacms/v1/:collection/:id/subscribe" as const

/**
 * The router options the subscribe route needs. find-my-way answers 404 for a
 * path parameter longer than `maxParamLength` (100 by default), below the
 * 128 characters `Event.RecordId` allows; with 1024, every id up to that length
 * reaches the handler and a too-long one gets the JSON 400. Serve with
 * `HttpLayerRouter.serve(RealtimeHttp.layer, { routerConfig: RealtimeHttp.routerConfig })`.
 *
 * @since 0.1.0
 * @category models
 */
export const routerConfig: { readonly maxParamLength: number } = { maxParamLength: 1024 }

/**
 * `true` for requests to the subscribe route. A subscribe request's fiber and
 * span stay reachable for as long as its stream is open, so hosts that trace
 * requests can leave these out:
 * `server.pipe(HttpMiddleware.withTracerDisabledWhen(RealtimeHttp.isSubscribeRequest))`.
 *
 * @since 0.1.0
 * @category utils
 */
export const isSubscribeRequest = (request: HttpServerRequest.HttpServerRequest): boolean => {
  const end = request.url.indexOf("?")
  return (end === -1 ? request.url : request.url.slice(0, end)).endsWith("/subscribe")
}

/**
 * The path parameters of one subscribe request, however the host routed it.
 *
 * @since 0.1.0
 * @category tags
 */
export class PathParams extends Context.Tag("@saacms/realtime/RealtimeHttp/PathParams")<PathParams, {
  readonly collection?: string | undefined
  readonly id?: string | undefined
}>() {}

/**
 * A JSON error response: `{ "error": code, "message": message }`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const errorResponse = (status: number, error: string, message: string): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson({ error, message }, { status })

/**
 * The client's last event id: the `Last-Event-ID` header, else the
 * `?lastEventId=` query parameter (an `EventSource` cannot set headers after a
 * page reload). Empty values count as absent.
 *
 * @since 0.1.0
 * @category utils
 */
export const lastEventId = (request: HttpServerRequest.HttpServerRequest): string | undefined => {
  const header = request.headers["last-event-id"]
  if (header !== undefined && header !== "") return header
  const query = request.url.indexOf("?")
  if (query === -1) return undefined
  const param = new URLSearchParams(request.url.slice(query + 1)).get("lastEventId")
  return param === null || param === "" ? undefined : param
}

/**
 * Answer one subscribe request: validate the key and the last event id (400
 * with a JSON body otherwise, nothing registered), then stream the record.
 *
 * @since 0.1.0
 * @category handlers
 */
export const subscribe: Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  never,
  Realtime.Realtime | PathParams | HttpServerRequest.HttpServerRequest
> = Effect.gen(function*() {
  const params = yield* PathParams
  const request = yield* HttpServerRequest.HttpServerRequest
  const key = yield* Event.resourceKey(params.collection, params.id)
  const raw = lastEventId(request)
  const last = raw === undefined ? undefined : yield* Event.decodeLastEventId(raw)
  const realtime = yield* Realtime.Realtime
  const options = { contentType: Frame.headers["Content-Type"]!, headers: Frame.headers }
  if (request.method === "HEAD") return HttpServerResponse.empty({ ...options, status: 200 })
  if (request.source instanceof Request) {
    // A server that speaks web Responses (Bun, workerd, web handlers) gets a
    // ReadableStream fed straight from the subscriber's mailbox.
    const subscriber = yield* realtime.open(key, last)
    return HttpServerResponse.raw(subscriber.toReadableStream(), options)
  }
  return HttpServerResponse.stream(realtime.subscribe(key, last), options)
}).pipe(
  Effect.catchTags({
    InvalidResourceKey: (error) => Effect.succeed(errorResponse(400, "invalid_resource_key", error.reason)),
    InvalidLastEventId: (error) =>
      Effect.succeed(errorResponse(400, "invalid_last_event_id", `Last-Event-ID ${error.reason}`)),
    // The reason stays in the log: it may name internals the client has no business seeing.
    Unavailable: (error) =>
      Effect.as(
        Effect.logWarning("realtime backend unavailable").pipe(Effect.annotateLogs("reason", error.reason)),
        errorResponse(503, "unavailable", "the realtime backend is unavailable; retry later").pipe(
          HttpServerResponse.setHeader("Retry-After", "1")
        )
      )
  })
)

/**
 * The subscribe route for an Effect app's router; requires `Realtime`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<
  never,
  never,
  HttpLayerRouter.HttpRouter | HttpLayerRouter.Request<"Requires", Realtime.Realtime>
> = HttpLayerRouter.add(
  "GET",
  path,
  Effect.flatMap(HttpLayerRouter.params, (params) => Effect.provideService(subscribe, PathParams, params))
)
