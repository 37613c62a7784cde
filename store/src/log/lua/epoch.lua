-- Shared prologue of crier's partition scripts.
-- A stream without an epoch (never written, or lost with Redis' data) gets the fresh one, and its sequence
-- starts over, so positions and live sequence numbers from a lost stream can never be taken for ones of the
-- new stream.
local function ensure_epoch(stream, epoch_key, seq_key, fresh)
  local epoch = redis.call('GET', epoch_key)
  if epoch and redis.call('EXISTS', stream) == 1 then
    return epoch
  end
  redis.call('SET', epoch_key, fresh)
  redis.call('DEL', seq_key)
  if redis.call('EXISTS', stream) == 0 then
    -- Create the stream empty, so it exists (and keeps its epoch) before the first append.
    redis.call('XGROUP', 'CREATE', stream, 'crier-init', '$', 'MKSTREAM')
    redis.call('XGROUP', 'DESTROY', stream, 'crier-init')
  end
  return fresh
end

-- The stream's last-generated-id and what recovery needs to know about removed entries: the greatest id
-- XDEL removed (max-deleted-entry-id, Redis 7.0+), whether anything was ever removed (entries-added > length:
-- trimming by MAXLEN/MINID does not move max-deleted-entry-id), and the oldest entry still present.
local function stream_bounds(stream)
  local info = redis.call('XINFO', 'STREAM', stream)
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
