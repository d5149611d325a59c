/** An in-memory stand-in for a Durable Object's `state.storage`, so TestClock drives its driver. */
import type * as Storage from "../../src/DurableObject/Storage.js"

/** `state.storage` as far as the driver uses it: values are structured clones, as in workerd. */
export class MemoryStorage implements Storage.StorageLike {
  readonly data = new Map<string, unknown>()
  alarm: number | null = null
  get<T>(k: string) {
    return Promise.resolve(structuredClone(this.data.get(k)) as T | undefined)
  }
  list<T>(options?: { readonly prefix?: string }) {
    const keys = [...this.data.keys()].filter((k) => k.startsWith(options?.prefix ?? "")).sort()
    return Promise.resolve(new Map(keys.map((k) => [k, structuredClone(this.data.get(k)) as T])))
  }
  put<T>(entries: Record<string, T>) {
    for (const [k, v] of Object.entries(entries)) this.data.set(k, structuredClone(v))
    return Promise.resolve()
  }
  delete(keys: Array<string>) {
    return Promise.resolve(keys.filter((k) => this.data.delete(k)).length)
  }
  getAlarm() {
    return Promise.resolve(this.alarm)
  }
  setAlarm(at: number) {
    this.alarm = at
    return Promise.resolve()
  }
  /** Event ids held in storage, oldest first. */
  ids(): Array<string> {
    return [...this.data.entries()].filter(([k]) => k.includes(":event:")).sort(([a], [b]) => a < b ? -1 : 1)
      .map(([, v]) => (v as { id: string }).id)
  }
}

