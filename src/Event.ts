/**
 * The vocabulary of the core: resource keys, record events and event ids, each
 * defined once as a `Schema` and decoded wherever bytes come in.
 *
 * @since 0.1.0
 */
import type * as Brand from "effect/Brand"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as RealtimeError from "./RealtimeError.js"

/**
 * Collection slugs: 1–64 characters of `[A-Za-z0-9_-]`, starting with a letter or digit.
 *
 * @since 0.1.0
 * @category models
 */
const slugPattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/

export const Slug = Schema.String.pipe(
  Schema.pattern(slugPattern, {
    message: () => "collection must be 1-64 characters of A-Z a-z 0-9 _ - and start with a letter or digit"
  }),
  Schema.brand("@saacms/realtime/Slug")
)

/**
 * Record ids: 1–128 URL-unreserved characters (`[A-Za-z0-9._~-]`), not `.` or
 * `..`. No `:`, so a resource key `"<slug>:<id>"` can never be read two ways.
 *
 * @since 0.1.0
 * @category models
 */
const recordIdPattern = /^[A-Za-z0-9._~-]{1,128}$/

export const RecordId = Schema.String.pipe(
  Schema.pattern(recordIdPattern, {
    message: () => "id must be 1-128 characters of A-Z a-z 0-9 . _ ~ -"
  }),
  // URL paths resolve these away: no client could reach such a record's route.
  Schema.filter((id) => id !== "." && id !== "..", { message: () => "id must not be . or .." }),
  Schema.brand("@saacms/realtime/RecordId")
)

/**
 * One record, `"<slug>:<id>"`, built only from a validated slug and id (the
 * Durable Object name keeps this form for compatibility with the reference).
 *
 * @since 0.1.0
 * @category models
 */
export type ResourceKey = string & Brand.Brand<"@saacms/realtime/ResourceKey">

/**
 * The key of a valid slug and id; an `Either`, which is also an `Effect`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resourceKey = (
  collection: unknown,
  id: unknown
): Either.Either<ResourceKey, RealtimeError.InvalidResourceKey> => {
  // Every subscribe and publish comes here: what the Schemas accept is
  // recognised with their own patterns first; they run to say what is wrong.
  if (
    typeof collection === "string" && typeof id === "string" && slugPattern.test(collection) &&
    recordIdPattern.test(id) && id !== "." && id !== ".."
  ) return Either.right(`${collection}:${id}` as ResourceKey)
  const slug = decodeSlug(collection)
  if (slug._tag === "Left") {
    return Either.left(new RealtimeError.InvalidResourceKey({ field: "collection", reason: message(slug.left) }))
  }
  const recordId = decodeRecordId(id)
  if (recordId._tag === "Left") {
    return Either.left(new RealtimeError.InvalidResourceKey({ field: "id", reason: message(recordId.left) }))
  }
  return Either.right(`${slug.right}:${recordId.right}` as ResourceKey)
}

/**
 * The key of a decoded event's record (its slug and id are valid already).
 *
 * @since 0.1.0
 * @category constructors
 */
export const keyOf = (event: { readonly slug: string; readonly id: string }): ResourceKey =>
  `${event.slug}:${event.id}` as ResourceKey

/**
 * The key of a collection's own history (every event of its records):
 * `"<slug>:*"`, which no record has (`*` is not a record id character).
 * `slug` must be a valid `Slug`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const collectionKey = (slug: string): ResourceKey => `${slug}:*` as ResourceKey

/**
 * `true` for a collection's key (see `collectionKey`).
 *
 * @since 0.1.0
 * @category utils
 */
export const isCollectionKey = (key: string): boolean => key.endsWith(":*")

const decodeSlug = Schema.decodeUnknownEither(Slug)
const decodeRecordId = Schema.decodeUnknownEither(RecordId)

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/**
 * A value that may appear after `id:` (and `event:`) in a frame: no CR, LF or
 * NUL, no lone surrogate, at most 256 UTF-16 code units.
 *
 * @since 0.1.0
 * @category models
 */
export const EventId = Schema.String.pipe(
  Schema.maxLength(256, { message: () => "must be at most 256 characters" }),
  Schema.filter((s) => !/[\r\n\0]/.test(s), { message: () => "must not contain CR, LF or NUL" }),
  // UTF-8 cannot carry a lone surrogate: the client would get U+FFFD, not this id.
  Schema.filter((s) => !loneSurrogate.test(s), { message: () => "must be well-formed UTF-16 (no lone surrogate)" })
)

const Etag = Schema.optionalWith(EventId, { nullable: true })

/**
 * @since 0.1.0
 * @category models
 */
export const Snapshot = Schema.Struct({
  type: Schema.Literal("snapshot"),
  slug: Schema.String,
  id: Schema.String,
  record: Schema.Unknown,
  etag: Etag
}).annotations({ identifier: "Snapshot" })

/**
 * @since 0.1.0
 * @category models
 */
export const Changed = Schema.Struct({
  type: Schema.Literal("changed"),
  slug: Schema.String,
  id: Schema.String,
  record: Schema.Unknown,
  etag: Etag
}).annotations({ identifier: "Changed" })

/**
 * @since 0.1.0
 * @category models
 */
export const Deleted = Schema.Struct({
  type: Schema.Literal("deleted"),
  slug: Schema.String,
  id: Schema.String
}).annotations({ identifier: "Deleted" })

/**
 * A record-lifecycle event, the reference's `RealtimeEvent` (discriminated on `type`).
 *
 * @since 0.1.0
 * @category models
 */
export const RealtimeEvent = Schema.Union(Snapshot, Changed, Deleted)

/**
 * @since 0.1.0
 * @category models
 */
export type RealtimeEvent = typeof RealtimeEvent.Type

const decodeEventEither = Schema.decodeUnknownEither(RealtimeEvent)

/**
 * Decode anything (a host's call, a POST body, a stored entry) into an event
 * and its validated resource key (an `Either`, which is also an `Effect`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const decode = (
  input: unknown
): Either.Either<
  { readonly event: RealtimeEvent; readonly key: ResourceKey },
  RealtimeError.InvalidEvent | RealtimeError.InvalidResourceKey
> => {
  let decoded: ReturnType<typeof decodeEventEither>
  try {
    decoded = decodeEventEither(input)
  } catch {
    // A getter or Proxy trap of the host's object threw while it was read.
    return Either.left(new RealtimeError.InvalidEvent({ reason: "the event could not be read" }))
  }
  if (decoded._tag === "Left") {
    return Either.left(new RealtimeError.InvalidEvent({ reason: message(decoded.left) }))
  }
  const event = decoded.right
  return Either.map(resourceKey(event.slug, event.id), (key) => ({ event, key }))
}

const decodeEventIdEither = Schema.decodeUnknownEither(EventId)

/**
 * Validate a client's `Last-Event-ID`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decodeLastEventId = (input: string): Either.Either<string, RealtimeError.InvalidLastEventId> => {
  const decoded = decodeEventIdEither(input)
  return decoded._tag === "Left"
    ? Either.left(new RealtimeError.InvalidLastEventId({ reason: message(decoded.left) }))
    : Either.right(decoded.right)
}

const message = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) =>
    issue.path.length > 0 ? `${issue.path.join(".")}: ${issue.message}` : issue.message
  ).join("; ")
