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

-- last-generated-id and max-deleted-entry-id (Redis 7.0+) of the stream.
local function stream_bounds()
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  local last, deleted = '0-0', '0-0'
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      last = info[i + 1]
    elseif info[i] == 'max-deleted-entry-id' then
      deleted = info[i + 1]
    end
  end
  return last, deleted
end
