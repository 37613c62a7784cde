-- Shared prologue of crier's partition scripts. KEYS[1] = stream, KEYS[2] = epoch; ARGV[1] = a fresh epoch.
-- A stream without an epoch (never written, or lost with Redis' data) gets the fresh one, so positions from
-- a lost stream can never be taken for positions in the new one.
local function ensure_epoch()
  local epoch = redis.call('GET', KEYS[2])
  if epoch and redis.call('EXISTS', KEYS[1]) == 1 then
    return epoch
  end
  redis.call('SET', KEYS[2], ARGV[1])
  if redis.call('EXISTS', KEYS[1]) == 0 then
    -- Create the stream empty, so it exists (and keeps its epoch) before the first append.
    redis.call('XGROUP', 'CREATE', KEYS[1], 'crier-init', '$', 'MKSTREAM')
    redis.call('XGROUP', 'DESTROY', KEYS[1], 'crier-init')
  end
  return ARGV[1]
end

-- The stream's last-generated-id and what recovery needs to know about removed entries: the greatest id
-- XDEL removed (max-deleted-entry-id, Redis 7.0+), whether anything was ever removed (entries-added > length:
-- trimming by MAXLEN/MINID does not move max-deleted-entry-id), and the oldest entry still present.
local function stream_bounds()
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  local fields = {}
  for i = 1, #info, 2 do
    fields[info[i]] = info[i + 1]
  end
  local first = fields['first-entry']
  local first_id = '0-0'
  if type(first) == 'table' then
    first_id = first[1]
  end
  local removed = 0
  if (fields['entries-added'] or 0) > (fields['length'] or 0) then
    removed = 1
  end
  return fields['last-generated-id'] or '0-0', fields['max-deleted-entry-id'] or '0-0', removed, first_id
end
