/**
 * One fiber for a whole hub that works through what its subscribers hand it
 * in plain calls (a history to read, a mailbox to release), in batches,
 * sleeping with no timer while there is nothing to do: subscribers hold no
 * fiber of their own.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/**
 * Fork the fiber (until the scope closes) and return the call that hands it
 * an item; each wake-up passes `work` everything handed over since the last.
 */
export const make = <A>(
  work: (batch: ReadonlyArray<A>) => Effect.Effect<void>
): Effect.Effect<(item: A) => void, never, Scope.Scope> =>
  Effect.suspend(() => {
    let items: Array<A> = []
    let wake: (() => void) | undefined
    const waiting = Effect.async<void>((resume) => {
      if (items.length > 0) return resume(Effect.void)
      wake = () => resume(Effect.void)
    })
    const next = Effect.suspend(() => {
      const batch = items
      items = []
      return work(batch)
    })
    const push = (item: A) => {
      items.push(item)
      const resume = wake
      wake = undefined
      resume?.()
    }
    return Effect.as(Effect.forkScoped(Effect.interruptible(Effect.forever(Effect.zipRight(waiting, next)))), push)
  })
