/**
 * The `:keepalive` cadence. A heartbeat runs only while its scope is open:
 * `Hub` opens one with a record's first subscriber and closes it with the last,
 * so no timer runs for an idle record.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as RealtimeConfig from "./RealtimeConfig.js"

/**
 * @since 0.1.0
 * @category tags
 */
export class Heartbeat extends Context.Tag("@saacms/realtime/Heartbeat")<Heartbeat, {
  /** Run `beat` once every heartbeat interval (first after one interval) until the scope closes. */
  readonly keep: (beat: Effect.Effect<void>) => Effect.Effect<void, never, Scope.Scope>
  /** How many heartbeats are running now. */
  readonly active: Effect.Effect<number>
}>() {}

/**
 * A heartbeat on `Schedule.spaced(interval)`, one fiber per active record.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Heartbeat["Type"]> = Effect.gen(function*() {
  const config = yield* RealtimeConfig.RealtimeConfig
  const active = yield* Ref.make(0)
  const schedule = Schedule.spaced(config.heartbeat)
  return Heartbeat.of({
    keep: (beat) =>
      Effect.acquireRelease(Ref.update(active, (n) => n + 1), () => Ref.update(active, (n) => n - 1)).pipe(
        // Interruptible whatever region the first subscriber opened it from.
        Effect.zipRight(Effect.forkScoped(Effect.interruptible(Effect.schedule(beat, schedule)))),
        Effect.asVoid
      ),
    active: Ref.get(active)
  })
})

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Heartbeat> = Layer.effect(Heartbeat, make)
