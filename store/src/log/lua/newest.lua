-- The newest entries up to an id, newest first. ARGV[2] = "<id>" (inclusive end), ARGV[3] = count.
-- Returns {epoch, entries}.
local epoch = ensure_epoch()
local entries = redis.call('XREVRANGE', KEYS[1], ARGV[2], '-', 'COUNT', ARGV[3])
return {epoch, entries}
