/**
 * Wait on a condition instead of sleeping: re-run `effect` on a short, bounded
 * schedule until `predicate` holds.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"

/** The condition still did not hold after the last attempt. */
export class ConditionNotMet<A> extends Data.TaggedError("ConditionNotMet")<{
  readonly label: string
  readonly last: A
}> {
  override get message(): string {
    return `${this.label}: not met; last ${JSON.stringify(this.last)}`
  }
}

/**
 * Succeed with the first value of `effect` that satisfies `predicate`, polling
 * every 10 ms for at most `attempts` tries (default 500, about 5 s).
 */
export const eventually = <A, E, R>(
  label: string,
  effect: Effect.Effect<A, E, R>,
  predicate: (a: A) => boolean,
  attempts = 500
): Effect.Effect<A, E | ConditionNotMet<A>, R> =>
  effect.pipe(
    Effect.filterOrElse(predicate, (last) => Effect.fail(new ConditionNotMet({ label, last }))),
    Effect.retry({
      schedule: Schedule.intersect(Schedule.spaced("10 millis"), Schedule.recurs(attempts)),
      while: (error) => error instanceof ConditionNotMet
    })
  )
