/**
 * `BaselineDO`: the floor for the workerd fan-out bench. One object is one
 * record; its subscribers are a `Set` of stream controllers. A publish encodes
 * one frame and enqueues the same bytes to every controller. No replay buffer,
 * no validation, no heartbeat, no bound per subscriber.
 *
 * It speaks the binding contract of `SaacmsRealtimeDO`: `GET` with
 * `Accept: text/event-stream` subscribes (the stream starts with
 * `:keepalive\n\n`), `POST` with a JSON event publishes and answers 204.
 *
 * workerd never cancels a `ReadableStream` response body when the client
 * leaves, so `BaselineDO` keeps writing to subscribers that are gone.
 * `BaselinePipeDO` is the same object, except that each subscriber's stream is
 * piped into workerd's native `IdentityTransformStream` and the response body
 * is the pipe's readable side, as `SaacmsRealtimeDO` does: writes through the
 * pipe fail once the client is gone, the failed pipe cancels the stream, and
 * the cancel removes the controller.
 */

const encoder = new TextEncoder()
const keepalive = encoder.encode(":keepalive\n\n")
const headers = {
  "Content-Type": "text/event-stream",
  "Cache-Control": "no-cache, no-transform",
  Connection: "keep-alive"
}

type Controller = ReadableStreamDefaultController<Uint8Array>

/** workerd's native byte pipe (not in the DOM types). */
declare const IdentityTransformStream: new() => TransformStream<Uint8Array, Uint8Array>

interface PublishedEvent {
  readonly type: string
  readonly id: string
  readonly record?: unknown
  readonly etag?: string
}

export class BaselineDO {
  readonly #subscribers = new Set<Controller>()
  #counter = 0

  async fetch(request: Request): Promise<Response> {
    if (request.method === "GET" && (request.headers.get("Accept") ?? "").includes("text/event-stream")) {
      return this.#subscribe()
    }
    if (request.method === "POST") {
      this.#publish(JSON.parse(await request.text()) as PublishedEvent)
      return new Response(null, { status: 204 })
    }
    return new Response("not found", { status: 404 })
  }

  #subscribe(): Response {
    const subscribers = this.#subscribers
    let controller: Controller | undefined
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c
        subscribers.add(c)
        c.enqueue(keepalive)
      },
      cancel() {
        if (controller !== undefined) subscribers.delete(controller)
      }
    })
    return new Response(this.body(stream), { headers })
  }

  /** The response body that carries a subscriber's stream: the stream itself. */
  protected body(stream: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    return stream
  }

  #publish(event: PublishedEvent): void {
    const id = event.etag ?? `${Date.now()}-${++this.#counter}`
    const frame = encoder.encode(`event: ${event.type}\nid: ${id}\ndata: ${JSON.stringify(event.record ?? { id: event.id })}\n\n`)
    for (const controller of this.#subscribers) {
      try {
        controller.enqueue(frame)
      } catch {
        this.#subscribers.delete(controller)
      }
    }
  }
}

export class BaselinePipeDO extends BaselineDO {
  /** The readable side of a native pipe that `stream` feeds; a failed pipe cancels `stream`. */
  protected override body(stream: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    const pipe = new IdentityTransformStream()
    stream.pipeTo(pipe.writable).catch(() => {
      // Released by the cancel.
    })
    return pipe.readable
  }
}
