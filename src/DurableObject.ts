/**
 * `SaacmsRealtimeDO`: the reference's Durable Object, one per record, running
 * the same core as every other host (Hub, Heartbeat, Realtime) over a
 * `ReplayBuffer` kept in `state.storage`, so replay survives eviction.
 *
 * Binding requests are the reference's: `GET` with `Accept: text/event-stream`
 * subscribes (with `Last-Event-ID` replay), `POST` with a JSON event publishes
 * and answers 204. Configure it with the Worker's environment variables
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
import * as Storage from "./DurableObject/Storage.js"
import * as Heartbeat from "./Heartbeat.js"
import * as Hub from "./Hub.js"
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
    Layer.provideMerge(layerOneRecordHub),
    Layer.provideMerge(Layer.merge(Storage.layerDurableObjectStorage(storage), Heartbeat.layer))
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
      join: () => hub.join(record),
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
export const layerConfig = (env: unknown, options: Options = {}): Layer.Layer<never> => {
  const vars = new Map<string, string>()
  if (typeof env === "object" && env !== null) {
    for (const [name, value] of Object.entries(env)) {
      if (name.startsWith("REALTIME_") && (typeof value === "string" || typeof value === "number")) {
        vars.set(name, String(value))
      }
    }
  }
  return RealtimeConfig.layerConfig.pipe(
    Layer.provide(Layer.merge(Layer.setConfigProvider(ConfigProvider.fromMap(vars)), RealtimeConfig.layer(options))),
    Layer.tapErrorCause((cause) => Effect.logError("invalid REALTIME_* configuration", cause)),
    Layer.orDie
  )
}

/**
 * The object's options in code: `RealtimeConfig.Options`, and the per-event
 * access `recheck` (the Worker forwards each subscriber's grant subject as JSON).
 *
 * @since 0.1.0
 * @category models
 */
export type Options = RealtimeConfig.Options & { readonly recheck?: Access.Recheck | undefined }

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

  /**
   * This class with other defaults, for hosts that configure in code: export
   * `SaacmsRealtimeDO.configure({ retention: { maxEvents: 500 } })` from the
   * Worker under a name of your own and bind that. `REALTIME_*` variables
   * still override these.
   */
  static configure(options: Options): typeof SaacmsRealtimeDO {
    // Validated now, so a bad option fails the Worker at start rather than each object.
    Schema.decodeUnknownSync(RealtimeConfig.Options)(options)
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
    this.#runtime = ManagedRuntime.make(layer(state.storage).pipe(Layer.provideMerge(layerConfig(env, options))))
    // A woken object restores its history before it serves a request.
    void state.blockConcurrencyWhile(() => this.#runtime.runtime().then(() => undefined, () => undefined))
  }

  /** Answer one binding request: subscribe (GET, SSE), publish (POST, 204) or stats (GET, JSON). */
  fetch(request: Request): Promise<Response> {
    return this.#runtime.runPromise(DurableObjectHttp.handle(request, this.#name, this.#storage, this.#recheck)).catch(() =>
      // Only a core that could not start (its configuration, its storage) gets here; the log has why.
      Response.json({ error: "internal", message: "internal error" }, { status: 500 })
    )
  }

  /** The storage alarm: delete the entries that have aged out, schedule the next. */
  alarm(): Promise<void> {
    return this.#runtime.runPromise(DurableObjectHttp.expire)
  }
}
