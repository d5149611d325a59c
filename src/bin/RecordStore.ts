/** The demo host's records: one `Map`, keyed like the realtime core (`"<slug>:<id>"`). Not part of the package. */
import * as Effect from "effect/Effect"
import type * as Event from "../Event.js"

export interface StoredRecord {
  readonly body: string
  readonly etag: string
}

export class RecordStore extends Effect.Service<RecordStore>()("demo/RecordStore", {
  sync: () => new Map<Event.ResourceKey, StoredRecord>()
}) {}
