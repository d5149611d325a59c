import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Event from "../src/Event.js"
import * as Hub from "../src/Hub.js"
import * as Realtime from "../src/Realtime.js"

const decoder = new TextDecoder()
const key = Effect.runSync(Event.resourceKey("posts", "1"))

describe("Realtime", () => {
  it.scoped("smoke: replay then live", () =>
    Effect.gen(function*() {
      const rt = yield* Realtime.Realtime
      yield* rt.publish({ type: "changed", slug: "posts", id: "1", record: { a: 1 }, etag: "e1" })
      yield* rt.publish({ type: "changed", slug: "posts", id: "1", record: { a: 2 }, etag: "e2" })
      const fiber = yield* rt.subscribe(key, "e1").pipe(Stream.take(2), Stream.runCollect, Effect.fork)
      yield* Effect.yieldNow()
      yield* TestClock.adjust("1 millis")
      yield* rt.publish({ type: "changed", slug: "posts", id: "1", record: { a: 3 }, etag: "e3" })
      const out = yield* Fiber.join(fiber)
      const text = Chunk.toReadonlyArray(out).map((b) => decoder.decode(b)).join("")
      assert.strictEqual(
        text,
        ":keepalive\n\nevent: changed\nid: e2\ndata: {\"a\":2}\n\nevent: changed\nid: e3\ndata: {\"a\":3}\n\n"
      )
      const hub = yield* Hub.Hub
      assert.strictEqual(yield* hub.totalSubscribers, 0)
    }).pipe(Effect.provide(Realtime.layerMemory)))
})
