/**
 * The subscribe route, `GET /api/saacms/v1/:collection/:id/subscribe`, as an
 * `HttpLayerRouter` layer and as a plain handler the adapters reuse.
 *
 * @since 0.1.0
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
import * as Access from "./Access.js"
import * as Cors from "./Cors.js"
import * as Event from "./Event.js"
import * as Frame from "./Frame.js"
import * as Outlet from "./internal/outlet.js"
import { NodeBody } from "./internal/nodeBody.js"
import * as Tracing from "./internal/tracing.js"
import * as Metrics from "./Metrics.js"
import * as Multiplex from "./Multiplex.js"
import * as Realtime from "./Realtime.js"
import * as RealtimeConfig from "./RealtimeConfig.js"
import * as RealtimeError from "./RealtimeError.js"

/**
 * The route, in the form the reference's plugin uses as its `routes` key.
 *
 * @since 0.1.0
 * @category models
 */
export const path = "/api/saacms/v1/:collection/:id/subscribe" as const

/**
 * The multiplexed route: one stream for the `?topic=` records
 * (`collection/id`) and collections (`collection/*`), repeated.
 *
 * @since 0.1.0
 * @category models
 */
export const multiplexPath = "/api/saacms/v1/subscribe" as const

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
  const header = headerOf(request, "last-event-id")
  if (header !== undefined && header !== "") return header
  const query = request.url.indexOf("?")
  if (query === -1) return undefined
  const param = new URLSearchParams(request.url.slice(query + 1)).get("lastEventId")
  return param === null || param === "" ? undefined : param
}

/**
 * The answer to a CORS preflight (`OPTIONS`) for the subscribe route: 204 with
 * the allowed method and headers, or 403 for an origin that is not allowed.
 *
 * @since 0.1.0
 * @category handlers
 */
export const preflight: Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest> =
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const headers = Cors.headers(yield* Cors.Cors, request.headers["origin"])
    if (headers["Access-Control-Allow-Origin"] === undefined) return errorResponse(403, "forbidden", "origin not allowed")
    return HttpServerResponse.empty({
      status: 204,
      headers: {
        ...headers,
        "Access-Control-Allow-Methods": "GET, HEAD",
        "Access-Control-Allow-Headers": "Last-Event-ID, Authorization, Cache-Control",
        "Access-Control-Max-Age": "600"
      }
    })
  })

// A request id for the logs: the client's or proxy's when it is a plain token, else a fresh one.
const requestIdOf = (request: HttpServerRequest.HttpServerRequest): string => {
  const given = headerOf(request, "x-request-id") ?? headerOf(request, "cf-ray")
  return given !== undefined && /^[A-Za-z0-9._:-]{1,128}$/.test(given) ? given : crypto.randomUUID()
}

/**
 * Answer one subscribe request: validate the key and the last event id (400
 * with a JSON body otherwise), ask `Access` (401/403 otherwise), then stream
 * the record until the grant ends. Nothing is registered unless the stream
 * opens; every refusal is logged with the key and the request id, counted
 * (`Metrics.refusals`), and no internal detail reaches the client. Traced as
 * one span, `saacms.realtime.subscribe`, ended when the response is ready
 * (the stream itself is not traced).
 *
 * @since 0.1.0
 * @category handlers
 */
export const subscribe: Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  never,
  Realtime.Realtime | PathParams | HttpServerRequest.HttpServerRequest
> = Effect.flatMap(
  Effect.context<PathParams | HttpServerRequest.HttpServerRequest>(),
  (context) => respond(Context.get(context, PathParams), Context.get(context, HttpServerRequest.HttpServerRequest))
)

/**
 * `subscribe` for a request the host has already routed, without providing
 * its path parameters and request as services (the PluginDef's route).
 *
 * @since 0.1.0
 * @category handlers
 */
export const respond = (
  params: PathParams["Type"],
  request: HttpServerRequest.HttpServerRequest
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, Realtime.Realtime> =>
  traced("saacms.realtime.subscribe", (span) =>
    withCors(request, (cors) => {
      // Refusals are logged with the record and the request id; an accepted
      // subscribe logs nothing and draws no id.
      const log = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.annotateLogs(effect, { requestId: requestIdOf(request), collection: params.collection ?? "", id: params.id ?? "" })
      return open(params, request, cors, log, span)
    }))

// What `answer` answers, with the CORS headers for the request's origin
// (none, and no copies, when CORS is off).
const withCors = <R>(
  request: HttpServerRequest.HttpServerRequest,
  answer: (cors: Record<string, string>) => Effect.Effect<HttpServerResponse.HttpServerResponse, never, R>
) =>
  Effect.flatMap(Cors.Cors, (options) => {
    const cors = options === undefined ? noCors : Cors.headers(options, headerOf(request, "origin"))
    const answered = answer(cors)
    return cors === noCors ? answered : Effect.map(answered, HttpServerResponse.setHeaders(cors))
  })

// One span around answering a subscribe request (the parent of what
// `authorize` traces), with the response's status; it ends when the response
// is ready, so an open stream keeps nothing of it.
const traced = <R>(
  name: string,
  answer: (span: Tracer.Span) => Effect.Effect<HttpServerResponse.HttpServerResponse, never, R>
) =>
  Tracing.traced(name, (span) =>
    Effect.map(answer(span), (response) => {
      span.attribute("saacms.realtime.status", response.status)
      return response
    }))

// A refusal: counted by its reason, and named on the request's span.
const refused = (span: Tracer.Span, reason: Metrics.RefusalReason) => {
  Metrics.refused(reason)
  span.attribute("saacms.realtime.refusal", reason)
}

// `authorize` said no (401 or 403): refused, logged with `annotations`, answered with its reason.
const denial = (
  span: Tracer.Span,
  log: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>,
  status: number,
  reason: string | undefined,
  annotations: Record<string, unknown>
) => {
  const code = status === 401 ? "unauthorized" : "forbidden"
  refused(span, code)
  return Effect.as(
    log(Effect.logInfo("subscribe denied").pipe(Effect.annotateLogs({ ...annotations, status }))),
    errorResponse(status, code, reason ?? denialReason(status))
  )
}

// The stream's response options, with the CORS headers for the request's origin.
const streamOptionsWith = (cors: Record<string, string>): typeof streamOptions =>
  cors === noCors ? streamOptions : { ...streamOptions, headers: { ...Frame.headers, ...cors } }

const open = (
  params: PathParams["Type"],
  request: HttpServerRequest.HttpServerRequest,
  cors: Record<string, string>,
  log: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>,
  span: Tracer.Span
) =>
  Effect.gen(function*() {
    const key = yield* Event.resourceKey(params.collection, params.id)
    span.attribute("saacms.realtime.key", key)
    const raw = lastEventId(request)
    span.attribute("saacms.realtime.resume", raw !== undefined)
    const last = raw === undefined ? undefined : yield* Event.decodeLastEventId(raw)
    const access = yield* Access.Access
    const authorize = access.authorize
    const decision = authorize === undefined ? allowed : yield* authorize({
      key,
      collection: params.collection!,
      id: params.id!,
      method: request.method,
      url: new URL(request.url, "http://localhost"),
      headers: headersFor(request),
      cookies: request.cookies
    }).pipe(Effect.catchAllCause(authorizeFailed(log)))
    if (decision._tag === "Deny") return yield* denial(span, log, decision.status, decision.reason, { key })
    if (decision.expiresAt !== undefined && decision.expiresAt <= (yield* Clock.currentTimeMillis)) {
      refused(span, "unauthorized")
      return errorResponse(401, "unauthorized", "the grant has expired")
    }
    const options = streamOptionsWith(cors)
    if (request.method === "HEAD") return HttpServerResponse.empty({ ...options, status: 200 })
    const grant = grantOf(decision, access.recheck, () => key)
    const realtime = yield* Realtime.Realtime
    // Opened before the response starts, so a refusal is a status, not a cut stream.
    return yield* streamResponse(yield* realtime.open(key, last, grant), request, options)
  }).pipe(refusals(log, span))

// What a subscription may see: the grant's expiry, and the recheck of each
// event (of the record `keyOf` names for it).
const grantOf = (
  decision: Access.Allow,
  recheck: Access.Recheck | undefined,
  keyOf: (event: Event.RealtimeEvent) => Event.ResourceKey
): Realtime.Grant | undefined =>
  decision === allowed && recheck === undefined ? undefined : {
    expiresAt: decision.expiresAt,
    subject: decision.subject,
    canSee: recheck === undefined ? undefined : (event) => recheck(decision.subject, event, keyOf(event))
  }

const streamResponse = (
  subscriber: Realtime.Subscriber,
  request: HttpServerRequest.HttpServerRequest,
  options: typeof streamOptions
) =>
  Effect.gen(function*() {
    // A server that speaks web Responses (Bun, workerd, web handlers) gets a
    // ReadableStream fed straight from the subscriber's mailbox.
    if (request.source instanceof Request) return HttpServerResponse.raw(subscriber.toReadableStream(), options)
    // Node's server pipes a raw body into its response: an iterator over the
    // mailbox, closed when the request's scope ends (the client left).
    const scope = yield* Effect.serviceOption(Scope.Scope)
    if (subscriber instanceof Outlet.Outlet && isNodeRequest(request.source) && scope._tag === "Some") {
      yield* Scope.addFinalizer(scope.value, Effect.sync(() => subscriber.close()))
      return HttpServerResponse.raw(new NodeBody(subscriber), options)
    }
    return HttpServerResponse.stream(Realtime.toStream(subscriber), options)
  })

/**
 * Answer one multiplexed subscribe request (`GET /api/saacms/v1/subscribe`):
 * validate the topics (400 `invalid_topic`, or `too_many_topics` past
 * `maxTopics`) and the cursor (400 `invalid_last_event_id`), ask `Access`
 * for each topic (a denied topic gets its own `saacms-denied` frame; when
 * every topic is denied, the first denial answers), then stream them all.
 *
 * @since 0.1.0
 * @category handlers
 */
export const respondMany = (
  request: HttpServerRequest.HttpServerRequest
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, Realtime.Realtime> =>
  traced("saacms.realtime.subscribe_many", (span) =>
    withCors(request, (cors) => {
      const log = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.annotateLogs(effect, { requestId: requestIdOf(request), route: multiplexPath })
      return openMany(request, cors, log, span)
    }))

const openMany = (
  request: HttpServerRequest.HttpServerRequest,
  cors: Record<string, string>,
  log: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>,
  span: Tracer.Span
) =>
  Effect.gen(function*() {
    const config = yield* RealtimeConfig.RealtimeConfig
    const url = new URL(request.url, "http://localhost")
    const given = url.searchParams.getAll("topic")
    span.attribute("saacms.realtime.topics", given.length)
    const topics = yield* Multiplex.parseTopics(given, config.maxTopics)
    const cursor = lastEventId(request)
    span.attribute("saacms.realtime.resume", cursor !== undefined)
    // Refused before anyone is asked.
    if (cursor !== undefined) yield* Multiplex.decodeCursor(cursor, Multiplex.listHash(topics), topics.length)
    const access = yield* Access.Access
    const authorize = access.authorize
    let headers: Headers | undefined
    const decisions = authorize === undefined ? topics.map(() => allowed) : yield* Effect.forEach(topics, (topic) =>
      authorize({
        key: topic.key,
        collection: topic.collection,
        id: topic.id ?? "*",
        topic: topic.id === undefined ? "collection" : "record",
        method: request.method,
        url,
        headers: headers ??= headersFor(request),
        cookies: request.cookies
      }), { concurrency: "unbounded" }).pipe(Effect.catchAllCause(authorizeFailed(log)))
    const now = yield* Clock.currentTimeMillis
    const recheck = access.recheck
    const requests = topics.map((topic, i): Realtime.TopicRequest => {
      const decision = decisions[i]!
      if (decision._tag === "Deny") {
        return { topic, denied: { status: decision.status, reason: decision.reason ?? denialReason(decision.status) } }
      }
      if (decision.expiresAt !== undefined && decision.expiresAt <= now) {
        return { topic, denied: { status: 401, reason: "the grant has expired" } }
      }
      return {
        topic,
        grant: grantOf(decision, recheck, Event.keyOf)
      }
    })
    const denied = requests.filter((request) => request.denied !== undefined)
    if (denied.length > 0) span.attribute("saacms.realtime.denied", denied.length)
    if (denied.length === requests.length) {
      const first = denied[0]!.denied!
      return yield* denial(span, log, first.status, first.reason, {})
    }
    const options = streamOptionsWith(cors)
    if (request.method === "HEAD") return HttpServerResponse.empty({ ...options, status: 200 })
    const realtime = yield* Realtime.Realtime
    return yield* streamResponse(yield* realtime.openMany(requests, cursor), request, options)
  }).pipe(refusals(log, span))

const denialReason = (status: number) => status === 401 ? "authentication required" : "access denied"

const refusals = (log: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>, span: Tracer.Span) =>
<R>(
  effect: Effect.Effect<
    HttpServerResponse.HttpServerResponse,
    | RealtimeError.InvalidResourceKey
    | RealtimeError.InvalidLastEventId
    | RealtimeError.InvalidTopic
    | AuthorizeFailed
    | RealtimeError.TooManySubscribers
    | RealtimeError.Unavailable,
    R
  >
) =>
  effect.pipe(
    Effect.catchAll((error) => {
      if (error._tag === "AuthorizeFailed") {
        refused(span, "internal")
        return Effect.succeed(errorResponse(500, "internal", "internal error"))
      }
      // The package's one mapping (`RealtimeError.toHttp`); here the logs and the retry hint.
      const answer = RealtimeError.toHttp(error)
      refused(span, answer.error as Metrics.RefusalReason)
      const response = errorResponse(answer.status, answer.error, answer.message)
      switch (error._tag) {
        case "TooManySubscribers":
          return Effect.flatMap(retryAfter, (seconds) =>
            Effect.as(
              log(Effect.logWarning("subscriber limit reached").pipe(Effect.annotateLogs({ scope: error.scope, limit: error.limit }))),
              HttpServerResponse.setHeader(response, "Retry-After", String(seconds))
            ))
        // The reason stays in the log: it may name internals the client has no business seeing.
        case "Unavailable":
          return Effect.as(
            log(Effect.logWarning("realtime backend unavailable").pipe(Effect.annotateLogs("reason", error.reason))),
            HttpServerResponse.setHeader(response, "Retry-After", String(answer.retryAfter ?? 1))
          )
        default:
          return Effect.as(
            log(Effect.logInfo("subscribe refused").pipe(Effect.annotateLogs({ status: answer.status, error: answer.error }))),
            response
          )
      }
    })
  )

const allowed = Access.allow()

// CORS off: no headers to add (the common case, spared its copies).
const noCors: Record<string, string> = {}
const streamOptions = { contentType: Frame.headers["Content-Type"]!, headers: Frame.headers }

// One request header; a web request's are read where they are, not converted all.
const headerOf = (request: HttpServerRequest.HttpServerRequest, name: string): string | undefined => {
  if (request.source instanceof Request) return request.source.headers.get(name) ?? undefined
  return request.headers[name]
}

// An `http.IncomingMessage` (a Node `Readable`).
const isNodeRequest = (source: unknown): boolean =>
  typeof source === "object" && source !== null && typeof (source as { pipe?: unknown }).pipe === "function"

class AuthorizeFailed extends Data.TaggedError("AuthorizeFailed") {}

// A failing `authorize` answers 500; its cause goes to the log only.
const authorizeFailed =
  (log: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>) => (cause: Cause.Cause<unknown>) =>
    Effect.zipRight(log(Effect.logError("authorize failed", cause)), Effect.fail(new AuthorizeFailed()))

// The request's headers as `authorize` sees them: a web `Headers` of its own.
const headersFor = (request: HttpServerRequest.HttpServerRequest): Headers =>
  request.source instanceof Request
    ? new Headers(request.source.headers)
    : new Headers(request.headers as Record<string, string>)

// Seconds before a refused client should come back: the retry hint, jittered the same way.
const retryAfter = Effect.gen(function*() {
  const config = yield* RealtimeConfig.RealtimeConfig
  const ms = Math.max(config.retryMs, 1000) + (yield* Random.nextIntBetween(0, config.retryJitterMs + 1))
  return Math.ceil(ms / 1000)
})

/**
 * The subscribe route for an Effect app's router (and its CORS preflight);
 * requires `Realtime`. `Access.layer` and `Cors.layer` configure it.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<
  never,
  never,
  HttpLayerRouter.HttpRouter | HttpLayerRouter.Request<"Requires", Realtime.Realtime>
> = Layer.mergeAll(
  HttpLayerRouter.add(
    "GET",
    path,
    Effect.zipWith(HttpLayerRouter.params, HttpServerRequest.HttpServerRequest, respond).pipe(Effect.flatten)
  ),
  HttpLayerRouter.add("OPTIONS", path, preflight),
  HttpLayerRouter.add("GET", multiplexPath, Effect.flatMap(HttpServerRequest.HttpServerRequest, respondMany)),
  HttpLayerRouter.add("OPTIONS", multiplexPath, preflight)
)
