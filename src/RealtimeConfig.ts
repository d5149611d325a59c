/**
 * Options of the realtime core, their defaults and the layers that set them.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Logger from "effect/Logger"
import type * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

/**
 * The options as a host writes them (the reference's `retention` and
 * `heartbeatMs`, plus the bounds this library adds). Every field is optional.
 *
 * @since 0.1.0
 * @category models
 */
export const Options = Schema.Struct({
  retention: Schema.optional(Schema.Struct({
    maxEvents: Schema.optional(Schema.Int.pipe(Schema.between(1, 100_000))),
    maxAgeMs: Schema.optional(Schema.Int.pipe(Schema.between(1, 7 * 24 * 3_600_000))),
    maxHistoryBytes: Schema.optional(Schema.Int.pipe(Schema.between(1024, 64 * 1024 * 1024 * 1024))),
    maxRecords: Schema.optional(Schema.Int.pipe(Schema.between(1, 100_000_000)))
  })),
  heartbeatMs: Schema.optional(Schema.Int.pipe(Schema.between(10, 3_600_000))),
  queueCapacity: Schema.optional(Schema.Int.pipe(Schema.between(1, 1_000_000))),
  maxFrameBytes: Schema.optional(Schema.Int.pipe(Schema.between(256, 64 * 1024 * 1024))),
  maxQueuedBytes: Schema.optional(Schema.Int.pipe(Schema.between(1024, 1024 * 1024 * 1024))),
  maxSubscribersPerKey: Schema.optional(Schema.Int.pipe(Schema.between(1, 10_000_000))),
  maxSubscribers: Schema.optional(Schema.Int.pipe(Schema.between(1, 10_000_000))),
  retryMs: Schema.optional(Schema.Int.pipe(Schema.between(0, 3_600_000))),
  retryJitterMs: Schema.optional(Schema.Int.pipe(Schema.between(0, 3_600_000))),
  maxTopics: Schema.optional(Schema.Int.pipe(Schema.between(1, 1000))),
  collectionHistory: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.1.0
 * @category models
 */
export type Options = typeof Options.Type

/**
 * How the runtimes this package runs itself (the PluginDef's, a Durable
 * Object's) log: the least severe level written and the logger that writes.
 * Not part of `Options`: an Effect app logs as its own runtime does.
 *
 * @since 0.1.0
 * @category models
 */
export interface LoggingOptions {
  /** The least severe level written, as Effect names them ("Info" by default). */
  readonly logLevel?: LogLevel.Literal | undefined
  /** What writes the logs (Effect's default logger otherwise). */
  readonly logger?: Logger.Logger<unknown, unknown> | undefined
}

/**
 * The resolved configuration.
 *
 * @since 0.1.0
 * @category models
 */
export interface Resolved {
  /** Events kept per record for replay. Default 100. */
  readonly maxEvents: number
  /** How long an event stays replayable. Default 1 hour. */
  readonly maxAge: Duration.Duration
  /**
   * Bytes all records' histories may hold together (a process's memory
   * buffer, or one Durable Object's history; in Redis, each record's): each
   * entry counts its frame plus 128 bytes. Past it, the records published
   * least recently lose their history first; a record's newest entry always
   * stays. Default 64 MiB.
   */
  readonly maxHistoryBytes: number
  /**
   * Records that may hold a history at once; past it, the record published
   * least recently loses its history. Default 100 000.
   */
  readonly maxRecords: number
  /** Interval of the `:keepalive` comment on an active record. Default 30 seconds. */
  readonly heartbeat: Duration.Duration
  /**
   * Frames one subscriber may have waiting for its client. One that falls
   * further behind stops taking live frames and catches up from the record's
   * history as its client drains (or gets `saacms-resync` when that history is
   * gone). Default 1024.
   */
  readonly queueCapacity: number
  /**
   * Bytes one subscriber may have waiting for its client (replay included),
   * with the same rule as `queueCapacity`; a single frame larger than this
   * still goes to a subscriber that has nothing waiting. Default 1 MiB.
   */
  readonly maxQueuedBytes: number
  /** Largest encoded frame `publish` accepts. Default 1 MiB. */
  readonly maxFrameBytes: number
  /** Open subscriptions one record may have; beyond, subscribe answers 503. Default 10 000. */
  readonly maxSubscribersPerKey: number
  /** Open subscriptions over all records (of one process, or one Durable Object); beyond, 503. Default 100 000. */
  readonly maxSubscribers: number
  /**
   * The reconnection delay suggested to clients (`retry:`, after the opening
   * `:keepalive`), in ms; 0 sends none. Default 3 000.
   */
  readonly retryMs: number
  /**
   * Each stream's `retry:` is `retryMs` plus a random 0 – `retryJitterMs`, so
   * that clients cut off together do not all come back at once. Default 2 000.
   */
  readonly retryJitterMs: number
  /**
   * Topics one multiplexed stream may follow (`GET /api/saacms/v1/subscribe`);
   * more answer 400. Each topic counts as one subscriber against
   * `maxSubscribers`, and adds at most 11 bytes to the stream's cursor.
   * Default 100.
   */
  readonly maxTopics: number
  /**
   * Keep a history per collection (every event of its records, with the same
   * retention as a record's), so that `collection/*` topics resume exactly.
   * Costs one more append per publish. Default `true`.
   */
  readonly collectionHistory: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export const defaults: Resolved = {
  maxEvents: 100,
  maxAge: Duration.hours(1),
  maxHistoryBytes: 64 * 1024 * 1024,
  maxRecords: 100_000,
  heartbeat: Duration.seconds(30),
  queueCapacity: 1024,
  maxQueuedBytes: 1024 * 1024,
  maxFrameBytes: 1024 * 1024,
  maxSubscribersPerKey: 10_000,
  maxSubscribers: 100_000,
  retryMs: 3_000,
  retryJitterMs: 2_000,
  maxTopics: 100,
  collectionHistory: true
}

/**
 * The configuration in force; the defaults unless a layer below sets it.
 *
 * @since 0.1.0
 * @category tags
 */
export class RealtimeConfig extends Context.Reference<RealtimeConfig>()("@saacms/realtime/RealtimeConfig", {
  defaultValue: () => defaults
}) {}

/**
 * Resolve host options against `base` (the defaults unless given): each
 * option set wins, each one left out keeps `base`'s value.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolve = (options: Options, base: Resolved = defaults): Resolved => ({
  maxEvents: options.retention?.maxEvents ?? base.maxEvents,
  maxAge: options.retention?.maxAgeMs !== undefined ? Duration.millis(options.retention.maxAgeMs) : base.maxAge,
  maxHistoryBytes: options.retention?.maxHistoryBytes ?? base.maxHistoryBytes,
  maxRecords: options.retention?.maxRecords ?? base.maxRecords,
  heartbeat: options.heartbeatMs !== undefined ? Duration.millis(options.heartbeatMs) : base.heartbeat,
  queueCapacity: options.queueCapacity ?? base.queueCapacity,
  maxQueuedBytes: options.maxQueuedBytes ?? base.maxQueuedBytes,
  maxFrameBytes: options.maxFrameBytes ?? base.maxFrameBytes,
  maxSubscribersPerKey: options.maxSubscribersPerKey ?? base.maxSubscribersPerKey,
  maxSubscribers: options.maxSubscribers ?? base.maxSubscribers,
  retryMs: options.retryMs ?? base.retryMs,
  retryJitterMs: options.retryJitterMs ?? base.retryJitterMs,
  maxTopics: options.maxTopics ?? base.maxTopics,
  collectionHistory: options.collectionHistory ?? base.collectionHistory
})

/**
 * Options that do not decode with `Options` (the reason says which and why).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidOptions extends Data.TaggedError("InvalidOptions")<{
  readonly reason: string
}> {}

const decodeOptions = Schema.decodeUnknown(Options)

/**
 * Validate `options` and resolve them over `base` (the defaults unless given).
 *
 * @since 0.1.0
 * @category constructors
 */
export const decode = (options: unknown, base: Resolved = defaults): Effect.Effect<Resolved, InvalidOptions> =>
  decodeOptions(options).pipe(
    Effect.map((decoded) => resolve(decoded, base)),
    Effect.mapError((error) => new InvalidOptions({ reason: ParseResult.TreeFormatter.formatErrorSync(error) }))
  )

/**
 * Provide a configuration from host options; options that do not decode fail
 * the layer with `InvalidOptions` (nothing is thrown while it is built).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<RealtimeConfig, InvalidOptions> =>
  Layer.effect(RealtimeConfig, decode(options))

const integer = (name: string) => Config.option(Config.integer(name)).pipe(Config.map(Option.getOrUndefined))

/**
 * The options as environment variables (through Effect's `ConfigProvider`):
 * `REALTIME_MAX_EVENTS`, `REALTIME_MAX_AGE_MS`, `REALTIME_MAX_HISTORY_BYTES`,
 * `REALTIME_MAX_RECORDS`, `REALTIME_HEARTBEAT_MS`, `REALTIME_QUEUE_CAPACITY`,
 * `REALTIME_MAX_QUEUED_BYTES`, `REALTIME_MAX_FRAME_BYTES`,
 * `REALTIME_MAX_SUBSCRIBERS_PER_KEY`, `REALTIME_MAX_SUBSCRIBERS`,
 * `REALTIME_RETRY_MS`, `REALTIME_RETRY_JITTER_MS`, `REALTIME_MAX_TOPICS`;
 * each one unset is left out. A host with names of its own writes its own
 * `Config<Options>` for `layerConfig` (or nests this one).
 *
 * @since 0.1.0
 * @category models
 */
export const config: Config.Config<Options> = Config.all({
  retention: Config.all({
    maxEvents: integer("REALTIME_MAX_EVENTS"),
    maxAgeMs: integer("REALTIME_MAX_AGE_MS"),
    maxHistoryBytes: integer("REALTIME_MAX_HISTORY_BYTES"),
    maxRecords: integer("REALTIME_MAX_RECORDS")
  }),
  heartbeatMs: integer("REALTIME_HEARTBEAT_MS"),
  queueCapacity: integer("REALTIME_QUEUE_CAPACITY"),
  maxQueuedBytes: integer("REALTIME_MAX_QUEUED_BYTES"),
  maxFrameBytes: integer("REALTIME_MAX_FRAME_BYTES"),
  maxSubscribersPerKey: integer("REALTIME_MAX_SUBSCRIBERS_PER_KEY"),
  maxSubscribers: integer("REALTIME_MAX_SUBSCRIBERS"),
  retryMs: integer("REALTIME_RETRY_MS"),
  retryJitterMs: integer("REALTIME_RETRY_JITTER_MS"),
  maxTopics: integer("REALTIME_MAX_TOPICS")
}) as Config.Config<Options>

/**
 * Read the configuration with `options` (by default `config`, the
 * `REALTIME_*` variables). Each option it sets overrides the configuration in
 * force below this layer (the defaults, or a `layer(options)` it is provided
 * with); an unreadable value fails with `ConfigError`, an invalid one with
 * `InvalidOptions`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config<Options> = config
): Layer.Layer<RealtimeConfig, ConfigError.ConfigError | InvalidOptions> =>
  Layer.effect(
    RealtimeConfig,
    Effect.gen(function*() {
      // Options left unset keep the configuration already in force.
      const base = yield* RealtimeConfig
      return yield* decode(yield* options, base)
    })
  )
