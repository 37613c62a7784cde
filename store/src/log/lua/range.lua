-- Entries after an id. KEYS = stream, epoch, seq; ARGV[1] = a fresh epoch, ARGV[2] = "(<id>" (exclusive
-- start), ARGV[3] = count. Returns {epoch, last, max_deleted, removed (0|1), first, seq, entries}: seq is the
-- sequence number of the newest entry, so a reader that has read up to `last` expects seq + 1 live next.
local epoch = ensure_epoch(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
local last, deleted, removed, first = stream_bounds(KEYS[1])
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
local entries = redis.call('XRANGE', KEYS[1], ARGV[2], '+', 'COUNT', ARGV[3])
return {epoch, last, deleted, removed, first, seq, entries}
