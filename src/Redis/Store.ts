/**
 * Record histories in Redis, shared by every instance (the design of
 * Centrifugo's Redis engine). Each record lives under one hash tag,
 * `{<keyPrefix><slug>:<id>}`, so all of it is in one Cluster slot:
 *
 * - `…:s` a Stream whose entry ids are `<seq>-0` (fields `id`, `frame`, `at`):
 *   a range by sequence number is an XRANGE, and `XTRIM MINID =` trims exactly;
 * - `…:m` the meta hash: `epoch` (new whenever the meta is missing, so a
 *   flushed Redis is detected), `seq` (the dense counter), `head` (the newest
 *   id, kept after its entry is trimmed), `bytes` (of the frames held), `at`;
 * - `…:i` each event id → the sequence number of its most recent occurrence;
 * - `…:c` the record's channel: every append publishes `epoch`, `seq`, `id`
 *   and `frame` on it (see `decodeMessage`).
 *
 * One script per append numbers, trims (count, age, bytes) and publishes; the
 * reads are scripts too, so each answer is one consistent view. Time comes
 * from the caller (`Clock`), never from Redis. What does not parse is not
 * held; every Redis failure is `Unavailable`.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type { Redis } from "ioredis"
import type * as Event from "../Event.js"
import * as RealtimeError from "../RealtimeError.js"
import type * as ReplayBuffer from "../ReplayBuffer.js"
import * as Scripts from "./scripts.js"

/**
 * Retention per record, and the key prefix (end it with a separator such as
 * `:`; `{` and `}` are escaped). `metaTtlMs` (default 30 days) is how long a
 * record's meta outlives its last append: then the record is forgotten and
 * its next append starts a new epoch.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly keyPrefix: string
  readonly maxEvents: number
  readonly maxAgeMs: number
  readonly maxHistoryBytes: number
  readonly metaTtlMs?: number | undefined
}

/**
 * A record's newest event and the epoch of its history.
 *
 * @since 0.1.0
 * @category models
 */
export interface Head {
  readonly epoch: string
  readonly seq: number
  readonly id: string
}

/**
 * What an append publishes on the record's channel.
 *
 * @since 0.1.0
 * @category models
 */
export interface Message {
  readonly epoch: string
  readonly seq: number
  readonly id: string
  readonly frame: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Store {
  /** Append under the next sequence number, trim, publish; the entry and the history's epoch. */
  readonly append: (
    key: Event.ResourceKey,
    id: string,
    frame: Uint8Array,
    now: number
  ) => Effect.Effect<{ readonly entry: ReplayBuffer.Entry; readonly epoch: string }, RealtimeError.Unavailable>
  /** `lastEventId`'s most recent held occurrence, or the head's id; the head; the epoch (none without history). */
  readonly position: (key: Event.ResourceKey, lastEventId: string, now: number) => Effect.Effect<{
    readonly position: ReplayBuffer.Position
    readonly headSeq: number
    readonly headId: string | undefined
    readonly epoch: string | undefined
  }, RealtimeError.Unavailable>
  /** The entries after `afterSeq` within `limits`, or `Gone`; with the epoch they belong to. */
  readonly read: (
    key: Event.ResourceKey,
    afterSeq: number,
    limits: ReplayBuffer.ReadLimits,
    now: number
  ) => Effect.Effect<ReplayBuffer.Read & { readonly epoch: string | undefined }, RealtimeError.Unavailable>
  /** The newest sequence number (0 without history). */
  readonly headSeq: (key: Event.ResourceKey, now: number) => Effect.Effect<number, RealtimeError.Unavailable>
  /** The record's head, or `undefined` when Redis holds no meta for it. */
  readonly head: (key: Event.ResourceKey) => Effect.Effect<Head | undefined, RealtimeError.Unavailable>
  /** Entries held now (not aged out). */
  readonly size: (key: Event.ResourceKey, now: number) => Effect.Effect<number, RealtimeError.Unavailable>
  /** Every record under the prefix, aged on `Clock` (SCAN: O(records), for monitoring). */
  readonly stats: Effect.Effect<ReplayBuffer.Stats, RealtimeError.Unavailable>
  /** The record's channel, for the subscriber connection's SUBSCRIBE. */
  readonly channel: (key: Event.ResourceKey) => string
  /** A channel message, or `undefined` when it is not one. */
  readonly decodeMessage: (message: Uint8Array) => Message | undefined
}

const slackMs = 60_000
const defaultMetaTtlMs = 30 * 24 * 3_600_000
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
const latin1 = new TextDecoder("latin1")
const resourceKeyPattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}:[A-Za-z0-9._~-]{1,128}$/
const headerPattern = /^saacms1 ([0-9A-Fa-f]{1,64}) ([1-9][0-9]{0,14}) (0|[1-9][0-9]{0,5})$/

const text = (u: unknown): string | undefined => {
  if (!(u instanceof Uint8Array)) return undefined
  try {
    return utf8.decode(u)
  } catch {
    return undefined
  }
}
const int = (u: unknown): number | undefined => typeof u === "number" && Number.isSafeInteger(u) && u >= 0 ? u : undefined
// Frames outlive the reply: copy them out of the parser's (pooled) buffers.
const bytes = (u: unknown): Uint8Array | undefined => u instanceof Uint8Array ? new Uint8Array(u) : undefined
const arg = (n: number) => `${Math.max(0, Math.floor(Math.min(n, 1e15)))}`

const newEpoch = () => Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("")

const unavailable = (cause: unknown) =>
  new RealtimeError.Unavailable({ reason: `Redis: ${cause instanceof Error ? cause.message : String(cause)}` })
const unexpected = (script: string) => new RealtimeError.Unavailable({ reason: `Redis: unexpected reply to ${script}` })

const attempt = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: (cause) => cause })

/**
 * Decode a message from a record's channel: `saacms1 <epoch> <seq> <id
 * bytes>\n<id><frame>`. Anything else is `undefined`.
 *
 * @since 0.1.0
 * @category conversions
 */
export const decodeMessage = (message: Uint8Array): Message | undefined => {
  const end = message.subarray(0, 128).indexOf(10)
  if (end < 0) return undefined
  const header = headerPattern.exec(latin1.decode(message.subarray(0, end)))
  if (header === null) return undefined
  const idLength = Number(header[3])
  if (end + 1 + idLength > message.byteLength) return undefined
  const id = text(message.subarray(end + 1, end + 1 + idLength))
  if (id === undefined) return undefined
  return { epoch: header[1]!, seq: Number(header[2]), id, frame: new Uint8Array(message.subarray(end + 1 + idLength)) }
}

/**
 * The store over a connected client. Configure the client to fail rather
 * than wait forever (`maxRetriesPerRequest`, `commandTimeout`): a command
 * still pending is not `Unavailable` yet.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (client: Redis, options: Options): Store => {
  const prefix = options.keyPrefix.replace(/[%{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
  const tag = (key: string) => `{${prefix}${key}}`
  const streamTtl = options.maxAgeMs + slackMs
  const metaTtl = Math.max(options.metaTtlMs ?? defaultMetaTtlMs, streamTtl)
  const maxAge = arg(options.maxAgeMs)

  const run = (script: Scripts.Script, keys: ReadonlyArray<string>, args: ReadonlyArray<string | Buffer>) =>
    attempt(() => client.callBuffer("EVALSHA", [script.sha, script.keys, ...keys, ...args])).pipe(
      Effect.catchIf(
        (cause) => cause instanceof Error && cause.message.startsWith("NOSCRIPT"),
        () => attempt(() => client.callBuffer("EVAL", [script.lua, script.keys, ...keys, ...args]))
      ),
      Effect.mapError(unavailable),
      Effect.flatMap((reply) => Array.isArray(reply) ? Effect.succeed(reply) : Effect.fail(unexpected(script.name)))
    )

  // The head fields every read script answers with: seq, id, epoch ('' without a meta).
  const headOf = (seq: unknown, id: unknown, epoch: unknown) => {
    const e = text(epoch)
    return e === "" ? { seq: 0, id: undefined, epoch: undefined } : { seq: int(seq), id: text(id), epoch: e }
  }

  const held = (meta: string, stream: string, now: number) =>
    Effect.flatMap(run(Scripts.held, [meta, stream], [arg(now), maxAge]), (reply) => {
      const [exists, entries, heldBytes] = reply.map(int)
      return exists === undefined || entries === undefined || heldBytes === undefined
        ? Effect.fail(unexpected(Scripts.held.name))
        : Effect.succeed({ exists: exists === 1, entries, bytes: heldBytes })
    })

  const escapedPrefix = `{${prefix}`.replace(/[*?[\]\\]/g, (c) => `\\${c}`)
  const isMeta = (key: string) =>
    key.startsWith(`{${prefix}`) && key.endsWith("}:m") && resourceKeyPattern.test(key.slice(prefix.length + 1, -3))

  return {
    append: (key, id, frame, now) =>
      Effect.suspend(() => {
        const t = tag(key)
        return run(Scripts.append, [`${t}:m`, `${t}:s`, `${t}:i`], [
          newEpoch(),
          id,
          Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength),
          arg(now),
          arg(options.maxEvents),
          maxAge,
          arg(options.maxHistoryBytes),
          arg(streamTtl),
          arg(metaTtl),
          `${t}:c`
        ])
      }).pipe(Effect.flatMap(([epoch, seq, at]) => {
        const e = text(epoch)
        const s = int(seq)
        const a = int(at)
        return e === undefined || s === undefined || a === undefined
          ? Effect.fail(unexpected(Scripts.append.name))
          : Effect.succeed({ entry: { seq: s, id, frame, at: a }, epoch: e })
      })),

    position: (key, lastEventId, now) => {
      const t = tag(key)
      return Effect.flatMap(run(Scripts.position, [`${t}:m`, `${t}:s`, `${t}:i`], [lastEventId, arg(now), maxAge]), (reply) => {
        const at = int(reply[0])
        const head = headOf(reply[1], reply[2], reply[3])
        if (at === undefined || head.seq === undefined) return Effect.fail(unexpected(Scripts.position.name))
        const position: ReplayBuffer.Position = at > 0 ? { _tag: "At", seq: at } : { _tag: "Unknown" }
        return Effect.succeed({ position, headSeq: head.seq, headId: head.id, epoch: head.epoch })
      })
    },

    read: (key, afterSeq, limits, now) => {
      const t = tag(key)
      const args = [arg(afterSeq), arg(limits.maxBytes), arg(Math.max(1, limits.maxFrames)), arg(now), maxAge]
      return Effect.flatMap(run(Scripts.read, [`${t}:m`, `${t}:s`], args), (reply) => {
        const answer = text(reply[0])
        const head = headOf(reply[1], reply[2], reply[3])
        if (head.seq === undefined || (answer !== "E" && answer !== "G")) return Effect.fail(unexpected(Scripts.read.name))
        const gone = { _tag: "Gone", newestId: head.id ?? "", lastSeq: head.seq, epoch: head.epoch } as const
        if (answer === "G") return Effect.succeed(gone)
        const entries: Array<ReplayBuffer.Entry> = []
        for (let i = 4; i + 3 < reply.length; i += 4) {
          const seq = int(reply[i])
          const id = text(reply[i + 1])
          const frame = bytes(reply[i + 2])
          const at = int(reply[i + 3])
          // An entry that does not decode is not held: the read stops before it.
          if (seq !== afterSeq + 1 + entries.length || id === undefined || frame === undefined || at === undefined) break
          entries.push({ seq, id, frame, at })
        }
        return Effect.succeed(
          entries.length === 0 && reply.length > 4
            ? gone
            : { _tag: "Entries", entries, lastSeq: head.seq, epoch: head.epoch } as const
        )
      })
    },

    headSeq: (key) => {
      const t = tag(key)
      return Effect.flatMap(run(Scripts.head, [`${t}:m`], []), (reply) => {
        const seq = int(reply[0])
        return seq === undefined ? Effect.fail(unexpected(Scripts.head.name)) : Effect.succeed(seq)
      })
    },

    head: (key) => {
      const t = tag(key)
      return Effect.flatMap(run(Scripts.head, [`${t}:m`], []), (reply): Effect.Effect<Head | undefined, RealtimeError.Unavailable> => {
        const head = headOf(reply[0], reply[1], reply[2])
        if (head.seq === undefined) return Effect.fail(unexpected(Scripts.head.name))
        return Effect.succeed(head.epoch === undefined || head.id === undefined ? undefined : { epoch: head.epoch, seq: head.seq, id: head.id })
      })
    },

    size: (key, now) => {
      const t = tag(key)
      return Effect.map(held(`${t}:m`, `${t}:s`, now), ({ entries }) => entries)
    },

    stats: Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const seen = new Set<string>()
      const stats = { records: 0, recordsWithHistory: 0, entries: 0, bytes: 0 }
      let cursor = "0"
      do {
        const [next, keys] = yield* Effect.mapError(
          attempt(() => client.scan(cursor, "MATCH", `${escapedPrefix}*}:m`, "COUNT", 1000)),
          unavailable
        )
        // SCAN may return a key twice.
        const metas = keys.filter((key) => isMeta(key) && !seen.has(key))
        for (const key of metas) seen.add(key)
        const records = yield* Effect.forEach(metas, (meta) => held(meta, `${meta.slice(0, -1)}s`, now), { concurrency: 16 })
        for (const record of records) {
          if (!record.exists) continue
          stats.records++
          if (record.entries > 0) stats.recordsWithHistory++
          stats.entries += record.entries
          stats.bytes += record.bytes
        }
        cursor = next
      } while (cursor !== "0")
      return stats
    }),

    channel: (key) => `${tag(key)}:c`,
    decodeMessage
  }
}

/**
 * The store as a `ReplayBuffer.Driver`, with no live source (`retain` and
 * `release` do nothing): a `stats` that fails is logged and reads as empty.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toDriver = (store: Store): ReplayBuffer.Driver => ({
  append: (key, id, frame, now) => Effect.map(store.append(key, id, frame, now), ({ entry }) => entry),
  position: (key, lastEventId, now) =>
    Effect.map(store.position(key, lastEventId, now), ({ headId, headSeq, position }) => ({ position, headSeq, headId })),
  headSeq: store.headSeq,
  read: (key, afterSeq, limits, now) =>
    Effect.map(store.read(key, afterSeq, limits, now), (read): ReplayBuffer.Read =>
      read._tag === "Gone"
        ? { _tag: "Gone", newestId: read.newestId, lastSeq: read.lastSeq }
        : { _tag: "Entries", entries: read.entries, lastSeq: read.lastSeq }),
  retain: () => Effect.void,
  release: () => Effect.void,
  size: store.size,
  stats: store.stats.pipe(
    Effect.catchTag("Unavailable", (error) =>
      Effect.as(Effect.logWarning("Redis stats unavailable", error.reason), { records: 0, recordsWithHistory: 0, entries: 0, bytes: 0 }))
  )
})
