/**
 * Spans at the price of what they are for. Effect 3's `Effect.withSpan` costs
 * a few microseconds a call even when nothing records spans: it makes the span
 * the parent of what runs inside (a fiber-local change of the context, about
 * half of it) and ends it under an uninterruptible mask. Publish is a hot path,
 * so:
 *
 * - under Effect's built-in tracer (the app set none: no exporter can see a
 *   span) no span is made at all, and the callback gets a span that records
 *   nothing;
 * - `light` spans are made and ended around the call, without becoming the
 *   parent of what runs inside (nothing inside publish opens spans of its
 *   own); an interrupted call leaves its span unended, so it is not exported.
 *
 * @internal
 */
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"

// The tracer in force when the app sets none: its spans go nowhere.
const builtIn = Context.get(DefaultServices.liveServices, Tracer.Tracer)

const options = { captureStackTrace: false } as const

/** A span that records nothing, for callers that set attributes unconditionally. */
export const unrecorded: Tracer.Span = {
  _tag: "Span",
  name: "unrecorded",
  spanId: "",
  traceId: "",
  parent: Option.none(),
  context: Context.empty(),
  status: { _tag: "Started", startTime: BigInt(0) },
  attributes: new Map(),
  links: [],
  sampled: false,
  kind: "internal",
  end: () => {},
  attribute: () => {},
  event: () => {},
  addLinks: () => {}
}

/**
 * `f` in a span named `name` that is also the parent of the spans opened
 * inside (as `Effect.withSpan`), when a tracer other than the built-in one is
 * in force.
 */
export const traced = <A, E, R>(
  name: string,
  f: (span: Tracer.Span) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.tracerWith((tracer) =>
    tracer === builtIn ? f(unrecorded) : Effect.useSpan(name, options, (span) => Effect.withParentSpan(f(span), span))
  )

/**
 * `f` in a span named `name`, a child of the caller's, when a tracer other
 * than the built-in one is in force; spans opened inside `f` do not nest
 * under it.
 */
export const light = <A, E, R>(
  name: string,
  f: (span: Tracer.Span) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.tracerWith((tracer) =>
    tracer === builtIn ? f(unrecorded) : Effect.clockWith((clock) =>
      Effect.flatMap(Effect.makeSpan(name, options), (span) => {
        // A span started without timing (`Layer.setTracerTiming(false)`) ends without it too.
        const end = (exit: Exit.Exit<unknown, unknown>) =>
          span.end(span.status.startTime === BigInt(0) ? BigInt(0) : clock.unsafeCurrentTimeNanos(), exit)
        return Effect.matchCauseEffect(f(span), {
          onFailure: (cause) => {
            end(Exit.failCause(cause))
            return Effect.failCause(cause)
          },
          onSuccess: (a) => {
            end(Exit.succeed(a))
            return Effect.succeed(a)
          }
        })
      })
    )
  )
