/**
 * A fixed-capacity FIFO over an array: pushing onto a full buffer drops the
 * oldest item. Pure data structure, no Effect.
 *
 * @internal
 */
export class RingBuffer<A> {
  private readonly items: Array<A | undefined>
  private start = 0
  private count = 0

  constructor(readonly capacity: number) {
    this.items = new Array(capacity)
  }

  get size(): number {
    return this.count
  }

  /** Append `item`; returns the evicted oldest item when the buffer was full. */
  push(item: A): A | undefined {
    if (this.count < this.capacity) {
      this.items[(this.start + this.count) % this.capacity] = item
      this.count++
      return undefined
    }
    const evicted = this.items[this.start]
    this.items[this.start] = item
    this.start = (this.start + 1) % this.capacity
    return evicted
  }

  /** The item at `index` (0 = oldest). */
  at(index: number): A | undefined {
    return index < 0 || index >= this.count ? undefined : this.items[(this.start + index) % this.capacity]
  }

  /** Drop items from the front while `predicate` holds; returns how many were dropped. */
  dropWhile(predicate: (item: A) => boolean): number {
    let dropped = 0
    while (this.count > 0 && predicate(this.items[this.start] as A)) {
      this.items[this.start] = undefined
      this.start = (this.start + 1) % this.capacity
      this.count--
      dropped++
    }
    return dropped
  }

  /** Index of the newest item matching `predicate`, or -1. */
  findLastIndex(predicate: (item: A) => boolean): number {
    for (let i = this.count - 1; i >= 0; i--) {
      if (predicate(this.items[(this.start + i) % this.capacity] as A)) return i
    }
    return -1
  }

  /** Items from `index` (0 = oldest) to the newest, as a new array. */
  sliceFrom(index: number): Array<A> {
    const out: Array<A> = []
    for (let i = Math.max(0, index); i < this.count; i++) {
      out.push(this.items[(this.start + i) % this.capacity] as A)
    }
    return out
  }
}
