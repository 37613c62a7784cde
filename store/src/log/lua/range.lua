-- Entries after an id. ARGV[2] = "(<id>" (exclusive start), ARGV[3] = count.
-- Returns {epoch, last, max_deleted, removed (0|1), first, entries}.
local epoch = ensure_epoch()
local last, deleted, removed, first = stream_bounds()
local entries = redis.call('XRANGE', KEYS[1], ARGV[2], '+', 'COUNT', ARGV[3])
return {epoch, last, deleted, removed, first, entries}
