--[[
  settle_index: sets a run's exact score in a shared index (or removes it)
  from a run record read or written at `version`. Refused while a newer
  version was hinted or settled, unless that hint is older than the stale
  limit (its writer died between the hint and the write). Age is measured
  with Redis's own clock (TIME), like the hint's time.

  KEYS[1]  the index sorted set  (claim queue of a handler, or timers)
  KEYS[2]  the index's hash member -> "version:written_at"
  ARGV[1]  member (run id)
  ARGV[2]  version of the record the score comes from (0: the run is missing)
  ARGV[3]  score (epoch ms), or "" to remove the member
  ARGV[4]  stale limit in ms

  Returns  1  applied
           0  a newer version is pending or settled: untouched
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seen = redis.call("HGET", KEYS[2], ARGV[1])
if seen then
  local seenVersion, seenAt = string.match(seen, "^(%d+):(%-?%d+)$")
  if seenVersion and tonumber(seenVersion) > tonumber(ARGV[2])
    and now - tonumber(seenAt) < tonumber(ARGV[4]) then
    return 0
  end
end
if ARGV[3] == "" then
  redis.call("ZREM", KEYS[1], ARGV[1])
  redis.call("HDEL", KEYS[2], ARGV[1])
else
  redis.call("ZADD", KEYS[1], ARGV[3], ARGV[1])
  redis.call("HSET", KEYS[2], ARGV[1], ARGV[2] .. ":" .. string.format("%d", now))
end
return 1
