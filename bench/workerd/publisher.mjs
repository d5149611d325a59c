/**
 * Publishes bench events to one Durable Object through the bench Worker, in the
 * binding contract's body: `{"type":"changed","slug":…,"id":…,"etag":"e<n>","record":{"n":n,"t":<send time, ms>,"pad":"x…"}}`.
 * It is `../lib/publisher.mjs` (pipelined HTTP/1.1, at most `depth` in flight)
 * with another path and body, over one connection, so the object sees the
 * events in the order they were sent.
 */
import { Publisher } from "../lib/publisher.mjs"

const padding = "x".repeat(1 << 16)
const pad = (length) => padding.slice(0, Math.max(0, length))

export class EventPublisher extends Publisher {
  /** One keep-alive connection to `path` (`/<variant>/<collection>/<id>`) on `port`. */
  static async open(port, { path, collection, id, depth }) {
    const { lanes } = await Publisher.open(port, 1, depth)
    return new EventPublisher(lanes, depth, path, collection, id)
  }

  constructor(lanes, depth, path, collection, id) {
    super(lanes, depth)
    this.path = path
    this.prefix = `{"type":"changed","slug":${JSON.stringify(collection)},"id":${JSON.stringify(id)},"etag":"e`
  }

  /**
   * Publish event `n` with a record of about `size` bytes. Resolves once the
   * request is written and fewer than `depth` are in flight.
   */
  async publish(n, size) {
    while (this.inFlight >= this.depth) await new Promise((resolve) => this.wake = resolve)
    const head = `{"n":${n},"t":`
    const time = performance.now().toFixed(3)
    const record = `${head}${time},"pad":"${pad(size - head.length - time.length - 10)}"}`
    this.inFlight++
    this.sent++
    this.lanes[0].request("POST", this.path, `${this.prefix}${n}","record":${record}}`).then(
      (status) => this.settle(status === 204 ? undefined : `HTTP ${status}`),
      (error) => this.settle(error.message)
    )
  }
}
