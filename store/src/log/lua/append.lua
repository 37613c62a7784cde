-- Append one entry. KEYS[3] = idempotency key (optional).
-- ARGV[2] = entry field, ARGV[3] = data, ARGV[4] = max entries, ARGV[5] = max age (ms), ARGV[6] = dedupe
-- window (ms). Returns {"<epoch> <id>", duplicate (0|1)}.
local epoch = ensure_epoch()
if KEYS[3] then
  local first = redis.call('GET', KEYS[3])
  if first then
    return {first, 1}
  end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', ARGV[2], ARGV[3])
local min_ms = tonumber(string.match(id, '^(%d+)-')) - tonumber(ARGV[5])
if min_ms > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%.0f', min_ms))
end
local result = epoch .. ' ' .. id
if KEYS[3] then
  redis.call('SET', KEYS[3], result, 'PX', ARGV[6])
end
return {result, 0}
