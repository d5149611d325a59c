/**
 * The typed errors of the realtime core. They describe what went wrong in the
 * terms of the core (a key, an event, a frame); mapping them to HTTP statuses is
 * the job of `RealtimeHttp`.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"

/**
 * A collection slug or record id that does not match the documented pattern.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidResourceKey extends Data.TaggedError("InvalidResourceKey")<{
  readonly field: "collection" | "id"
  readonly reason: string
}> {}

/**
 * A published event that is not a valid `RealtimeEvent` (bad type, CR/LF/NUL in
 * the etag, a record that cannot be serialised as JSON).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidEvent extends Data.TaggedError("InvalidEvent")<{
  readonly reason: string
}> {}

/**
 * An event whose encoded frame is larger than `maxFrameBytes`. `bytes` is the
 * frame's length, or, when the record was refused before it was serialised, a
 * lower bound of it (still over `maxBytes`).
 *
 * @since 0.1.0
 * @category errors
 */
export class FrameTooLarge extends Data.TaggedError("FrameTooLarge")<{
  readonly bytes: number
  readonly maxBytes: number
}> {}

/**
 * A `Last-Event-ID` (header or `?lastEventId=`) that no server could have sent:
 * too long, or containing CR, LF or NUL.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidLastEventId extends Data.TaggedError("InvalidLastEventId")<{
  readonly reason: string
}> {}

/**
 * The backend behind `Realtime` could not be reached or failed (a Durable
 * Object that is overloaded or being reset). Nothing was published; retrying
 * later may succeed.
 *
 * @since 0.1.0
 * @category errors
 */
export class Unavailable extends Data.TaggedError("Unavailable")<{
  readonly reason: string
}> {}

/**
 * A subscribe beyond `maxSubscribersPerKey` (`scope: "key"`) or
 * `maxSubscribers` (`scope: "process"`). Nothing was registered.
 *
 * @since 0.1.0
 * @category errors
 */
export class TooManySubscribers extends Data.TaggedError("TooManySubscribers")<{
  readonly scope: "key" | "process"
  readonly limit: number
}> {}

/**
 * A multiplexed subscribe whose topics cannot be read: none, one that is not
 * `collection/id` or `collection/*`, or more than `maxTopics`
 * (`limit` is then set). Nothing was registered.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidTopic extends Data.TaggedError("InvalidTopic")<{
  readonly reason: string
  readonly limit?: number | undefined
}> {}

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
