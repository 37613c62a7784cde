-- The epoch and last-generated id of the stream. Returns {epoch, last}.
local epoch = ensure_epoch()
local last = stream_bounds()
return {epoch, last}
