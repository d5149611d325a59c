/**
 * `SaacmsRealtimeDO`: the reference's Durable Object, one per record, running
 * the same core as every other host (Hub, Heartbeat, Realtime) over a
 * `ReplayBuffer` kept in `state.storage`, so replay survives eviction.
 *
 * Binding requests are the reference's: `GET` with `Accept: text/event-stream`
 * subscribes (with `Last-Event-ID` replay), `POST` with a JSON event publishes
 * and answers 204; ours adds `GET` with `Upgrade: websocket`, a subscription
 * over a hibernatable socket, so that the object can sleep while the Worker
 * holds the client's stream (`DurableObject/Socket.ts`). Configure it with the Worker's environment variables
 * (`REALTIME_MAX_EVENTS`, `REALTIME_MAX_AGE_MS`, `REALTIME_HEARTBEAT_MS`,
 * `REALTIME_QUEUE_CAPACITY`, `REALTIME_MAX_FRAME_BYTES`), read when the object wakes.
 *
 * @since 0.1.0
 */
import type * as Access from "./Access.js"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Schema from "effect/Schema"
import * as DurableObjectHttp from "./DurableObject/Http.js"
import * as Socket from "./DurableObject/Socket.js"
import * as Storage from "./DurableObject/Storage.js"
import * as Event from "./Event.js"
import * as Heartbeat from "./Heartbeat.js"
import * as Hub from "./Hub.js"
import * as Logging from "./internal/logging.js"
import * as Outlet from "./internal/outlet.js"
import * as Realtime from "./Realtime.js"
import * as RealtimeConfig from "./RealtimeConfig.js"
import * as ReplayBuffer from "./ReplayBuffer.js"

/**
 * The part of the Workers `DurableObjectState` the object uses (structural, so
 * the package entry never imports `cloudflare:workers`).
 *
 * @since 0.1.0
 * @category models
 */
export interface DurableObjectStateLike {
  /** `name` is the `idFromName` name where the runtime tells the object (workerd does). */
  readonly id?: { readonly name?: string | undefined } | undefined
  readonly storage: Storage.StorageLike
  blockConcurrencyWhile<T>(callback: () => Promise<T>): Promise<T>
  /** The hibernation API (workerd): hand a server socket to the runtime. */
  acceptWebSocket?(socket: Socket.WebSocketLike, tags?: Array<string>): void
  /** The sockets accepted and still open, restored after hibernation. */
  getWebSockets?(): Array<Socket.WebSocketLike>
  /** A message the runtime answers on the object's behalf, without waking it. */
  setWebSocketAutoResponse?(pair?: unknown): void
}

/**
 * The core of one record's object: the storage-backed buffer, a hub and its
 * heartbeat. The object is one record, so every key its core sees is that
 * record (the binding's subscribe request does not name it).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  storage: Storage.StorageLike
): Layer.Layer<Realtime.Realtime | Hub.Hub | ReplayBuffer.ReplayBuffer | Heartbeat.Heartbeat> =>
  Realtime.layer.pipe(
    Layer.provide(layerOneRecordConfig),
    Layer.provideMerge(layerOneRecordHub),
    Layer.provideMerge(Layer.merge(Storage.layerDurableObjectStorage(storage), Heartbeat.layer))
  )

// An object holds one record: no collection history beside it.
const layerOneRecordConfig = Layer.effect(
  RealtimeConfig.RealtimeConfig,
  Effect.map(RealtimeConfig.RealtimeConfig, (config) => ({ ...config, collectionHistory: false }))
)

const layerOneRecordHub: Layer.Layer<Hub.Hub, never, Heartbeat.Heartbeat | ReplayBuffer.ReplayBuffer> = Layer.scoped(
  Hub.Hub,
  Effect.gen(function*() {
    const config = yield* RealtimeConfig.RealtimeConfig
    const buffer = yield* ReplayBuffer.ReplayBuffer
    const hub = yield* Hub.make(config, buffer)
    const record = DurableObjectHttp.record
    return Hub.Hub.of({
      ...hub,
      publish: (_key, message) => hub.publish(record, message),
      unsafePublish: (_key, message) => hub.unsafePublish(record, message),
      join: (_key, options) => hub.join(record, options),
      subscribe: () => hub.subscribe(record),
      subscriberCount: () => hub.subscriberCount(record)
    })
  })
)

/**
 * `RealtimeConfig` from the Worker's environment: the `REALTIME_*` variables
 * (strings or numbers, as `[vars]` in wrangler.toml gives them), over
 * `options` (the host's own defaults, see `SaacmsRealtimeDO.configure`).
 * Invalid values fail the object's start, with the reason in the log.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (env: unknown, options: Options = {}): Layer.Layer<RealtimeConfig.RealtimeConfig> => {
  const vars = new Map<string, string>()
  if (typeof env === "object" && env !== null) {
    for (const [name, value] of Object.entries(env)) {
      if (name.startsWith("REALTIME_") && (typeof value === "string" || typeof value === "number")) {
        vars.set(name, String(value))
      }
    }
  }
  return RealtimeConfig.layerConfig().pipe(
    Layer.provide(Layer.merge(Layer.setConfigProvider(ConfigProvider.fromMap(vars)), RealtimeConfig.layer(options))),
    Layer.tapErrorCause((cause) => Effect.logError("invalid REALTIME_* configuration", cause)),
    Layer.orDie
  )
}

// The log level from `REALTIME_LOG_LEVEL`, over the one in code; like the
// other variables, a value that is not a level fails the object's start.
const layerLogging = (env: unknown, options: Options = {}): Layer.Layer<never> => {
  const level = typeof env === "object" && env !== null ? (env as Record<string, unknown>).REALTIME_LOG_LEVEL : undefined
  if (level !== undefined && !Logging.isLevel(level)) {
    const message = `invalid REALTIME_LOG_LEVEL: ${String(level)}`
    return Layer.effectDiscard(Effect.zipRight(Effect.logError(message), Effect.dieMessage(message))).pipe(
      Layer.provide(Logging.layer({ logger: options.logger }))
    )
  }
  return Logging.layer({ logLevel: level ?? options.logLevel, logger: options.logger })
}

/**
 * The object's options in code: `RealtimeConfig.Options`, and the per-event
 * access `recheck` (the Worker forwards each subscriber's grant subject as JSON).
 *
 * @since 0.1.0
 * @category models
 */
export type Options = RealtimeConfig.Options & { readonly recheck?: Access.Recheck | undefined } & RealtimeConfig.LoggingOptions

/**
 * The Durable Object class to register with the Workers runtime (export it
 * from the Worker's entry module and bind it, as `SAACMS_REALTIME` in the
 * reference). The runtime constructs it with `(state, env)`.
 *
 * @since 0.1.0
 * @category constructors
 */
export class SaacmsRealtimeDO {
  readonly #runtime: ManagedRuntime.ManagedRuntime<
    Realtime.Realtime | Hub.Hub | ReplayBuffer.ReplayBuffer | Heartbeat.Heartbeat,
    never
  >
  readonly #name: string | undefined
  readonly #storage: Storage.StorageLike
  readonly #recheck: Access.Recheck | undefined
  /** Subscribers over hibernatable sockets, by socket (rebuilt when the object wakes). */
  readonly #sockets = new Map<Socket.WebSocketLike, Realtime.Subscriber>()
  readonly #host: DurableObjectHttp.SocketHost | undefined

  /**
   * This class with other defaults, for hosts that configure in code: export
   * `SaacmsRealtimeDO.configure({ retention: { maxEvents: 500 } })` from the
   * Worker under a name of your own and bind that. `REALTIME_*` variables
   * still override these.
   */
  static configure(options: Options): typeof SaacmsRealtimeDO {
    // Validated now, so a bad option fails the Worker at start rather than each object.
    Schema.decodeUnknownSync(RealtimeConfig.Options)(options)
    Logging.validate(options)
    return class extends SaacmsRealtimeDO {
      constructor(state: DurableObjectStateLike, env?: unknown) {
        super(state, env, options)
      }
    }
  }

  constructor(state: DurableObjectStateLike, env?: unknown, options?: Options) {
    this.#name = state.id?.name
    this.#storage = state.storage
    this.#recheck = options?.recheck
    // provideMerge: the handlers read the configuration too (the body limit).
    // A collection's object (named `"<collection>:*"`) serves multiplexed
    // streams from histories in memory (see `Namespace`); a record's keeps
    // its one history in storage.
    const core = this.#name !== undefined && Event.isCollectionKey(this.#name) ? Realtime.layerMemory : layer(state.storage)
    this.#runtime = ManagedRuntime.make(
      // The logging first: it applies to the core's start too.
      core.pipe(Layer.provideMerge(layerConfig(env, options)), Layer.provideMerge(layerLogging(env, options)))
    )
    const acceptWebSocket = state.acceptWebSocket?.bind(state)
    this.#host = acceptWebSocket === undefined ? undefined : {
      accept: (socket, subscriber, attachment) => {
        acceptWebSocket(socket)
        socket.serializeAttachment(attachment)
        this.#attach(socket, subscriber)
      },
      count: () => this.#sockets.size,
      instance: crypto.randomUUID()
    }
    // Pings from the Worker are answered by the runtime: they never wake the object.
    const Pair = (globalThis as { readonly WebSocketRequestResponsePair?: new(request: string, response: string) => unknown })
      .WebSocketRequestResponsePair
    if (Pair !== undefined) state.setWebSocketAutoResponse?.(new Pair(Socket.ping, Socket.pong))
    // A woken object restores its history, then re-attaches the sockets that
    // stayed open while it slept, before it serves anything.
    void state.blockConcurrencyWhile(() =>
      this.#runtime.runtime().then(() => this.#reattach(state.getWebSockets?.() ?? [])).then(() => undefined, () => undefined)
    )
  }

  // Every socket was handed everything before the object slept: each goes on
  // from the head of the record, with the grant its attachment kept.
  #reattach(sockets: Array<Socket.WebSocketLike>): Promise<void> {
    const key = (this.#name ?? DurableObjectHttp.record) as Event.ResourceKey
    return this.#runtime.runPromise(Effect.forEach(sockets, (socket) =>
      Effect.flatMap(Realtime.Realtime, (realtime) =>
        realtime.open(key, undefined, DurableObjectHttp.grantFromAttachment(Socket.attachmentOf(socket), this.#recheck, key), {
          heartbeat: false,
          opening: false
        })).pipe(
          Effect.match({
            onFailure: () => Socket.close(socket, 1011, "could not resume"),
            onSuccess: (subscriber) => this.#attach(socket, subscriber)
          })
        ), { discard: true }))
  }

  /** Answer one binding request: subscribe (GET, SSE or a hibernatable WebSocket), publish (POST, 204) or stats (GET, JSON). */
  fetch(request: Request): Promise<Response> {
    return this.#runtime.runPromise(DurableObjectHttp.handle(request, this.#name, this.#storage, this.#recheck, this.#host)).catch(() =>
      // Only a core that could not start (its configuration, its storage) gets here; the log has why.
      Response.json({ error: "internal", message: "internal error" }, { status: 500 })
    )
  }

  /** A message on a subscriber's socket: nothing to do (its pings are answered by the runtime). */
  webSocketMessage(): void {}

  /** A subscriber's socket closed: release its subscriber and finish the closing handshake. */
  webSocketClose(socket: Socket.WebSocketLike, code: number, reason: string): void {
    this.#release(socket)
    // 1005 and 1006 say no code was given; they cannot be sent back.
    Socket.close(socket, code === 1005 || code === 1006 ? 1000 : code, reason)
  }

  /** A subscriber's socket failed: release its subscriber. */
  webSocketError(socket: Socket.WebSocketLike): void {
    this.#release(socket)
    Socket.close(socket, 1011, "socket failed")
  }

  // `subscriber`'s frames go to `socket` from now on, starting with what it holds.
  #attach(socket: Socket.WebSocketLike, subscriber: Realtime.Subscriber): void {
    if (subscriber instanceof Outlet.Outlet) subscriber.attach(new Socket.SocketSink(socket))
    this.#sockets.set(socket, subscriber)
  }

  #release(socket: Socket.WebSocketLike): void {
    this.#sockets.get(socket)?.close()
    this.#sockets.delete(socket)
  }

  /** The storage alarm: delete the entries that have aged out, schedule the next. */
  alarm(): Promise<void> {
    return this.#runtime.runPromise(DurableObjectHttp.expire)
  }
}
