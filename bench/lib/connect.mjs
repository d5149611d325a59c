/** Open many subscribers with bounded concurrency. */
import { Plan } from "./plan.mjs"
import { Subscriber } from "./subscriber.mjs"

const concurrency = 200
const timeoutMs = 20_000

/**
 * Subscribe `count` clients, client `i` to key `keyOf(i)` on the server at
 * `portOf(i)`; with `firstByteMs` (an array), push each one's time from
 * connect to the first body bytes (ms). Resolves with the subscribers whose stream started; `failed`
 * counts the others.
 */
export const connect = async ({ portOf, count, keyOf, plan, ledger, firstByteMs }) => {
  const subscribers = []
  let failed = 0
  let firstError
  let next = 0
  const worker = async () => {
    while (next < count) {
      const i = next++
      const key = keyOf(i)
      try {
        const subscriber = new Subscriber(key, plan, ledger)
        const start = performance.now()
        subscribers.push(await subscriber.open(portOf(i), `/api/saacms/v1/${Plan.path(key)}/subscribe`, timeoutMs))
        firstByteMs?.push(performance.now() - start)
      } catch (error) {
        failed++
        firstError ??= error.message
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  return { subscribers, failed, firstError }
}
