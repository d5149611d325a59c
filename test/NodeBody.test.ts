/**
 * The Node response body (`src/internal/nodeBody.ts`): an async iterator over
 * a subscriber's mailbox that `@effect/platform-node` pipes into the response
 * (the HTTP suites run it on Node), and the `pipe` its duck type asks for.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { Writable } from "node:stream"
import * as Mailbox from "../src/internal/mailbox.js"
import { NodeBody } from "../src/internal/nodeBody.js"
import * as Realtime from "../src/Realtime.js"
import * as Sse from "./utils/sse.js"
import { awaitSubscribers, key, memory } from "./utils/layers.js"

const posts1 = key("posts", "1")
const changed = (n: number) => ({ type: "changed", slug: "posts", id: "1", record: { n }, etag: `e${n}` }) as const

const bodyOf = (subscriber: Realtime.Subscriber) => {
  assert.instanceOf(subscriber, Mailbox.Mailbox)
  return new NodeBody(subscriber as Mailbox.Mailbox)
}

describe("NodeBody", () => {
  it.effect("iterates the opening, then what is published, and ends when the subscriber closes", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const subscriber = yield* realtime.open(posts1)
      const body = bodyOf(subscriber)
      const chunks: Array<Uint8Array> = []
      const reading = Effect.runPromise(Effect.promise(async () => {
        for await (const chunk of body) chunks.push(chunk)
      }))
      for (let n = 1; n <= 3; n++) yield* realtime.publish(changed(n))
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      subscriber.close()
      yield* Effect.promise(() => reading)
      assert.deepStrictEqual(Sse.parse(chunks).map((e) => e.id), ["e1", "e2", "e3"])
    }).pipe(Effect.provide(memory())))

  it.effect("pipe writes to a Writable, waits for drain, ends it when the subscriber closes; a destination that closes ends the subscriber", () =>
    Effect.gen(function*() {
      const realtime = yield* Realtime.Realtime
      const subscriber = yield* realtime.open(posts1)
      const chunks: Array<Uint8Array> = []
      let finished = false
      // A high-water mark of one byte: every write asks for a drain.
      const destination = new Writable({
        highWaterMark: 1,
        write: (chunk, _encoding, callback) => {
          chunks.push(chunk)
          setImmediate(callback)
        },
        final: (callback) => {
          finished = true
          callback()
        }
      })
      bodyOf(subscriber).pipe(destination)
      for (let n = 1; n <= 5; n++) {
        yield* realtime.publish(changed(n))
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      }
      subscriber.close()
      yield* Effect.promise(() => new Promise((resolve) => destination.once("finish", resolve)))
      assert.isTrue(finished)
      assert.deepStrictEqual(Sse.parse(chunks).map((e) => e.id), ["e1", "e2", "e3", "e4", "e5"])

      const other = yield* realtime.open(posts1)
      const gone = new Writable({ write: (_chunk, _encoding, callback) => callback() })
      bodyOf(other).pipe(gone)
      yield* awaitSubscribers(posts1, 1)
      gone.destroy()
      yield* awaitSubscribers(posts1, 0)
    }).pipe(Effect.provide(memory())))
})
