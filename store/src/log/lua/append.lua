-- Appends entries in order (a group commit: several publishes in one call). ARGV[1] = a fresh epoch,
-- ARGV[2] = entry field, ARGV[3] = max entries, ARGV[4] = max age (ms), ARGV[5] = publish command
-- ('PUBLISH', or 'SPUBLISH' on a Cluster); then three per entry: data, dedupe window in ms ('0': no
-- idempotency key), live channel. KEYS, per entry in turn: stream, epoch, seq, then the idempotency key if
-- the entry has one (all keys of one call share a slot on a Cluster).
-- Each new entry is published on its channel as "<epoch> <seq> <id> <data>", atomically with the XADD.
-- Returns two per entry: "<epoch> <id>", duplicate (0|1).
-- A stream's epoch is checked once per call (a group commit often holds many entries of one partition): its
-- first append reads the epoch and appends with NOMKSTREAM, so a stream that is gone (never written, lost,
-- or deleted alone) is seen without an EXISTS of its own and starts a new epoch (`ensure_epoch`). The age
-- trim (MINID) runs on every 16th entry of a stream: MAXLEN already trims on every append, and the age bound
-- is approximate ('~') either way.
local epochs = {}
local function xadd(stream, data, option)
  if option then
    return redis.call('XADD', stream, option, 'MAXLEN', '~', ARGV[3], '*', ARGV[2], data)
  end
  return redis.call('XADD', stream, 'MAXLEN', '~', ARGV[3], '*', ARGV[2], data)
end

-- The first append to `stream` in this call: its epoch and the new entry's id.
local function first_append(stream, epoch_key, seq_key, data)
  local epoch = redis.call('GET', epoch_key)
  if epoch then
    local id = xadd(stream, data, 'NOMKSTREAM')
    if id then
      return epoch, id
    end
  end
  epoch = ensure_epoch(stream, epoch_key, seq_key, ARGV[1])
  return epoch, xadd(stream, data)
end

local function append(stream, epoch_key, seq_key, dedupe, data, window, channel)
  if dedupe then
    local first = redis.call('GET', dedupe)
    if first then
      return first, 1
    end
  end
  local epoch = epochs[stream]
  local id
  if epoch then
    id = xadd(stream, data)
  else
    epoch, id = first_append(stream, epoch_key, seq_key, data)
    epochs[stream] = epoch
  end
  local seq = redis.call('INCR', seq_key)
  if seq % 16 == 1 then
    local min_ms = tonumber(string.match(id, '^(%d+)-')) - tonumber(ARGV[4])
    if min_ms > 0 then
      redis.call('XTRIM', stream, 'MINID', '~', string.format('%.0f', min_ms))
    end
  end
  redis.call(ARGV[5], channel, epoch .. ' ' .. seq .. ' ' .. id .. ' ' .. data)
  local result = epoch .. ' ' .. id
  if dedupe then
    redis.call('SET', dedupe, result, 'PX', window)
  end
  return result, 0
end

local results = {}
local k = 1
for a = 6, #ARGV, 3 do
  local dedupe = nil
  if ARGV[a + 1] ~= '0' then
    dedupe = KEYS[k + 3]
  end
  local result, duplicate = append(KEYS[k], KEYS[k + 1], KEYS[k + 2], dedupe, ARGV[a], ARGV[a + 1], ARGV[a + 2])
  results[#results + 1] = result
  results[#results + 1] = duplicate
  if dedupe then
    k = k + 4
  else
    k = k + 3
  end
end
return results
