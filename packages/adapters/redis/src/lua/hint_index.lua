--[[
  hint_index: before a run write that may make the run due earlier, lowers its
  score in a shared index (never raises it) and records that a write of
  `version` is coming, so a reconciler that read an older version cannot
  undo the hint. The hint's time is Redis's own clock (TIME), the same one
  settle_index compares it with: engines' clocks play no part.

  KEYS[1]  the index sorted set  (claim queue of a handler, or timers)
  KEYS[2]  the index's hash member -> "version:written_at"
  ARGV[1]  member (run id)
  ARGV[2]  version the coming write produces
  ARGV[3]  score (epoch ms)

  Returns  1
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local current = redis.call("ZSCORE", KEYS[1], ARGV[1])
if not current or tonumber(ARGV[3]) < tonumber(current) then
  redis.call("ZADD", KEYS[1], ARGV[3], ARGV[1])
end
local seen = redis.call("HGET", KEYS[2], ARGV[1])
local seenVersion = seen and tonumber(string.match(seen, "^(%d+):")) or 0
if tonumber(ARGV[2]) >= seenVersion then
  redis.call("HSET", KEYS[2], ARGV[1], ARGV[2] .. ":" .. string.format("%d", now))
end
return 1
