-- The newest entries up to an id, newest first. KEYS = stream, epoch, seq; ARGV[1] = a fresh epoch,
-- ARGV[2] = "<id>" (inclusive end), ARGV[3] = count. Returns {epoch, entries}.
local epoch = ensure_epoch(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
local entries = redis.call('XREVRANGE', KEYS[1], ARGV[2], '-', 'COUNT', ARGV[3])
return {epoch, entries}
