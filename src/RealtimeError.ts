/**
 * The typed errors of the realtime core. They describe what went wrong in the
 * terms of the core (a key, an event, a frame), as Schemas, so that they cross
 * a boundary (the Durable Object binding) as themselves; `toHttp` is the one
 * mapping from them to HTTP answers, for every route of the package and its hosts.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"

/**
 * A collection slug or record id that does not match the documented pattern.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidResourceKey extends Schema.TaggedError<InvalidResourceKey>()("InvalidResourceKey", { field: Schema.Literal("collection", "id"), reason: Schema.String }) {}

/**
 * A published event that is not a valid `RealtimeEvent` (bad type, CR/LF/NUL in
 * the etag, a record that cannot be serialised as JSON).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidEvent extends Schema.TaggedError<InvalidEvent>()("InvalidEvent", { reason: Schema.String }) {}

/**
 * An event whose encoded frame is larger than `maxFrameBytes`. `bytes` is the
 * frame's length, or, when the record was refused before it was serialised, a
 * lower bound of it (still over `maxBytes`).
 *
 * @since 0.1.0
 * @category errors
 */
export class FrameTooLarge extends Schema.TaggedError<FrameTooLarge>()("FrameTooLarge", { bytes: Schema.Number, maxBytes: Schema.Number }) {}

/**
 * A `Last-Event-ID` (header or `?lastEventId=`) that no server could have sent:
 * too long, or containing CR, LF or NUL.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidLastEventId extends Schema.TaggedError<InvalidLastEventId>()("InvalidLastEventId", { reason: Schema.String }) {}

/**
 * The backend behind `Realtime` could not be reached or failed (a Durable
 * Object that is overloaded or being reset). Nothing was published; retrying
 * later may succeed.
 *
 * @since 0.1.0
 * @category errors
 */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", { reason: Schema.String }) {}

/**
 * A subscribe beyond `maxSubscribersPerKey` (`scope: "key"`) or
 * `maxSubscribers` (`scope: "process"`). Nothing was registered.
 *
 * @since 0.1.0
 * @category errors
 */
export class TooManySubscribers extends Schema.TaggedError<TooManySubscribers>()("TooManySubscribers", { scope: Schema.Literal("key", "process"), limit: Schema.Number }) {}

/**
 * A multiplexed subscribe whose topics cannot be read: none, one that is not
 * `collection/id` or `collection/*`, or more than `maxTopics`
 * (`limit` is then set). Nothing was registered.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidTopic extends Schema.TaggedError<InvalidTopic>()("InvalidTopic", { reason: Schema.String, limit: Schema.optional(Schema.Number) }) {}

/**
 * Every error the realtime core can fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type RealtimeError =
  | InvalidResourceKey
  | InvalidEvent
  | FrameTooLarge
  | InvalidLastEventId
  | Unavailable
  | TooManySubscribers
  | InvalidTopic

/**
 * Every error of the core, as one Schema (what crosses the Durable Object
 * binding, in a refusal's `detail`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const RealtimeErrorSchema = Schema.Union(
  InvalidResourceKey,
  InvalidEvent,
  FrameTooLarge,
  InvalidLastEventId,
  Unavailable,
  TooManySubscribers,
  InvalidTopic
)

/**
 * An error of the core as JSON, for a `detail` field.
 *
 * @since 0.1.0
 * @category conversions
 */
export const encode: (error: RealtimeError) => unknown = Schema.encodeSync(RealtimeErrorSchema)

/**
 * An error of the core back from its JSON, or `undefined` when it is not one.
 *
 * @since 0.1.0
 * @category conversions
 */
export const decode = (detail: unknown): RealtimeError | undefined =>
  Either.getOrUndefined(Schema.decodeUnknownEither(RealtimeErrorSchema)(detail))

/**
 * How an error of the core answers over HTTP: a status, a code and a short
 * message for the client (its JSON body is `{ "error": code, "message": message }`),
 * and, for a 503, the seconds a client should wait (`Retry-After`). The one
 * mapping: the subscribe routes, the Durable Object, the demo host and the
 * example Worker all answer with it. A reason is about the client's input
 * (which rule it broke); an `Unavailable` reason stays in the log.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toHttp = (error: RealtimeError): {
  readonly status: number
  readonly error: string
  readonly message: string
  readonly retryAfter?: number
} => {
  switch (error._tag) {
    case "InvalidResourceKey":
      return { status: 400, error: "invalid_resource_key", message: error.reason }
    case "InvalidEvent":
      return { status: 400, error: "invalid_event", message: error.reason }
    case "FrameTooLarge":
      return {
        status: 413,
        error: "frame_too_large",
        message: `the encoded frame is at least ${error.bytes} bytes, over ${error.maxBytes}`
      }
    case "InvalidLastEventId":
      return { status: 400, error: "invalid_last_event_id", message: `Last-Event-ID ${error.reason}` }
    case "InvalidTopic":
      return { status: 400, error: error.limit === undefined ? "invalid_topic" : "too_many_topics", message: error.reason }
    case "TooManySubscribers":
      return {
        status: 503,
        error: "too_many_subscribers",
        message: `subscriber limit reached (${error.scope}); retry later`,
        retryAfter: 5
      }
    case "Unavailable":
      return { status: 503, error: "unavailable", message: "the realtime backend is unavailable; retry later", retryAfter: 1 }
  }
}
