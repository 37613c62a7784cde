-- The epoch and last-generated id of the stream. KEYS = stream, epoch, seq; ARGV[1] = a fresh epoch.
-- Returns {epoch, last}.
local epoch = ensure_epoch(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
local last = stream_bounds(KEYS[1])
return {epoch, last}
