--[[
  due_expiring: the members of the expiring set whose runs have expired by
  Redis's own clock (read only; the sweep removes what it has handled).

  KEYS[1]  the expiring sorted set  <prefix>:{expiring}
  ARGV[1]  at most this many

  Returns  the members, oldest first
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call("ZRANGE", KEYS[1], "-inf", string.format("%d", now), "BYSCORE", "LIMIT", 0, tonumber(ARGV[1]))
