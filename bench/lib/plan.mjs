/**
 * Which record each published event goes to: event `n` (the publish index,
 * carried in the record) goes to key `n % keys`. Subscribers use the plan to
 * know which events they are owed and in which order.
 */
export class Plan {
  constructor(keys, total) {
    this.keys = keys
    this.total = total
    this.keyOf = new Int32Array(total)
    this.positionOf = new Int32Array(total)
    this.perKey = new Int32Array(keys)
    for (let n = 0; n < total; n++) {
      const key = n % keys
      this.keyOf[n] = key
      this.positionOf[n] = this.perKey[key]++
    }
  }

  /** How many of the first `published` events go to `key`. */
  eventsOf(key, published = this.total) {
    if (published >= this.total) return this.perKey[key]
    return published <= key ? 0 : Math.ceil((published - key) / this.keys)
  }

  /** Collection and id of a key, as the bench routes spell them. */
  static path(key) {
    return `bench/k${key}`
  }
}
