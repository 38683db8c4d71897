--[[
  hint_index: before a run write that may make the run due earlier, lowers its
  score in a shared index (never raises it) and records that a write of
  `version` is coming, so a reconciler that read an older version cannot
  undo the hint.

  KEYS[1]  the index sorted set  (claim queue of a handler, or timers)
  KEYS[2]  the index's hash member -> "version:written_at"
  ARGV[1]  member (run id)
  ARGV[2]  version the coming write produces
  ARGV[3]  score (epoch ms)
  ARGV[4]  written_at (epoch ms, wall clock)

  Returns  1
]]
local current = redis.call("ZSCORE", KEYS[1], ARGV[1])
if not current or tonumber(ARGV[3]) < tonumber(current) then
  redis.call("ZADD", KEYS[1], ARGV[3], ARGV[1])
end
local seen = redis.call("HGET", KEYS[2], ARGV[1])
local seenVersion = seen and tonumber(string.match(seen, "^(%d+):")) or 0
if tonumber(ARGV[2]) >= seenVersion then
  redis.call("HSET", KEYS[2], ARGV[1], ARGV[2] .. ":" .. ARGV[4])
end
return 1
