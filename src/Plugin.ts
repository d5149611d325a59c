/**
 * `realtime(options)`: the reference's saacms `PluginDef`, as a thin adapter
 * over one `ManagedRuntime` of the Effect core per plugin instance.
 *
 * @since 0.1.0
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Access from "./Access.js"
import * as Cors from "./Cors.js"
import * as Namespace from "./DurableObject/Namespace.js"
import * as Event from "./Event.js"
import * as Hub from "./Hub.js"
import * as Logging from "./internal/logging.js"
import * as Realtime from "./Realtime.js"
import * as RealtimeConfig from "./RealtimeConfig.js"
import * as RealtimeHttp from "./RealtimeHttp.js"

/**
 * What the route handler reads from a Hono-style context: the path params, as
 * the reference does, and the raw `Request` (headers, query, abort signal).
 *
 * @since 0.1.0
 * @category models
 */
export interface RealtimeRouteContext {
  readonly req: {
    param(name: string): string | undefined
    readonly raw?: Request | undefined
  }
}

/**
 * The reference's options plus the bounds of `RealtimeConfig.Options`. With a
 * `binding` (the `DurableObjectNamespace` of `SaacmsRealtimeDO`), subscribe and
 * publish go through the record's Durable Object; retention, heartbeat and the
 * other bounds are then the object's, set with its `REALTIME_*` variables.
 *
 * @since 0.1.0
 * @category models
 */
export type RealtimeOptions = RealtimeConfig.Options & {
  readonly binding?: Namespace.DurableObjectNamespaceLike | undefined
  /**
   * Share fan-out and history with every instance on the same Redis
   * (`{ url: "redis://127.0.0.1:6379/3", keyPrefix? }`); `ioredis` is loaded
   * only then.
   */
  readonly redis?: { readonly url: string; readonly keyPrefix?: string | undefined } | undefined
  /**
   * With a `binding`: `"socket"` (the default) keeps each client's stream and
   * its heartbeat (`heartbeatMs`) in the Worker and reads the record's object
   * over a hibernatable WebSocket, so the object sleeps between events;
   * `"stream"` has the object hold the stream, as the reference does (the
   * object then stays in memory while anyone watches).
   */
  readonly durableObjectMode?: Namespace.Mode | undefined
  /** The reference's; the binding is passed as `binding`, so the name is not used. */
  readonly bindingName?: string | undefined
  /**
   * Decide each subscribe request (see `Access`): return `Access.allow(...)`,
   * `Access.deny(401 | 403, reason)`, or a boolean (`false` is 403), or a
   * Promise of one. A throw or rejection answers 500 and opens nothing.
   */
  readonly authorize?: ((request: Access.AccessRequest) => Access.DecisionInput | Promise<Access.DecisionInput>) | undefined
  /**
   * Run before each live record event goes to a subscriber: `false` ends its
   * stream with `saacms-revoked`. With a `binding`, give it to
   * `SaacmsRealtimeDO.configure({ recheck })` instead (the grant's subject is forwarded).
   */
  readonly recheck?: Access.Recheck | undefined
  /** Cross-origin access for browsers on other origins; off by default. */
  readonly cors?: Cors.Options | undefined
} & RealtimeConfig.LoggingOptions

/**
 * @since 0.1.0
 * @category models
 */
export type RealtimeEvent = typeof Event.RealtimeEvent.Encoded

/**
 * The publisher the host calls (`services.realtime`).
 *
 * @since 0.1.0
 * @category models
 */
export interface RealtimePublisher {
  /** Fan out one event; rejects with `InvalidEvent`, `InvalidResourceKey`, `FrameTooLarge` or (Durable Object unreachable) `Unavailable`. */
  publish(event: RealtimeEvent): Promise<Realtime.Published>
  /** End every open stream and release the runtime. */
  stop(): Promise<void>
  /** @deprecated compat-only: the reference's test accessor; use `Hub.subscriberCount`. */
  __subscriberCount(slug: string, id: string): number
}

/**
 * The saacms plugin object.
 *
 * @since 0.1.0
 * @category models
 */
export interface PluginDef {
  readonly name: "@saacms/plugin-realtime"
  readonly version: string
  readonly routes: {
    readonly "GET /api/saacms/v1/:collection/:id/subscribe": (c: RealtimeRouteContext) => Promise<Response>
    /** The CORS preflight, present when `cors` is set. */
    readonly "OPTIONS /api/saacms/v1/:collection/:id/subscribe"?: (c: RealtimeRouteContext) => Promise<Response>
    /** One stream for many `?topic=` records and collections (see `RealtimeHttp.respondMany`). */
    readonly "GET /api/saacms/v1/subscribe": (c: RealtimeRouteContext) => Promise<Response>
    /** Its CORS preflight, present when `cors` is set. */
    readonly "OPTIONS /api/saacms/v1/subscribe"?: (c: RealtimeRouteContext) => Promise<Response>
  }
  readonly services: { readonly realtime: RealtimePublisher }
}

// Loaded at run time only when `redis` is set, by a path bundlers do not
// follow: a Worker built with esbuild or wrangler must not pull in ioredis.
const redisModule = "./Redis.js"
const loadRedis = (): Promise<typeof import("./Redis.js")> => import(redisModule)

/**
 * Build one plugin instance with its own core (two calls share nothing).
 * Throws synchronously on invalid options.
 *
 * @since 0.1.0
 * @category constructors
 */
export const realtime = (options: RealtimeOptions = {}): PluginDef => {
  // Decoded (and throwing on invalid options) here, synchronously.
  const config = Layer.succeed(
    RealtimeConfig.RealtimeConfig,
    RealtimeConfig.resolve(Schema.decodeUnknownSync(RealtimeConfig.Options)(options))
  )
  Logging.validate(options)
  const redis = options.redis
  const backend: Layer.Layer<Realtime.Realtime> = options.binding !== undefined
    ? Namespace.layer(options.binding, options.durableObjectMode).pipe(Layer.provide(config))
    : redis !== undefined
    ? Layer.unwrapEffect(Effect.promise(() => loadRedis()).pipe(Effect.map((Redis) => Redis.layer(redis)))).pipe(
      Layer.provide(config)
    )
    : Realtime.layerMemory.pipe(Layer.provide(config))
  const http = Layer.mergeAll(
    config,
    Access.layerPromise({ authorize: options.authorize, recheck: options.recheck }),
    options.cors === undefined ? Layer.empty : Cors.layer(options.cors)
  )
  // The logging first: it applies to the backend's start too.
  const runtime = ManagedRuntime.make(Layer.merge(backend, http).pipe(Layer.provideMerge(Logging.layer(options))))
  let stopped = false

  // One promise per call, settled as soon as the fiber ends (at once when it
  // never suspends: the in-memory core publishes and subscribes synchronously).
  const run = <A, E>(effect: Effect.Effect<A, E, Realtime.Realtime>): Promise<A> =>
    new Promise((resolve, reject) =>
      runtime.runFork(effect).addObserver((exit) =>
        Exit.isSuccess(exit) ? resolve(exit.value) : reject(Cause.squash(exit.cause))
      )
    )

  // The host routed the request: its path params come from the context. The
  // response body is fed by the subscriber's mailbox, so nothing waits per client.
  const subscribe = (c: RealtimeRouteContext): Promise<Response> =>
    run(Effect.map(
      RealtimeHttp.respond(
        { collection: c.req.param("collection"), id: c.req.param("id") },
        HttpServerRequest.fromWeb(c.req.raw ?? new Request("http://localhost/"))
      ),
      HttpServerResponse.toWeb
    ))

  const subscribeMany = (c: RealtimeRouteContext): Promise<Response> =>
    run(Effect.map(
      RealtimeHttp.respondMany(HttpServerRequest.fromWeb(c.req.raw ?? new Request("http://localhost/"))),
      HttpServerResponse.toWeb
    ))

  const preflight = (c: RealtimeRouteContext): Promise<Response> =>
    run(RealtimeHttp.preflight.pipe(
      Effect.provideService(HttpServerRequest.HttpServerRequest, HttpServerRequest.fromWeb(c.req.raw ?? new Request("http://localhost/"))),
      Effect.map((response) => HttpServerResponse.toWeb(response))
    ))

  // In memory the core publishes as a plain call (no fiber per publish), once
  // the first publish has found it; other backends go through the runtime.
  let direct: NonNullable<Realtime.Realtime["Type"]["unsafePublish"]> | undefined = undefined
  const publish = (event: RealtimeEvent): Promise<Realtime.Published> => {
    if (direct !== undefined) {
      try {
        const published = direct(event)
        return published._tag === "Right" ? Promise.resolve(published.right) : Promise.reject(published.left)
      } catch (defect) {
        return Promise.reject(defect)
      }
    }
    return run(Effect.flatMap(Realtime.Realtime, (realtime) => {
      if (!stopped) direct = realtime.unsafePublish
      return realtime.publish(event)
    }))
  }

  const stoppedResponse = () =>
    Promise.resolve(Response.json({ error: "stopped", message: "realtime plugin stopped" }, { status: 503 }))

  return {
    name: "@saacms/plugin-realtime",
    version: "0.1.0",
    routes: {
      "GET /api/saacms/v1/:collection/:id/subscribe": (c: RealtimeRouteContext) =>
        stopped ? stoppedResponse() : subscribe(c),
      "GET /api/saacms/v1/subscribe": (c: RealtimeRouteContext) => stopped ? stoppedResponse() : subscribeMany(c),
      ...(options.cors === undefined ? {} : {
        "OPTIONS /api/saacms/v1/:collection/:id/subscribe": (c: RealtimeRouteContext) =>
          stopped ? stoppedResponse() : preflight(c),
        "OPTIONS /api/saacms/v1/subscribe": (c: RealtimeRouteContext) => stopped ? stoppedResponse() : preflight(c)
      })
    },
    services: {
      realtime: {
        publish,
        stop: () => {
          stopped = true
          direct = undefined
          return runtime.dispose()
        },
        __subscriberCount: (slug, id) =>
          runtime.runSync(
            // With a binding the subscribers are the objects'; this process holds none.
            Effect.flatMap(
              Event.resourceKey(slug, id),
              (key) => Effect.flatMap(Effect.serviceOption(Hub.Hub), Option.match({ onNone: () => Effect.succeed(0), onSome: (hub) => hub.subscriberCount(key) }))
            ).pipe(Effect.orElseSucceed(() => 0))
          )
      }
    }
  }
}
