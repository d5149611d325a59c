/**
 * One stream, many topics: the vocabulary of `GET /api/saacms/v1/subscribe`.
 * A topic is a record (`posts/1`) or a whole collection (`posts/*`, every
 * event of its records, those created later included). A stream's topics are
 * kept in one canonical order (sorted, without repeats), and its **cursor**,
 * the `id:` of each of its frames, says where the client stands in every
 * topic, so a reconnect resumes each one exactly.
 *
 * The cursor is written in base64url digits: a version digit (`B`), the
 * 32-bit hash of the canonical topic list in 6 digits (a cursor of another
 * list is no position at all), then per topic, in order, its sequence number
 * in 5-bit digits (the 6th bit says another digit follows) and, when it is not
 * 0, the 24-bit `Frame.check` of the event id at that number in 4 digits. A
 * topic costs 1 character before its first event, 5–8 after (up to sequence
 * number 1 048 575), at most 14.
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

// Written in base64url digits (6 bits each), so that each topic's part is a
// string of its own: a stream that moves one topic rewrites that part only.
const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
const values = new Int8Array(128).fill(-1)
for (let i = 0; i < alphabet.length; i++) values[alphabet.charCodeAt(i)] = i
// The version digit: "B" (1).
const version = "B"
// Sequence numbers below 2^50: ten 5-bit digits.
const maxSeqDigits = 10
const maxSeq = 2 ** 50 - 1

/**
 * The cursor's first part: its version and the topic list's hash (see
 * `listHash`), 7 characters.
 *
 * @since 0.1.0
 * @category constructors
 */
export const cursorHead = (hash: number): string =>
  version + alphabet[hash >>> 26]! + alphabet[(hash >>> 20) & 63]! + alphabet[(hash >>> 14) & 63]! +
  alphabet[(hash >>> 8) & 63]! + alphabet[(hash >>> 2) & 63]! + alphabet[hash & 3]!

/**
 * One topic's part of a cursor: its sequence number in 5-bit digits (a 6th
 * bit says another follows) and, when it is not 0, the 24-bit check in 4
 * digits. 1 character before the first event; 5 up to sequence number 31, 6
 * up to 1 023, 7 up to 32 767, 8 up to 1 048 575, at most 14.
 *
 * @since 0.1.0
 * @category constructors
 */
export const cursorPart = (position: Position): string => {
  let n = Math.min(Math.max(Math.floor(position.seq), 0), maxSeq)
  if (n === 0) return "A"
  let out = ""
  while (n >= 32) {
    out += alphabet[(n % 32) | 32]!
    n = Math.floor(n / 32)
  }
  const check = position.check
  return out + alphabet[n]! + alphabet[(check >>> 18) & 63]! + alphabet[(check >>> 12) & 63]! +
    alphabet[(check >>> 6) & 63]! + alphabet[check & 63]!
}

/**
 * The longest cursor of a stream with `topics` topics, in characters.
 *
 * @since 0.1.0
 * @category utils
 */
export const maxCursorLength = (topics: number): number => 7 + topics * (maxSeqDigits + 4)

/**
 * A cursor for `positions` (in the canonical order of the topics hashed as `hash`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const encodeCursor = (hash: number, positions: ReadonlyArray<Position>): string => {
  let out = cursorHead(hash)
  for (const position of positions) out += cursorPart(position)
  return out
}

const malformed = (reason: string) => Either.left(new RealtimeError.InvalidLastEventId({ reason: `cursor ${reason}` }))

/**
 * Read a cursor for a stream of `count` topics hashed as `hash`: their
 * positions, or `undefined` when it is a cursor of another topic list (then
 * every topic starts fresh). What no server could have written (not base64url
 * digits, another version, a wrong length, a number out of range or not in
 * its shortest form) fails.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decodeCursor = (
  cursor: string,
  hash: number,
  count: number
): Either.Either<ReadonlyArray<Position> | undefined, RealtimeError.InvalidLastEventId> => {
  if (cursor.length > maxCursorLength(1000)) return malformed("is too long")
  const digits = new Int8Array(cursor.length)
  for (let i = 0; i < cursor.length; i++) {
    const code = cursor.charCodeAt(i)
    const value = code < 128 ? values[code]! : -1
    if (value < 0) return malformed("is not base64url")
    digits[i] = value
  }
  if (cursor.length < 7 || cursor[0] !== version || digits[6]! > 3) return malformed("is of an unknown version")
  const given = ((digits[1]! << 26) | (digits[2]! << 20) | (digits[3]! << 14) | (digits[4]! << 8) | (digits[5]! << 2) | digits[6]!) >>> 0
  if (given !== hash) return Either.right(undefined)
  const positions: Array<Position> = []
  let i = 7
  for (let topic = 0; topic < count; topic++) {
    let seq = 0
    let scale = 1
    for (let n = 0;; n++) {
      if (i >= digits.length || n >= maxSeqDigits) return malformed("is truncated or out of range")
      const digit = digits[i++]!
      seq += (digit & 31) * scale
      scale *= 32
      if (digit < 32) {
        if (digit === 0 && n > 0) return malformed("is not in its shortest form")
        break
      }
    }
    if (seq > maxSeq) return malformed("is out of range")
    let checked = 0
    if (seq > 0) {
      if (i + 4 > digits.length) return malformed("is truncated")
      checked = (digits[i]! << 18) | (digits[i + 1]! << 12) | (digits[i + 2]! << 6) | digits[i + 3]!
      i += 4
    }
    positions.push({ seq, check: checked })
  }
  if (i !== digits.length) return malformed("has trailing characters")
  return Either.right(positions)
}
