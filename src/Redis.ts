/**
 * The Redis backend: many Bun/Node instances share fan-out and replay
 * history. Each record's history is a Redis Stream appended by one Lua script
 * per publish (sequence number, trims and the `PUBLISH` in one step, see
 * `Redis/Store.ts`); each instance follows the channel of every record it
 * has local subscribers for, from the first to the last. Subpath-only
 * (`@saacms/realtime/Redis`), so hosts without Redis never load `ioredis`.
 *
 * Faults: a publish fails fast with `Unavailable` while Redis cannot be
 * reached (no offline queue, no retried command, a command timeout); when the
 * subscriber connection drops and its immediate reconnect fails, every open
 * stream ends (clients reconnect and get 503 until Redis is back, then resume
 * from their last id); after a reconnect every followed record is synced
 * again (a flushed Redis is told by its epoch: `saacms-resync`).
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { Redis as RedisClient, type RedisOptions } from "ioredis"
import type * as Event from "./Event.js"
import * as Heartbeat from "./Heartbeat.js"
import * as Hub from "./Hub.js"
import * as Realtime from "./Realtime.js"
import * as RealtimeConfig from "./RealtimeConfig.js"
import * as RealtimeError from "./RealtimeError.js"
import * as ReplayBuffer from "./ReplayBuffer.js"
import * as Store from "./Redis/Store.js"

/**
 * Where Redis is: `url` may name a database (`redis://127.0.0.1:6379/3`);
 * `keyPrefix` (default `"saacms:rt:"`) keeps this host's keys and channels
 * apart from others on the same server.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly url: string
  readonly keyPrefix?: string | undefined
  /**
   * Delays between attempts to reconnect; the first should be immediate (a
   * 50–250 ms first delay overflowed a 100-event history at 1 000 events/s).
   * Default: 0, 25, 50, 100, 200, 400, 800 ms, then every second.
   */
  readonly reconnect?: Schedule.Schedule<unknown> | undefined
  /** How long a command may take before it fails with `Unavailable`. Default 2 000 ms. */
  readonly commandTimeoutMs?: number | undefined
}

const defaultReconnect: Schedule.Schedule<unknown> = Schedule.fromDelays(
  "0 millis",
  "25 millis",
  "50 millis",
  "100 millis",
  "200 millis",
  "400 millis",
  "800 millis"
).pipe(Schedule.andThen(Schedule.spaced("1 second")))

// ioredis asks for a delay per attempt: the schedule's, stepped ahead of time.
const reconnectDelays = (schedule: Schedule.Schedule<unknown>) =>
  Effect.map(
    Schedule.run(Schedule.delays(schedule), 0, Array.from({ length: 64 }, (_, i) => i)),
    (delays) => Array.from(delays, (delay) => Duration.toMillis(delay))
  )

// A connection, given a moment to come up: a host whose Redis is down still
// starts (and answers 503 until it is back), it just does not wait long.
const connect = (url: string, options: RedisOptions): Effect.Effect<RedisClient, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const client = new RedisClient(url, options)
      // Errors surface as failed commands (Unavailable); the events themselves
      // are expected (unhandled, ioredis would print each one while it retries).
      client.on("error", () => {})
      return client
    }),
    (client) => Effect.promise(() => client.quit().then(() => undefined, () => client.disconnect()))
  ).pipe(
    Effect.tap((client) =>
      Effect.async<void>((resume) => {
        if (client.status === "ready") return resume(Effect.void)
        const ready = () => resume(Effect.void)
        client.once("ready", ready)
        return Effect.sync(() => client.off("ready", ready))
      }).pipe(
        Effect.timeout(Duration.millis(options.connectTimeout ?? 2000)),
        Effect.catchAll(() => Effect.logWarning("redis not reachable yet; requests answer 503 until it is"))
      )
    )
  )

interface Followed {
  readonly key: Event.ResourceKey
  readonly live: ReplayBuffer.Live
  /** The history's epoch as this instance last saw it (unknown until the record has one). */
  epoch: string | undefined
}

/**
 * The `ReplayBuffer` over Redis, with each record's live source (its channel)
 * started by `retain` and stopped by `release`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerReplayBuffer = (options: Options): Layer.Layer<ReplayBuffer.ReplayBuffer> =>
  Layer.scoped(
    ReplayBuffer.ReplayBuffer,
    Effect.gen(function*() {
      const config = yield* RealtimeConfig.RealtimeConfig
      const delays = yield* reconnectDelays(options.reconnect ?? defaultReconnect)
      const clientOptions: RedisOptions = {
        // Fail fast: a command while Redis cannot be reached is refused, never queued or retried.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        commandTimeout: options.commandTimeoutMs ?? 2000,
        connectTimeout: 2000,
        retryStrategy: (attempt) => delays[Math.min(attempt, delays.length) - 1] ?? 1000
      }
      const [commands, subscriber] = yield* Effect.all([
        connect(options.url, clientOptions),
        connect(options.url, { ...clientOptions, commandTimeout: undefined })
      ], { concurrency: 2 })
      const store = Store.make(commands, {
        keyPrefix: options.keyPrefix ?? "saacms:rt:",
        ...ReplayBuffer.retention(config)
      })
      const followed = new Map<string, Followed>()
      // (UN)SUBSCRIBE only on a ready connection: ioredis would also write them
      // during its handshake, and the INFO of its ready check, answered in
      // subscriber mode, fails and drops the connection again.
      const ready = () => subscriber.status === "ready"
      // Channels whose UNSUBSCRIBE could not be sent (the connection was down):
      // ioredis subscribes them again when it reconnects, so they are dropped then.
      const stale = new Set<string>()
      const unsubscribe = (channel: string): void => {
        if (ready()) subscriber.unsubscribe(channel).catch(() => stale.add(channel))
        else stale.add(channel)
      }
      const dropStale = () => {
        const channels = [...stale].filter((channel) => !followed.has(channel))
        stale.clear()
        if (channels.length > 0) subscriber.unsubscribe(...channels).catch(() => channels.forEach((channel) => stale.add(channel)))
      }

      const lost = (entry: Followed, newestId: string, seq: number, epoch: string | undefined) => {
        entry.epoch = epoch
        entry.live.reset(newestId, seq)
      }

      subscriber.on("messageBuffer", (channel: Buffer, message: Buffer) => {
        const entry = followed.get(channel.toString())
        const decoded = entry === undefined ? undefined : Store.decodeMessage(message)
        if (entry === undefined || decoded === undefined) return
        if (entry.epoch !== undefined && entry.epoch !== decoded.epoch) {
          return lost(entry, decoded.id, decoded.seq, decoded.epoch)
        }
        entry.epoch = decoded.epoch
        entry.live.publish(decoded.seq, decoded.frame)
      })

      // Connection news, handled by one fiber: the callbacks only enqueue.
      const news = yield* Queue.unbounded<"down" | "ready">()
      let down = false
      let attempts = 0
      subscriber.on("reconnecting", () => {
        // The immediate retry failed too: Redis is down, not blinking.
        if (++attempts >= 2 && !down) {
          down = true
          Queue.unsafeOffer(news, "down")
        }
      })
      // The connection's first "ready" came before this listener (`connect`
      // waits for it), so every one seen here is a reconnect (or a first
      // connection made late, when nothing is followed yet).
      subscriber.on("ready", () => {
        attempts = 0
        Queue.unsafeOffer(news, "ready")
      })

      // After a reconnect, every followed record is synced: a new epoch resyncs
      // its subscribers, a newer head makes those behind it catch up.
      const sync = (entry: Followed) =>
        Effect.zip(store.head(entry.key), Clock.currentTimeMillis).pipe(
          Effect.match({
            onFailure: () => entry.live.end(),
            onSuccess: ([head, now]) => {
              if (head === undefined) {
                // Redis came back empty: no history, no id (the reference's fallback, the time).
                if (entry.epoch !== undefined) lost(entry, new Date(now).toISOString(), 0, undefined)
                return
              }
              if (entry.epoch !== undefined && entry.epoch !== head.epoch) return lost(entry, head.id ?? "", head.seq, head.epoch)
              entry.epoch = head.epoch
              entry.live.resume(head.seq)
            }
          })
        )

      yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(news), (event) => {
        if (event === "down") {
          return Effect.zipRight(
            Effect.logWarning("redis subscriber connection lost; ending open streams"),
            Effect.sync(() => followed.forEach((entry) => entry.live.end()))
          )
        }
        down = false
        // Dropped again already: the next "ready" syncs.
        if (!ready()) return Effect.void
        dropStale()
        const entries = [...followed.values()]
        if (entries.length === 0) return Effect.void
        // The heads are read on the other connection: only once the channels are
        // subscribed again (acknowledged) is every later publish sure to arrive
        // here, so that nothing falls between the head and the channel.
        return Effect.tryPromise(() => subscriber.subscribe(...entries.map((entry) => store.channel(entry.key)))).pipe(
          Effect.matchEffect({
            onFailure: () =>
              Effect.zipRight(
                Effect.logWarning("redis subscriber connection lost again while resubscribing; ending open streams"),
                Effect.sync(() => entries.forEach((entry) => entry.live.end()))
              ),
            onSuccess: () => Effect.forEach(entries, sync, { discard: true, concurrency: 16 })
          })
        )
      })))

      // The store's reads as they are; appends, and the live source, are this instance's.
      const driver: ReplayBuffer.Driver = {
        ...Store.toDriver(store),
        append: (key, id, frame, now) =>
          Effect.map(store.append(key, id, frame, now), ({ entry, epoch }) => {
            const followedEntry = followed.get(store.channel(key))
            if (followedEntry !== undefined) {
              if (followedEntry.epoch !== undefined && followedEntry.epoch !== epoch) {
                // The history this instance's subscribers stand in is gone: they resync.
                lost(followedEntry, entry.id, entry.seq, epoch)
              }
              followedEntry.epoch = epoch
            }
            return entry
          }),
        retain: (key, live) =>
          Effect.gen(function*() {
            const channel = store.channel(key)
            const entry: Followed = { key, live, epoch: undefined }
            followed.set(channel, entry)
            if (!ready()) return yield* new RealtimeError.Unavailable({ reason: `redis subscriber connection ${subscriber.status}` })
            // Subscribed (acknowledged) before the history is read: nothing falls between.
            yield* Effect.tryPromise({
              try: () => subscriber.subscribe(channel),
              catch: (error) => new RealtimeError.Unavailable({ reason: `redis subscribe: ${String(error)}` })
            })
            const head = yield* store.head(key)
            if (entry.epoch === undefined) entry.epoch = head?.epoch
          }).pipe(
            Effect.tapError(() =>
              Effect.sync(() => {
                followed.delete(store.channel(key))
                unsubscribe(store.channel(key))
              })
            )
          ),
        release: (key) =>
          Effect.sync(() => {
            const channel = store.channel(key)
            followed.delete(channel)
            unsubscribe(channel)
          }),
        liveFromSource: true
      }
      return ReplayBuffer.make(driver)
    })
  )

/**
 * The whole core over Redis: `Realtime`, `Hub`, `Heartbeat` and the Redis
 * `ReplayBuffer`, with the `RealtimeConfig` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<Realtime.Realtime | Hub.Hub | ReplayBuffer.ReplayBuffer | Heartbeat.Heartbeat> =>
  Realtime.layerOver(layerReplayBuffer(options))
