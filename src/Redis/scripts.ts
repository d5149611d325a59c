/**
 * The Lua scripts of the Redis store. Each one touches the keys of one record
 * only (all under the record's hash tag, so one Cluster slot) and runs
 * atomically. Numbers cross as decimal strings; frames, ids and epochs as
 * binary-safe bulk strings.
 *
 * Keys: `KEYS[1]` the meta hash (`epoch`, `seq`, `head`, `bytes`, `at`),
 * `KEYS[2]` the Stream (entries `<seq>-0` with fields `id`, `frame`, `at`),
 * `KEYS[3]` the ids hash (event id → seq of its most recent occurrence).
 *
 * @since 0.1.0
 */
import { createHash } from "node:crypto"

/**
 * A script's text, its SHA1 (for EVALSHA) and how many of its arguments are keys.
 *
 * @since 0.1.0
 * @category models
 */
export interface Script {
  readonly name: string
  readonly lua: string
  readonly sha: string
  readonly keys: number
}

const script = (name: string, keys: number, body: string): Script => {
  const lua = prelude + body
  return { name, lua, sha: createHash("sha1").update(lua).digest("hex"), keys }
}

// What is malformed is not held: a meta that does not parse is missing, an
// entry that does not parse (or is not numbered `<seq>-0`) is a hole.
const prelude = `
local function int(s)
  if type(s) ~= 'string' or #s > 15 or not string.find(s, '^%d+$') then return nil end
  return tonumber(s)
end
local function str(n) return string.format('%d', n) end
local function sid(seq) return str(seq) .. '-0' end
local function idseq(s)
  if type(s) ~= 'string' then return nil end
  return int(string.match(s, '^(%d+)%-0$'))
end
local function typeof(key) return redis.call('TYPE', key)['ok'] end
local function meta(key)
  if typeof(key) ~= 'hash' then return nil end
  local m = redis.call('HMGET', key, 'epoch', 'seq', 'head', 'bytes', 'at')
  local seq, bytes, at = int(m[2]), int(m[4]), int(m[5])
  if type(m[1]) ~= 'string' or #m[1] > 64 or not string.find(m[1], '^%x+$') or seq == nil or seq < 1
    or type(m[3]) ~= 'string' or bytes == nil or at == nil then return nil end
  return { epoch = m[1], seq = seq, head = m[3], bytes = bytes, at = at }
end
local function entry(e)
  if type(e) ~= 'table' or type(e[2]) ~= 'table' then return nil end
  local seq = idseq(e[1])
  if seq == nil then return nil end
  local f, id, frame, at = e[2], nil, nil, nil
  for i = 1, #f - 1, 2 do
    local k, v = f[i], f[i + 1]
    if k == 'id' then id = v elseif k == 'frame' then frame = v elseif k == 'at' then at = int(v) end
  end
  if type(id) ~= 'string' or type(frame) ~= 'string' or at == nil then return nil end
  return seq, id, frame, at
end
`

/**
 * Append one event. ARGV: new epoch (used only when the meta is missing),
 * id, frame, now, maxEvents, maxAgeMs, maxHistoryBytes, stream TTL, meta TTL,
 * channel. Returns `{epoch, seq, at}`.
 *
 * The newest entry is never trimmed; older ones go while the record holds
 * more than maxEvents, the oldest is older than now - maxAgeMs, or the frames
 * exceed maxHistoryBytes. Times are kept non-decreasing (`at` is at least the
 * previous entry's), so what has aged out is always a prefix of the Stream.
 *
 * @since 0.1.0
 * @category utils
 */
export const append = script(
  "append",
  3,
  `
local mkey, skey, ikey = KEYS[1], KEYS[2], KEYS[3]
local id, frame = ARGV[2], ARGV[3]
local now, maxEvents, maxAge, maxBytes = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local m = meta(mkey)
local epoch, seq, bytes, at
if m == nil then
  -- A new record, or its meta was lost (flushed, expired): a new epoch, and no stale entries.
  redis.call('DEL', mkey, skey, ikey)
  epoch, seq, bytes, at = ARGV[1], 0, 0, now
else
  epoch, seq, bytes, at = m.epoch, m.seq, m.bytes, math.max(m.at, now)
  if typeof(skey) ~= 'stream' then
    redis.call('DEL', skey, ikey)
    bytes = 0
  elseif typeof(ikey) ~= 'hash' then
    redis.call('DEL', ikey)
  end
end
seq = seq + 1
local added = redis.pcall('XADD', skey, sid(seq), 'id', id, 'frame', frame, 'at', str(at))
if type(added) == 'table' and added['err'] then
  -- The Stream is ahead of the meta (written by something else): start it again.
  redis.call('DEL', skey, ikey)
  bytes = 0
  redis.call('XADD', skey, sid(seq), 'id', id, 'frame', frame, 'at', str(at))
end
bytes = bytes + #frame
redis.call('HSET', ikey, id, str(seq))
local count = redis.call('XLEN', skey)
local minAt = now - maxAge
-- Scan from the oldest in growing batches (usually one entry goes and the next stays).
local cursor, keep, size = '-', nil, 2
while keep == nil do
  local batch = redis.call('XRANGE', skey, cursor, '+', 'COUNT', size)
  if #batch == 0 then break end
  size = math.min(size * 2, 64)
  for _, e in ipairs(batch) do
    local eseq, eid, eframe, eat = entry(e)
    if eseq == seq or (eseq ~= nil and count <= maxEvents and eat >= minAt and bytes + count * 128 <= maxBytes) then
      keep = e[1]
      break
    end
    count = count - 1
    if eseq ~= nil then
      bytes = bytes - #eframe
      if redis.call('HGET', ikey, eid) == str(eseq) then redis.call('HDEL', ikey, eid) end
    end
    cursor = '(' .. e[1]
  end
end
if keep ~= nil and cursor ~= '-' then redis.call('XTRIM', skey, 'MINID', '=', keep) end
if bytes < 0 then bytes = 0 end
redis.call('HSET', mkey, 'epoch', epoch, 'seq', str(seq), 'head', id, 'bytes', str(bytes), 'at', str(at))
redis.call('PEXPIRE', skey, ARGV[8])
redis.call('PEXPIRE', ikey, ARGV[8])
redis.call('PEXPIRE', mkey, ARGV[9])
redis.call('PUBLISH', ARGV[10], 'saacms1 ' .. epoch .. ' ' .. str(seq) .. ' ' .. str(#id) .. '\\n' .. id .. frame)
return { epoch, seq, at }
`
)

/**
 * The entries after a sequence number. ARGV: afterSeq, maxBytes, maxFrames,
 * now, maxAgeMs. Returns `{tag, headSeq, headId, epoch, (seq, id, frame, at)*}`
 * with tag `E` (entries, maybe none) or `G` (gone); epoch `''` when the meta
 * is missing.
 *
 * @since 0.1.0
 * @category utils
 */
export const read = script(
  "read",
  2,
  `
local afterSeq, maxBytes, maxFrames = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local minAt = tonumber(ARGV[4]) - tonumber(ARGV[5])
local m = meta(KEYS[1])
if m == nil then return { afterSeq == 0 and 'E' or 'G', 0, '', '' } end
if afterSeq == m.seq then return { 'E', m.seq, m.head, m.epoch } end
if afterSeq > m.seq or typeof(KEYS[2]) ~= 'stream' then return { 'G', m.seq, m.head, m.epoch } end
local out = { 'E', m.seq, m.head, m.epoch }
local want, n, bytes, cursor, done, size = afterSeq + 1, 0, 0, sid(afterSeq + 1), false, 4
while not done do
  local batch = redis.call('XRANGE', KEYS[2], cursor, '+', 'COUNT', math.min(maxFrames - n, size))
  if #batch == 0 then break end
  size = math.min(size * 2, 64)
  for _, e in ipairs(batch) do
    local seq, id, frame, at = entry(e)
    if seq ~= want or at < minAt or (n > 0 and bytes + #frame > maxBytes) then
      done = true
      break
    end
    out[#out + 1] = seq
    out[#out + 1] = id
    out[#out + 1] = frame
    out[#out + 1] = at
    n, bytes, want, cursor = n + 1, bytes + #frame, want + 1, '(' .. e[1]
    if n >= maxFrames then
      done = true
      break
    end
  end
end
if n == 0 then return { 'G', m.seq, m.head, m.epoch } end
return out
`
)

/**
 * Where an event id stands. ARGV: lastEventId, now, maxAgeMs. Returns
 * `{seq, headSeq, headId, epoch}`: seq 0 when the id is neither held nor the
 * head's; epoch `''` when the meta is missing.
 *
 * @since 0.1.0
 * @category utils
 */
export const position = script(
  "position",
  3,
  `
local m = meta(KEYS[1])
if m == nil then return { 0, 0, '', '' } end
local lastEventId, minAt = ARGV[1], tonumber(ARGV[2]) - tonumber(ARGV[3])
local at = 0
if typeof(KEYS[3]) == 'hash' and typeof(KEYS[2]) == 'stream' then
  local seq = int(redis.call('HGET', KEYS[3], lastEventId))
  if seq ~= nil and seq >= 1 and seq <= m.seq then
    local found = redis.call('XRANGE', KEYS[2], sid(seq), sid(seq))
    local eseq, eid, _, eat = entry(found[1])
    if eseq == seq and eid == lastEventId and eat >= minAt then at = seq end
  end
end
-- The client saw the newest event: it missed nothing, even if its entry is gone.
if at == 0 and m.head == lastEventId then at = m.seq end
return { at, m.seq, m.head, m.epoch }
`
)

/**
 * What a record holds now. ARGV: now, maxAgeMs. Returns `{exists, entries,
 * bytes}`: entries and their bytes, less the oldest ones that aged out or are
 * malformed.
 *
 * @since 0.1.0
 * @category utils
 */
export const held = script(
  "held",
  2,
  `
local m = meta(KEYS[1])
if m == nil then return { 0, 0, 0 } end
if typeof(KEYS[2]) ~= 'stream' then return { 1, 0, 0 } end
local minAt = tonumber(ARGV[1]) - tonumber(ARGV[2])
local count, bytes, cursor, done, size = redis.call('XLEN', KEYS[2]), m.bytes, '-', false, 1
while not done do
  local batch = redis.call('XRANGE', KEYS[2], cursor, '+', 'COUNT', size)
  if #batch == 0 then break end
  size = math.min(size * 2, 64)
  for _, e in ipairs(batch) do
    local seq, _, frame, at = entry(e)
    if seq ~= nil and at >= minAt then
      done = true
      break
    end
    count = count - 1
    if seq ~= nil then bytes = bytes - #frame end
    cursor = '(' .. e[1]
  end
end
if count <= 0 or bytes < 0 then bytes = 0 end
return { 1, math.max(count, 0), bytes }
`
)

/**
 * The record's head. Returns `{seq, headId, epoch}`; seq 0 when the meta is missing.
 *
 * @since 0.1.0
 * @category utils
 */
export const head = script(
  "head",
  1,
  `
local m = meta(KEYS[1])
if m == nil then return { 0, '', '' } end
return { m.seq, m.head, m.epoch }
`
)
