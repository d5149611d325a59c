/**
 * One stream, many topics: the vocabulary of `GET /api/saacms/v1/subscribe`.
 * A topic is a record (`posts/1`) or a whole collection (`posts/*`, every
 * event of its records, those created later included). A stream's topics are
 * kept in one canonical order (sorted, without repeats), and its **cursor**,
 * the `id:` of each of its frames, says where the client stands in every
 * topic, so a reconnect resumes each one exactly.
 *
 * The cursor is base64url of: a version byte (1), a 32-bit hash of the
 * canonical topic list (a cursor of another list is no position at all), then
 * per topic, in order, its sequence number as a LEB128 varint and, when that is
 * not 0, the 24-bit `Frame.check` of the event id at that number. A topic
 * costs 1 byte before its first event, 4–10 bytes after; base64 adds a third.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as Event from "./Event.js"
import * as RealtimeError from "./RealtimeError.js"

/**
 * One topic of a multiplexed stream.
 *
 * @since 0.1.0
 * @category models
 */
export interface Topic {
  /** As the client wrote it: `collection/id` or `collection/*`. */
  readonly topic: string
  readonly collection: string
  /** The record's id; `undefined` for a whole collection. */
  readonly id: string | undefined
  /** Whose history and subscribers it follows: the record's key, or the collection's (`Event.collectionKey`). */
  readonly key: Event.ResourceKey
}

/**
 * Read one topic.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parseTopic = (input: string): Either.Either<Topic, RealtimeError.InvalidTopic> => {
  const slash = input.indexOf("/")
  if (slash === -1) return Either.left(new RealtimeError.InvalidTopic({ reason: "a topic is collection/id or collection/*" }))
  const collection = input.slice(0, slash)
  const id = input.slice(slash + 1)
  if (id === "*") {
    return Either.match(Event.resourceKey(collection, "x"), {
      onLeft: (error) => Either.left(new RealtimeError.InvalidTopic({ reason: `${input}: ${error.reason}` })),
      onRight: () => Either.right({ topic: input, collection, id: undefined, key: Event.collectionKey(collection) })
    })
  }
  return Either.match(Event.resourceKey(collection, id), {
    onLeft: (error) => Either.left(new RealtimeError.InvalidTopic({ reason: `${input.slice(0, 300)}: ${error.reason}` })),
    onRight: (key) => Either.right({ topic: input, collection, id, key })
  })
}

/**
 * Read a stream's topics: at least one, at most `maxTopics` once repeats are
 * dropped, in canonical order.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parseTopics = (
  inputs: ReadonlyArray<string>,
  maxTopics: number
): Either.Either<ReadonlyArray<Topic>, RealtimeError.InvalidTopic> => {
  const unique = [...new Set(inputs)].sort()
  if (unique.length === 0) return Either.left(new RealtimeError.InvalidTopic({ reason: "name at least one topic" }))
  if (unique.length > maxTopics) {
    return Either.left(
      new RealtimeError.InvalidTopic({ reason: `at most ${maxTopics} topics per stream`, limit: maxTopics })
    )
  }
  const topics: Array<Topic> = []
  for (const input of unique) {
    const topic = parseTopic(input)
    if (topic._tag === "Left") return Either.left(topic.left)
    topics.push(topic.right)
  }
  return Either.right(topics)
}

/**
 * Where a client stands in one topic: after the event with sequence number
 * `seq` (0: before the first), whose id has check `check`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Position {
  readonly seq: number
  readonly check: number
}

/**
 * The hash a cursor carries of its stream's topic list.
 *
 * @since 0.1.0
 * @category utils
 */
export const listHash = (topics: ReadonlyArray<Topic>): number => {
  let hash = 0x811c9dc5
  for (const topic of topics) {
    for (let i = 0; i < topic.topic.length; i++) {
      hash ^= topic.topic.charCodeAt(i)
      hash = Math.imul(hash, 0x01000193)
    }
    hash ^= 10
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

const version = 1
// Sequence numbers up to 2^49: seven 7-bit groups.
const maxVarintBytes = 7
const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
const values = new Int8Array(128).fill(-1)
for (let i = 0; i < alphabet.length; i++) values[alphabet.charCodeAt(i)] = i

/**
 * The longest cursor of a stream with `topics` topics, in characters.
 *
 * @since 0.1.0
 * @category utils
 */
export const maxCursorLength = (topics: number): number => Math.ceil(((5 + topics * (maxVarintBytes + 3)) * 4) / 3)

/**
 * A cursor for `positions` (in the canonical order of the topics hashed as `hash`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const encodeCursor = (hash: number, positions: ReadonlyArray<Position>): string => {
  const bytes: Array<number> = [version, hash & 0xff, (hash >>> 8) & 0xff, (hash >>> 16) & 0xff, hash >>> 24]
  for (const { check, seq } of positions) {
    let n = seq
    while (n >= 0x80) {
      bytes.push((n % 0x80) | 0x80)
      n = Math.floor(n / 0x80)
    }
    bytes.push(n)
    if (seq > 0) bytes.push(check & 0xff, (check >>> 8) & 0xff, (check >>> 16) & 0xff)
  }
  let out = ""
  for (let i = 0; i < bytes.length; i += 3) {
    const a = bytes[i]!
    const b = bytes[i + 1]
    const c = bytes[i + 2]
    out += alphabet[a >> 2]! + alphabet[((a & 3) << 4) | ((b ?? 0) >> 4)]!
    if (b !== undefined) out += alphabet[((b & 15) << 2) | ((c ?? 0) >> 6)]!
    if (c !== undefined) out += alphabet[c & 63]!
  }
  return out
}

const malformed = (reason: string) => Either.left(new RealtimeError.InvalidLastEventId({ reason: `cursor ${reason}` }))

/**
 * Read a cursor for a stream of `count` topics hashed as `hash`: their
 * positions, or `undefined` when it is a cursor of another topic list (then
 * every topic starts fresh). What no server could have written (not base64url,
 * another version, a wrong length, a number out of range) fails.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decodeCursor = (
  cursor: string,
  hash: number,
  count: number
): Either.Either<ReadonlyArray<Position> | undefined, RealtimeError.InvalidLastEventId> => {
  if (cursor.length > maxCursorLength(1000) || cursor.length % 4 === 1) return malformed("has the wrong length")
  const bytes = new Uint8Array(Math.floor((cursor.length * 3) / 4))
  let acc = 0
  let bits = 0
  let at = 0
  for (let i = 0; i < cursor.length; i++) {
    const code = cursor.charCodeAt(i)
    const value = code < 128 ? values[code]! : -1
    if (value < 0) return malformed("is not base64url")
    acc = (acc << 6) | value
    bits += 6
    if (bits >= 8) {
      bits -= 8
      bytes[at++] = (acc >> bits) & 0xff
    }
  }
  // The bits left over must be the zero padding of the last character.
  if ((acc & ((1 << bits) - 1)) !== 0) return malformed("is not base64url")
  if (bytes.length < 5 || bytes[0] !== version) return malformed("is of an unknown version")
  const given = (bytes[1]! | (bytes[2]! << 8) | (bytes[3]! << 16) | (bytes[4]! << 24)) >>> 0
  if (given !== hash) return Either.right(undefined)
  const positions: Array<Position> = []
  let i = 5
  for (let topic = 0; topic < count; topic++) {
    let seq = 0
    let scale = 1
    for (let n = 0;; n++) {
      if (i >= bytes.length || n >= maxVarintBytes) return malformed("is truncated or out of range")
      const byte = bytes[i++]!
      seq += (byte & 0x7f) * scale
      scale *= 0x80
      if (byte < 0x80) {
        if (byte === 0 && n > 0) return malformed("is not in its shortest form")
        break
      }
    }
    let checked = 0
    if (seq > 0) {
      if (i + 3 > bytes.length) return malformed("is truncated")
      checked = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16)
      i += 3
    }
    positions.push({ seq, check: checked })
  }
  if (i !== bytes.length) return malformed("has trailing bytes")
  return Either.right(positions)
}
