/**
 * An `eventsource` (v4) client for the end-to-end tests, observed through
 * Effect queues. Its `fetch` is wrapped to:
 * - record each connection attempt and the `Last-Event-ID` it sends;
 * - hold a reconnection until the test lets it through (`allowReconnect`), so
 *   "published while the client was disconnected" is a fact, not a race;
 * - prepend `retry: <ms>` to every response, so the client's automatic
 *   reconnection waits milliseconds instead of the spec's 3 s default (our
 *   server sends no `retry:` field);
 * - report when a connection's first server bytes (the `:keepalive`, written
 *   after the subscription is registered) arrive.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import { EventSource, type EventSourceFetchInit } from "eventsource"

/** One event as the client's listeners saw it. */
export interface Message {
  readonly type: string
  readonly data: string
  readonly lastEventId: string
}

/** One connection attempt made by the client. */
export interface Attempt {
  /** 1 for the first connection, 2 for the first reconnection, … */
  readonly attempt: number
  readonly url: string
  /** The `Last-Event-ID` header the client sent, if any. */
  readonly lastEventId: string | undefined
}

export interface Client {
  readonly eventSource: EventSource
  /** Events of the listened types, in arrival order. */
  readonly messages: Queue.Dequeue<Message>
  /** A connection attempt whose first server bytes arrived. */
  readonly connected: Queue.Dequeue<Attempt>
  /** Every `error` event: the connection was lost or refused (the client then retries). */
  readonly errors: Queue.Dequeue<string>
  /**
   * Wait for the next connection's first server bytes; fails on an `error`
   * event (e.g. a non-200 answer) or after `timeout`.
   */
  readonly ready: (timeout?: Duration.DurationInput) => Effect.Effect<Attempt, Error>
  /** Every connection attempt so far. */
  readonly attempts: ReadonlyArray<Attempt>
  /** Let reconnections through (the first connection is never held). */
  readonly allowReconnect: Effect.Effect<void>
  /** Cut the current connection as a network failure would (the client then reconnects). */
  readonly cut: Effect.Effect<void>
  /** Take exactly `n` messages, failing after `timeout`. */
  readonly take: (n: number, timeout?: Duration.DurationInput) => Effect.Effect<Array<Message>, Error>
}

const encoder = new TextEncoder()

/**
 * Open an `EventSource` on `url` listening to `types`. Closing the scope
 * closes it. Reconnections are held until `allowReconnect` unless
 * `holdReconnect` is `false`.
 */
export const open = (
  url: string,
  options: {
    readonly types: ReadonlyArray<string>
    readonly retryMs?: number
    readonly holdReconnect?: boolean
  }
): Effect.Effect<Client, never, Scope.Scope> =>
  Effect.gen(function*() {
    const messages = yield* Queue.unbounded<Message>()
    const connected = yield* Queue.unbounded<Attempt>()
    const errors = yield* Queue.unbounded<string>()
    const attempts: Array<Attempt> = []
    const retry = encoder.encode(`retry: ${options.retryMs ?? 20}\n\n`)
    let release!: () => void
    const reconnectAllowed = new Promise<void>((resolve) => {
      release = resolve
    })
    if (options.holdReconnect === false) release()
    let cutCurrent: (() => void) | undefined

    const fetchWrapper = async (input: string | URL, init: EventSourceFetchInit) => {
      const attempt: Attempt = {
        attempt: attempts.length + 1,
        url: String(input),
        lastEventId: init.headers["Last-Event-ID"]
      }
      attempts.push(attempt)
      if (attempt.attempt > 1) {
        const signal = init.signal as AbortSignal
        await Promise.race([
          reconnectAllowed,
          new Promise<void>((_, reject) =>
            signal.addEventListener("abort", () => reject(signal.reason), { once: true })
          )
        ])
      }
      const response = await fetch(input, init)
      if (response.body === null) return response
      let first = true
      const body = response.body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          start: (controller) => {
            controller.enqueue(retry)
            cutCurrent = () => controller.error(new Error("connection cut"))
          },
          transform: (chunk, controller) => {
            if (first) {
              first = false
              Queue.unsafeOffer(connected, attempt)
            }
            controller.enqueue(chunk)
          }
        })
      )
      return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers })
    }

    const eventSource = yield* Effect.acquireRelease(
      Effect.sync(() => new EventSource(url, { fetch: fetchWrapper })),
      (eventSource) => Effect.sync(() => eventSource.close())
    )
    for (const type of options.types) {
      eventSource.addEventListener(type, (event: MessageEvent) => {
        Queue.unsafeOffer(messages, { type, data: String(event.data), lastEventId: event.lastEventId })
      })
    }
    eventSource.addEventListener("error", (event) => {
      Queue.unsafeOffer(errors, event.message ?? "error")
    })

    const take = (n: number, timeout: Duration.DurationInput = "5 seconds") =>
      Queue.takeN(messages, n).pipe(
        Effect.map((chunk) => Array.from(chunk)),
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new Error(`timed out after ${Duration.format(timeout)} waiting for ${n} message(s)`)
        })
      )

    const ready = (timeout: Duration.DurationInput = "5 seconds") =>
      Effect.raceFirst(
        Queue.take(connected),
        Effect.flatMap(Queue.take(errors), (message) => Effect.fail(new Error(`EventSource error: ${message}`)))
      ).pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new Error(`timed out after ${Duration.format(timeout)} waiting for a connection`)
        })
      )

    return {
      eventSource,
      messages,
      connected,
      errors,
      attempts,
      allowReconnect: Effect.sync(() => release()),
      cut: Effect.sync(() => cutCurrent?.()),
      ready,
      take
    }
  })
