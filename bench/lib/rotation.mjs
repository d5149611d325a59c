/**
 * Publishing to several servers of one cluster in turn: `block` publishes to
 * one server, then a wait for all of their answers, then the next `block` to
 * the next server. A publish is answered only once it is in the shared
 * backend (for Redis: appended and `PUBLISH`ed), so a record's publishes stay
 * in the order they were sent even when consecutive ones go through different
 * servers. With one server and no `block`, it is a plain `Publisher`.
 */
import { Publisher } from "./publisher.mjs"

export class Rotation {
  /** `lanes` connections to each server in `ports`, at most `depth` requests in flight (`pipelining`: see `Publisher`). */
  static async open(ports, lanes, depth, { block, pipelining } = {}) {
    const publishers = await Promise.all(ports.map((port) => Publisher.open(port, lanes, depth, { pipelining })))
    return new Rotation(publishers, block ?? (ports.length > 1 ? depth : undefined))
  }

  constructor(publishers, block) {
    this.publishers = publishers
    this.block = block
    this.current = 0
    this.count = 0
  }

  /** Publish event `n` to `key` through the current server (see `Publisher.publish`). */
  async publish(n, key, size) {
    if (this.block !== undefined && this.count > 0 && this.count % this.block === 0) {
      await this.publishers[this.current].drain()
      this.current = (this.current + 1) % this.publishers.length
    }
    this.count++
    await this.publishers[this.current].publish(n, key, size)
  }

  /** From now on, keep the round trip (request written → answer read, ms) of every publish. */
  recordRoundTrips() {
    for (const publisher of this.publishers) publisher.roundTrips = []
  }

  /** The round trips kept since `recordRoundTrips`; stops keeping them. */
  takeRoundTrips() {
    const samples = this.publishers.flatMap((publisher) => publisher.roundTrips ?? [])
    for (const publisher of this.publishers) publisher.roundTrips = null
    return samples
  }

  get sent() {
    return this.publishers.reduce((sum, publisher) => sum + publisher.sent, 0)
  }

  get errors() {
    return this.publishers.reduce((sum, publisher) => sum + publisher.errors, 0)
  }

  get firstError() {
    return this.publishers.find((publisher) => publisher.firstError !== undefined)?.firstError
  }

  async drain() {
    await Promise.all(this.publishers.map((publisher) => publisher.drain()))
  }

  close() {
    for (const publisher of this.publishers) publisher.close()
  }
}
