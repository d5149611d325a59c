/**
 * A multiplexed stream on Workers. A Worker request may hold only a few
 * outgoing connections at once (6 in production), so a stream does not open
 * one per topic: each collection has an object of its own
 * (`"<collection>:*"`), which every publish of the collection also reaches and
 * which serves any topics of that collection, records or the whole, over one
 * stream. The Worker opens one stream per collection named and merges them:
 * one opening, one `saacms-welcome` for all topics, then every frame as its
 * object sent it with the stream's own cursor as its id (the objects' cursors
 * say where each of their topics stands; the Worker's covers every topic, in
 * the format of `Multiplex`, so a client resumes the same way everywhere).
 *
 * @since 0.1.0
 */
import * as Frame from "../Frame.js"
import * as Multiplex from "../Multiplex.js"
import type * as Realtime from "../Realtime.js"

/**
 * One collection's stream: its topics' places in the whole list, and its
 * object's response body.
 *
 * @since 0.1.0
 * @category models
 */
export interface Part {
  readonly topics: ReadonlyArray<Multiplex.Topic>
  /** Where each of `topics` stands in the whole (canonical) list. */
  readonly indexes: ReadonlyArray<number>
  readonly body: ReadableStream<Uint8Array>
}

const encoder = new TextEncoder()
// What a client may leave unread before the Worker stops reading its objects.
const highWaterMark = 64 * 1024

interface Source {
  readonly part: Part
  readonly hash: number
  readonly reader: ReadableStreamDefaultReader<Uint8Array>
  readonly decoder: TextDecoder
  text: string
  welcomed: boolean
  /** Its topics whose access ended (the object's stream ends with the last). */
  readonly revoked: Set<string>
  ended: boolean
}

/**
 * The merged stream of `parts`, for `topics` (the whole canonical list, whose
 * positions start at `positions`; `denied` topics get their own frame after
 * the welcome).
 *
 * @since 0.1.0
 * @category constructors
 */
export class MultiplexSubscriber implements Realtime.Subscriber {
  readonly #topics: ReadonlyArray<Multiplex.Topic>
  readonly #hash: number
  readonly #positions: Array<Multiplex.Position>
  readonly #denied: ReadonlyMap<number, { readonly status: number; readonly reason: string }>
  readonly #opening: Uint8Array
  readonly #sources: Array<Source>
  /** Events of objects already welcomed, held until every object has: `[source, block]`. */
  #held: Array<readonly [Source, string]> = []
  #controller: ReadableStreamDefaultController<Uint8Array> | undefined = undefined
  /** The pumps waiting for the client to take what it holds. */
  #waiting: Array<() => void> = []
  #ended = false

  constructor(
    topics: ReadonlyArray<Multiplex.Topic>,
    positions: ReadonlyArray<Multiplex.Position>,
    denied: ReadonlyMap<number, { readonly status: number; readonly reason: string }>,
    parts: ReadonlyArray<Part>,
    retryMs: number | undefined
  ) {
    this.#topics = topics
    this.#hash = Multiplex.listHash(topics)
    this.#positions = positions.slice()
    this.#denied = denied
    this.#opening = Frame.concat(retryMs === undefined ? [Frame.keepalive] : [Frame.keepalive, Frame.retry(retryMs)])
    this.#sources = parts.map((part) => ({
      part,
      hash: Multiplex.listHash(part.topics),
      reader: part.body.getReader(),
      decoder: new TextDecoder(),
      text: "",
      welcomed: false,
      revoked: new Set(),
      ended: false
    }))
  }

  toReadableStream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller
        controller.enqueue(this.#opening)
        for (const source of this.#sources) void this.#pump(source)
      },
      pull: () => this.#wake(),
      cancel: () => this.close()
    }, { highWaterMark, size: (chunk) => chunk?.byteLength ?? 0 })
  }

  close(): void {
    if (this.#ended) return
    this.#ended = true
    for (const source of this.#sources) source.reader.cancel().catch(() => undefined)
    try {
      this.#controller?.close()
    } catch {
      // Already closed or cancelled.
    }
    this.#wake()
  }

  #wake(): void {
    const waiting = this.#waiting
    this.#waiting = []
    for (const resume of waiting) resume()
  }

  // Read one object's stream while the client has room. Its end ends the
  // whole stream (the client resumes every topic from its cursor), unless it
  // ended because each of its topics' access did: the others go on.
  async #pump(source: Source): Promise<void> {
    try {
      while (!this.#ended) {
        const desired = this.#controller?.desiredSize ?? 0
        if (desired <= 0) {
          await new Promise<void>((resolve) => {
            this.#waiting.push(resolve)
          })
          continue
        }
        const chunk = await source.reader.read()
        if (chunk.done) break
        source.text += source.decoder.decode(chunk.value, { stream: true })
        let end = source.text.indexOf("\n\n")
        while (end !== -1) {
          const block = source.text.slice(0, end)
          source.text = source.text.slice(end + 2)
          this.#receive(source, block)
          end = source.text.indexOf("\n\n")
        }
      }
    } catch {
      // The object's stream failed: end this one too.
      return this.close()
    }
    source.ended = true
    if (source.revoked.size < source.part.topics.length || this.#sources.every((s) => s.ended)) this.close()
  }

  #receive(source: Source, block: string): void {
    if (block.startsWith(":")) {
      // The objects' heartbeats keep the client's stream alive too.
      if (this.#held.length === 0 && this.#sources.every((s) => s.welcomed)) this.#write(`${block}\n\n`)
      return
    }
    // Each object's opening hint is replaced by the Worker's own.
    if (block.startsWith("retry:")) return
    if (block.startsWith("event: saacms-revoked\n")) {
      try {
        const { topic } = JSON.parse(/\ndata: ([^\n]*)/.exec(block)?.[1] ?? "{}") as { topic?: unknown }
        if (typeof topic === "string") source.revoked.add(topic)
      } catch {
        // Not one of ours: forwarded as it is.
      }
    }
    if (!source.welcomed) {
      if (!block.startsWith("event: saacms-welcome\n")) return
      source.welcomed = true
      this.#held.push([source, block])
      if (this.#sources.every((s) => s.welcomed)) this.#welcome()
      return
    }
    if (this.#held.length > 0 || !this.#sources.every((s) => s.welcomed)) {
      this.#held.push([source, block])
      return
    }
    this.#forward(source, block)
  }

  // Every object has said where its topics stand: one welcome for them all,
  // the denials, then what each object sent since, in order.
  #welcome(): void {
    const held = this.#held
    this.#held = []
    const statuses = new Map<string, string>()
    for (const [source, block] of held) {
      if (!block.startsWith("event: saacms-welcome\n")) continue
      const data = /\ndata: ([^\n]*)/.exec(block)?.[1]
      try {
        const welcome = JSON.parse(data ?? "{}") as { topics?: Array<{ topic: string; status: string }> }
        for (const { status, topic } of welcome.topics ?? []) statuses.set(topic, status)
      } catch {
        // An object answers with what it was asked; nothing to read otherwise.
      }
      this.#track(source, block)
    }
    const topics = this.#topics.map((topic, i) => ({
      topic: topic.topic,
      status: (this.#denied.has(i) ? "denied" : statuses.get(topic.topic) ?? "fresh") as "fresh" | "resumed" | "resync" | "denied"
    }))
    const parts = [Frame.welcome(topics, Multiplex.encodeCursor(this.#hash, this.#positions))]
    for (const [i, denial] of this.#denied) parts.push(Frame.topicDenied(this.#topics[i]!.topic, denial.status, denial.reason))
    this.#enqueue(Frame.concat(parts))
    for (const [source, block] of held) {
      if (!block.startsWith("event: saacms-welcome\n")) this.#forward(source, block)
    }
  }

  // An object's frame, with the stream's cursor for its id.
  #forward(source: Source, block: string): void {
    const lines = block.split("\n")
    const kept = lines.filter((line) => !line.startsWith("id:") && !line.startsWith("retry:"))
    if (!this.#track(source, block)) return this.#write(`${kept.join("\n")}\n\n`)
    this.#write(`${kept.join("\n")}\nid: ${Multiplex.encodeCursor(this.#hash, this.#positions)}\n\n`)
  }

  // Take the positions of an object's frame from its cursor; `false` when it has none.
  #track(source: Source, block: string): boolean {
    const id = /(?:^|\n)id: ([^\n]*)/.exec(block)?.[1]
    if (id === undefined) return false
    const positions = Multiplex.decodeCursor(id, source.hash, source.part.topics.length)
    if (positions._tag === "Left" || positions.right === undefined) return false
    positions.right.forEach((position, n) => {
      this.#positions[source.part.indexes[n]!] = position
    })
    return true
  }

  #write(text: string): void {
    this.#enqueue(encoder.encode(text))
  }

  #enqueue(chunk: Uint8Array): void {
    if (this.#ended) return
    try {
      this.#controller?.enqueue(chunk)
    } catch {
      this.close()
    }
  }
}
