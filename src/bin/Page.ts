/**
 * The demo host's page: `GET /` answers one self-contained HTML document (no
 * build step, nothing loaded from elsewhere) that lists a collection's
 * records, edits one, and stays live over ONE `EventSource` on
 * `GET /api/saacms/v1/subscribe?topic=<collection>/*`; and
 * `GET /api/demo/records?collection=posts`, the list it starts from and
 * refetches. Not part of the package exports.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import * as Event from "../Event.js"
import * as RealtimeHttp from "../RealtimeHttp.js"
import { RecordStore } from "./RecordStore.js"

const style = String.raw`
:root { font: 14px/1.4 system-ui, sans-serif; color: #1d2330; --line: #d5d9e0; --muted: #68707d; }
* { box-sizing: border-box; }
body { margin: 0; height: 100vh; display: grid; grid-template-rows: auto 1fr; }
header { display: flex; align-items: center; gap: 12px; padding: 8px 16px; border-bottom: 1px solid var(--line); background: #f5f6f8; }
h1 { font-size: 16px; margin: 0; }
h2 { font-size: 12px; margin: 4px 0; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); }
#state { padding: 2px 10px; border-radius: 10px; font-weight: 600; background: #fde9b8; color: #7a5300; }
#state[data-state=live] { background: #c9f2d4; color: #145c2a; }
#state[data-state=resynced] { background: #d3e4fd; color: #1d4f91; }
#state[data-state=closed], #state[data-state=denied] { background: #f8d0d0; color: #8a1c1c; }
main { display: grid; grid-template-columns: 210px 1fr 380px; min-height: 0; }
main > section { padding: 8px 16px; overflow: auto; display: flex; flex-direction: column; gap: 6px; }
main > section + section { border-left: 1px solid var(--line); }
ul, ol { list-style: none; margin: 0; padding: 0; }
#records li { display: flex; flex-direction: column; padding: 4px 6px; border-radius: 4px; }
#records li.selected { background: #e6edfb; }
#records li.flash { animation: flash 1.5s; }
@keyframes flash { from { background: #fff0a0; } }
#records button { all: unset; cursor: pointer; font-weight: 600; }
#records span, .muted { color: var(--muted); font-size: 12px; }
#records span { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
textarea { flex: 1; min-height: 160px; font: 13px/1.4 ui-monospace, monospace; padding: 8px; border: 1px solid var(--line); border-radius: 4px; resize: none; }
#notice { margin: 0; padding: 6px 8px; background: #fff1d6; border: 1px solid #f0c36d; border-radius: 4px; }
#editing { text-transform: none; letter-spacing: 0; color: #1d2330; }
#dirty { color: #a15c00; text-transform: none; }
#log li, #caught-up li { font: 12px/1.5 ui-monospace, monospace; padding: 1px 0; border-bottom: 1px dotted var(--line); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
#caught-up li { color: #1d4f91; }
`

const script = String.raw`
const collection = new URLSearchParams(location.search).get("collection") || "posts"
const topic = collection + "/*"
const $ = (id) => document.getElementById(id)
const recordUrl = (id) => "/api/saacms/v1/" + encodeURIComponent(collection) + "/" + encodeURIComponent(id)
const pretty = (record) => JSON.stringify(record, null, 2)
const clock = () => new Date().toTimeString().slice(0, 8)
const sameJson = (text, record) => {
  try { return JSON.stringify(JSON.parse(text)) === JSON.stringify(record) } catch { return false }
}
const describe = (e) =>
  (e.type + " " + e.collection + "/" + e.id + (e.record === undefined ? "" : " " + JSON.stringify(e.record))).slice(0, 300)

const records = new Map() // id -> { etag, record }: the collection as this page knows it
let selected = null       // the id open in the editor
let loaded = ""           // the editor's text as last loaded or saved: unsaved edits differ from it
let welcomed = false      // a stream welcomed this page before: a later "fresh" means it lost its place
let refetching = null     // record events received while a refetch is in flight, applied again over its answer
let generation = 0
let catchUp = null        // { at, changes, timer } while a resumed stream replays

$("collection").textContent = collection
document.title = "saacms realtime: " + collection

function setState(state) {
  $("state").textContent = $("state").dataset.state = state
}

// A line of the log or of the caught-up list (in full on hover).
function line(text) {
  const li = document.createElement("li")
  li.textContent = li.title = text
  return li
}

function log(text) {
  $("log").prepend(line(clock() + " " + text))
  while ($("log").children.length > 100) $("log").lastElementChild.remove()
}

// One record event applied to the list; true when it changed what the page had.
function apply(e) {
  const had = records.get(e.id)
  if (e.type === "deleted") return records.delete(e.id)
  if (had !== undefined && had.etag === e.etag) return false
  records.set(e.id, { etag: e.etag, record: e.record })
  return true
}

function render(flashId) {
  const ids = [...records.keys()].sort((a, b) => a.localeCompare(b, "en", { numeric: true }))
  $("records").replaceChildren(...ids.map((id) => {
    const li = document.createElement("li")
    li.dataset.id = id
    li.classList.toggle("selected", id === selected)
    li.classList.toggle("flash", id === flashId)
    const open = document.createElement("button")
    open.type = "button"
    open.textContent = id
    open.addEventListener("click", () => edit(id))
    const preview = document.createElement("span")
    preview.textContent = JSON.stringify(records.get(id).record)
    li.append(open, preview)
    return li
  }))
  $("count").textContent = "(" + ids.length + ")"
}

// The editor.
const dirty = () => $("editor").value !== loaded
const updateDirty = () => { $("dirty").hidden = selected === null || !dirty() }

function notice(text, canReload) {
  $("notice-text").textContent = text
  $("reload").hidden = !canReload
  $("notice").hidden = false
}

function loadEditor(text) {
  loaded = text
  $("editor").value = text
  $("notice").hidden = true
  updateDirty()
}

// Open id in the editor (a new record if there is none), or close the editor (null).
function edit(id) {
  selected = id
  const r = records.get(id)
  loadEditor(id === null ? "" : pretty(r === undefined ? { title: "" } : r.record))
  if (id !== null && r === undefined) loaded = "" // a new record: unsaved until saved
  $("editing").textContent = id === null ? "" : collection + "/" + id
  for (const control of [$("editor"), $("save"), $("delete")]) control.disabled = id === null
  $("status").textContent = ""
  updateDirty()
  render()
}

// The open record changed or went: take it, unless there are unsaved edits that differ from it.
function refreshEditor() {
  const r = records.get(selected)
  if (r !== undefined && (!dirty() || sameJson($("editor").value, r.record))) return loadEditor(pretty(r.record))
  if (r !== undefined) {
    return notice(selected + " changed elsewhere while you were editing: Save to overwrite it, or Reload to take it.", true)
  }
  if (loaded === "") return // a new record, not saved yet
  loaded = ""
  notice(selected + " was deleted elsewhere: Save to create it again.", false)
  updateDirty()
}

async function save() {
  const id = selected
  const text = $("editor").value
  $("status").textContent = "saving…"
  try {
    const response = await fetch(recordUrl(id), { method: "PUT", body: text })
    const body = await response.json()
    if (!response.ok) return void ($("status").textContent = "not saved: " + body.message)
    $("status").textContent = "saved " + response.headers.get("ETag")
    // The change comes back over the stream, as everyone else's do; until then the text sent is saved.
    if (id === selected && $("editor").value === text) loadEditor(text)
  } catch (error) {
    $("status").textContent = "not saved: " + error.message
  }
}

async function remove() {
  const id = selected
  try {
    const response = await fetch(recordUrl(id), { method: "DELETE" })
    if (response.status !== 204) return void ($("status").textContent = "not deleted: " + (await response.json()).message)
    if (id === selected) edit(null)
    $("status").textContent = "deleted " + id
  } catch (error) {
    $("status").textContent = "not deleted: " + error.message
  }
}

$("save").addEventListener("click", save)
$("delete").addEventListener("click", remove)
$("reload").addEventListener("click", () => loadEditor(pretty(records.get(selected).record)))
$("editor").addEventListener("input", updateDirty)
$("new").addEventListener("submit", (event) => {
  event.preventDefault()
  edit($("new-id").value)
  $("new-id").value = ""
})

// The list, (re)fetched when the stream starts fresh or its history is gone.
async function refetch(reason, nextState) {
  const mine = ++generation
  refetching ??= []
  log("refetching the list (" + reason + ")")
  try {
    const response = await fetch("/api/demo/records?collection=" + encodeURIComponent(collection))
    if (!response.ok) throw new Error("HTTP " + response.status)
    const list = await response.json()
    if (mine !== generation) return // a later refetch answers
    records.clear()
    for (const r of list) records.set(r.id, { etag: r.etag, record: r.record })
    for (const e of refetching) apply(e)
    refetching = null
    setState(nextState)
    render()
    if (selected !== null) refreshEditor()
  } catch (error) {
    if (mine === generation) refetching = null
    log("refetch failed: " + error.message)
  }
}

// "Caught up after reconnect": what the page missed while it was away. The
// protocol marks no end to a replay: after a "resumed" welcome the server
// writes every event of the collection past the page's cursor, as fast as the
// page reads them, then goes on live. So the page takes the record events that
// arrive after a resumed welcome until the stream has been quiet for quietMs
// (locally the whole replay comes in the same task as the welcome), and lists
// those that changed what it had: an event whose etag it already has, or the
// deletion of a record it does not have, is no news. A change published during
// that burst would be listed too; one published after it never is.
const quietMs = 300

function startCatchUp() {
  catchUp = { at: clock(), changes: 0, timer: 0 }
  $("caught-up").replaceChildren()
  $("caught-up").dataset.state = "catching-up"
  $("caught-up-summary").textContent = "reconnected at " + catchUp.at + ": catching up…"
  extendCatchUp()
}

function extendCatchUp() {
  clearTimeout(catchUp.timer)
  catchUp.timer = setTimeout(endCatchUp, quietMs)
}

function endCatchUp() {
  clearTimeout(catchUp.timer)
  const n = catchUp.changes
  $("caught-up-summary").textContent = "reconnected at " + catchUp.at + ": " +
    (n === 0 ? "nothing was missed" : n + (n === 1 ? " change" : " changes") + " missed while away")
  $("caught-up").dataset.state = "done"
  catchUp = null
}

function noteRefetch(why) {
  $("caught-up").replaceChildren()
  $("caught-up").dataset.state = "refetched"
  $("caught-up-summary").textContent = clock() + ": " + why + ", so the list was refetched"
}

// The stream: one EventSource for the whole collection.
const source = new EventSource("/api/saacms/v1/subscribe?topic=" + encodeURIComponent(topic))
$("stream").textContent = "GET /api/saacms/v1/subscribe?topic=" + topic

source.addEventListener("open", () => log("stream open"))
source.addEventListener("error", () => {
  const closed = source.readyState === EventSource.CLOSED
  setState(closed ? "closed" : "reconnecting")
  log(closed ? "stream refused: not retrying" : "stream lost: reconnecting")
  if (catchUp !== null) endCatchUp()
})
source.addEventListener("saacms-welcome", (message) => {
  const entry = JSON.parse(message.data).topics.find((t) => t.topic === topic)
  const status = entry === undefined ? "absent" : entry.status
  log("welcome: " + topic + " " + status)
  if (status === "resumed") {
    setState("live")
    startCatchUp()
  } else if (status === "fresh") {
    if (welcomed) noteRefetch("the stream started over")
    refetch("fresh", welcomed ? "resynced" : "live")
  } else if (status === "denied") setState("denied")
  // "resync": the saacms-resync frame that follows refetches.
  welcomed = true
})
source.addEventListener("saacms-resync", (message) => {
  const reason = JSON.parse(message.data).reason
  log("resync: " + reason)
  noteRefetch("the history was gone (" + reason + ")")
  refetch(reason, "resynced")
})
for (const type of ["changed", "snapshot", "deleted"]) {
  source.addEventListener(type, (message) => {
    const e = { type, ...JSON.parse(message.data) }
    if (refetching !== null) refetching.push(e)
    const news = apply(e)
    log(describe(e) + (news ? "" : " (already had it)"))
    if (catchUp !== null) {
      if (news) {
        const li = line(describe(e))
        Object.assign(li.dataset, { type: e.type, id: e.id, etag: e.etag ?? "" })
        $("caught-up").append(li)
        catchUp.changes++
      }
      extendCatchUp()
    }
    render(news ? e.id : undefined)
    if (e.id === selected) refreshEditor()
  })
}
`

/** The page: one HTML document, its style and script inline. */
export const html = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>saacms realtime</title>
<style>${style}</style>
<header>
  <h1>saacms realtime · <span id="collection"></span></h1>
  <span id="state" data-state="connecting">connecting</span>
  <span class="muted" id="stream"></span>
</header>
<main>
  <section>
    <h2>Records <span id="count"></span></h2>
    <ul id="records"></ul>
    <form id="new">
      <input id="new-id" required pattern="[A-Za-z0-9._~\\-]{1,128}" placeholder="new id" aria-label="new record id">
      <button>New</button>
    </form>
  </section>
  <section>
    <h2>Editor <span id="editing"></span> <span id="dirty" hidden>· unsaved</span></h2>
    <p id="notice" hidden><span id="notice-text"></span> <button id="reload" type="button">Reload</button></p>
    <textarea id="editor" spellcheck="false" disabled aria-label="record JSON"></textarea>
    <div>
      <button id="save" type="button" disabled>Save</button>
      <button id="delete" type="button" disabled>Delete</button>
      <span id="status" class="muted"></span>
    </div>
  </section>
  <section>
    <h2>Caught up after reconnect</h2>
    <p id="caught-up-summary" class="muted">no reconnect yet</p>
    <ul id="caught-up"></ul>
    <h2>Events</h2>
    <ol id="log"></ol>
  </section>
</main>
<script type="module">${script}</script>
</html>
`

// Only this page's own script and style may run: whatever a record holds,
// nothing it could smuggle into the DOM would execute.
const sha256 = (text: string) => `'sha256-${createHash("sha256").update(text).digest("base64")}'`
const contentSecurityPolicy = [
  "default-src 'none'",
  `script-src ${sha256(script)}`,
  `style-src ${sha256(style)}`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join("; ")

const pageResponse = HttpServerResponse.text(html, {
  contentType: "text/html; charset=utf-8",
  headers: { "Cache-Control": "no-cache", "Content-Security-Policy": contentSecurityPolicy }
})

// `/` itself (with a query, say), not a request target the router reads as it
// (`GET *` is refused as the other unknown paths are).
const page = Effect.map(HttpServerRequest.HttpServerRequest, (request) =>
  request.url === "/" || request.url.startsWith("/?")
    ? pageResponse
    : RealtimeHttp.errorResponse(404, "not_found", "no such route"))

const isSlug = Schema.is(Event.Slug)


/** `GET /api/demo/records?collection=posts`: `[{ collection, id, etag, record }]`, by id. */
const listRecords = Effect.gen(function*() {
  const { collection } = yield* HttpServerRequest.ParsedSearchParams
  if (typeof collection !== "string" || !isSlug(collection)) {
    return RealtimeHttp.errorResponse(400, "invalid_resource_key", "collection must be one valid collection name")
  }
  const prefix = `${collection}:`
  const list: Array<{ collection: string; id: string; etag: string; record: unknown }> = []
  for (const [key, { body, etag }] of yield* RecordStore) {
    if (key.startsWith(prefix)) list.push({ collection, id: key.slice(prefix.length), etag, record: JSON.parse(body) })
  }
  list.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return HttpServerResponse.unsafeJson(list, { headers: { "Cache-Control": "no-store" } })
})

/** The page's routes, for an `HttpLayerRouter` app that also serves `DemoHost.routes` (and provides its `RecordStore`). */
export const routes = HttpLayerRouter.addAll([
  HttpLayerRouter.route("GET", "/", page),
  HttpLayerRouter.route("GET", "/api/demo/records", listRecords)
])
