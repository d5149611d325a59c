import { createParser, type EventSourceMessage } from "eventsource-parser"

const decoder = new TextDecoder()

/** One parsed SSE item: an event, or a comment (`:keepalive`). */
export type Item = { readonly _tag: "event"; readonly message: EventSourceMessage } | { readonly _tag: "comment"; readonly text: string }

/** Parse SSE bytes (whole frames) with eventsource-parser, keeping comments. */
export const parse = (chunks: Iterable<Uint8Array> | string): Array<Item> => {
  const items: Array<Item> = []
  const parser = createParser({
    onEvent: (message) => items.push({ _tag: "event", message }),
    onComment: (text) => items.push({ _tag: "comment", text })
  })
  if (typeof chunks === "string") parser.feed(chunks)
  else for (const chunk of chunks) parser.feed(decoder.decode(chunk, { stream: true }))
  return items
}

/** The events only (no comments). */
export const events = (chunks: Iterable<Uint8Array> | string): Array<EventSourceMessage> =>
  parse(chunks).flatMap((item) => item._tag === "event" ? [item.message] : [])

/** Decode and join byte chunks. */
export const text = (chunks: Iterable<Uint8Array>): string => {
  let out = ""
  for (const chunk of chunks) out += decoder.decode(chunk, { stream: true })
  return out
}
