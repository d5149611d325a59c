/**
 * The hub's heartbeat: one for the whole hub, running while any subscriber
 * that wants it is joined. Each beat first ends the subscribers that took
 * nothing over the last interval while frames waited (workerd, for one,
 * never says a client left), then sends `:keepalive` to the others; an
 * expired grant on a quiet record ends here too.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Scope from "effect/Scope"
import * as Frame from "../Frame.js"
import * as Heartbeat from "../Heartbeat.js"
import type * as Hub from "../Hub.js"
import * as Metrics from "../Metrics.js"
import type * as Mailbox from "./mailbox.js"

/** The heartbeat message. */
export const keepalive: Hub.Message = { seq: 0, frame: Frame.keepalive }

export interface Beating {
  /** `delta` subscribers that want the heartbeat joined (positive) or left (negative). */
  readonly change: (delta: number) => Effect.Effect<void>
}

/**
 * The heartbeat of the subscribers in `topics` (read at each beat), forked in
 * the scope and the services of the hub that makes it.
 *
 * @param expired ends a subscriber whose grant has ended (`true`)
 */
export const make = (
  topics: ReadonlyMap<unknown, { readonly subscribers: Iterable<Mailbox.Mailbox> }>,
  expired: (subscriber: Mailbox.Mailbox) => boolean
): Effect.Effect<Beating, never, Scope.Scope | Heartbeat.Heartbeat> =>
  Effect.gen(function*() {
    const heartbeat = yield* Heartbeat.Heartbeat
    const hubScope = yield* Effect.scope
    // What the beat fiber runs with, whichever subscriber's request starts it:
    // it keeps nothing of that request (its span, its request).
    const hubContext = yield* Effect.context<Scope.Scope | Heartbeat.Heartbeat>()

    const beat = Effect.suspend(() => {
      let stalled = 0
      for (const topic of topics.values()) {
        for (const subscriber of topic.subscribers) {
          if (!subscriber.heartbeat) continue
          if (subscriber.checkStalled()) stalled++
          else if (!expired(subscriber)) subscriber.offer(keepalive)
        }
      }
      return stalled === 0 ? Effect.void : Effect.zipRight(
        Effect.sync(() => Metrics.slowSubscribers.unsafeUpdate(stalled, [])),
        Effect.logDebug("subscribers took nothing for a heartbeat interval; their streams end").pipe(
          Effect.annotateLogs({ stalled })
        )
      )
    })

    let beaters = 0
    let running: Scope.CloseableScope | undefined
    const start = Effect.flatMap(Scope.fork(hubScope, ExecutionStrategy.sequential), (scope) => {
      running = scope
      return Effect.locally(Scope.extend(heartbeat.keep(beat), scope), FiberRef.currentContext, hubContext)
    })
    const stop = Effect.suspend(() => {
      const scope = running
      running = undefined
      return scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
    })

    return {
      change: (delta) =>
        Effect.suspend(() => {
          beaters += delta
          return delta > 0 && beaters === delta ? start : delta < 0 && beaters === 0 ? stop : Effect.void
        })
    }
  })
