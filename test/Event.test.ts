import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Event from "../src/Event.js"

describe("Event", () => {
  it.effect("resource keys come from a valid slug and id only", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* Event.resourceKey("blog-posts", "a1_b.c~d-e"), "blog-posts:a1_b.c~d-e")
      const bad: ReadonlyArray<readonly [unknown, unknown, "collection" | "id"]> = [
        ["a:b", "c", "collection"],
        ["a", "b:c", "id"],
        ["", "1", "collection"],
        ["-posts", "1", "collection"],
        ["p".repeat(65), "1", "collection"],
        ["posts", "", "id"],
        ["posts", "x".repeat(129), "id"],
        ["posts", "a/b", "id"],
        ["posts", "a\nb", "id"],
        // URL paths resolve these away, so no client could reach the record.
        ["posts", ".", "id"],
        ["posts", "..", "id"],
        [undefined, "1", "collection"],
        ["posts", 7, "id"]
      ]
      for (const [slug, id, field] of bad) {
        const error = yield* Effect.flip(Event.resourceKey(slug, id))
        assert.strictEqual(error._tag, "InvalidResourceKey")
        assert.strictEqual(error.field, field)
      }
    }))

  it.effect("keys that would collide when joined naively are told apart", () =>
    Effect.gen(function*() {
      // "a:b" + "c" and "a" + "b:c" both join to "a:b:c": only one of them is valid.
      const left = yield* Effect.either(Event.resourceKey("a:b", "c"))
      const right = yield* Effect.either(Event.resourceKey("a", "b:c"))
      assert.isTrue(left._tag === "Left" && right._tag === "Left")
    }))

  it.effect("decodes events and rejects malformed ones", () =>
    Effect.gen(function*() {
      const ok = yield* Event.decode({ type: "changed", slug: "posts", id: "1", record: { a: 1 }, etag: "e" })
      assert.strictEqual(ok.key, "posts:1")
      const nullEtag = yield* Event.decode({ type: "snapshot", slug: "posts", id: "1", record: 1, etag: null })
      assert.isFalse("etag" in nullEtag.event && nullEtag.event.etag !== undefined)
      const bad: ReadonlyArray<unknown> = [
        null,
        "changed",
        { type: "created", slug: "posts", id: "1", record: {} },
        { type: "changed", slug: "posts", id: "1", record: {}, etag: "a\r\nevent: x" },
        { type: "changed", slug: "posts", id: "1", record: {}, etag: "a\0" },
        { type: "changed", slug: "posts", id: "1", record: {}, etag: "e".repeat(257) },
        { type: "changed", slug: "posts", id: "1", record: {}, etag: 5 },
        // UTF-8 would carry a lone surrogate as U+FFFD: the client's id would differ.
        { type: "changed", slug: "posts", id: "1", record: {}, etag: "v\uD83D" },
        { type: "deleted", slug: "posts" }
      ]
      for (const input of bad) {
        assert.strictEqual((yield* Effect.flip(Event.decode(input)))._tag, "InvalidEvent")
      }
      const badKey = yield* Effect.flip(Event.decode({ type: "deleted", slug: "po:sts", id: "1" }))
      assert.strictEqual(badKey._tag, "InvalidResourceKey")
    }))

  it.effect("last event ids: at most 256 UTF-16 code units, no CR, LF, NUL or lone surrogate", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* Event.decodeLastEventId("1764-3"), "1764-3")
      assert.strictEqual(yield* Event.decodeLastEventId("é😀"), "é😀")
      for (const id of ["x".repeat(257), "a\nb", "a\rb", "a\0b", "\uDE00x", "x\uD83D"]) {
        assert.strictEqual((yield* Effect.flip(Event.decodeLastEventId(id)))._tag, "InvalidLastEventId")
      }
    }))
})
