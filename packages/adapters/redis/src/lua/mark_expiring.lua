--[[
  mark_expiring: records that a finished run's keys expire (retention), so a
  sweep can later drop its list entry. Scored with Redis's own clock.

  KEYS[1]  the expiring sorted set  <prefix>:{expiring}
  ARGV[1]  member "<customerId>:<runId>" (customer ids hold no ':')
  ARGV[2]  the run's TTL in ms

  Returns  1
]]
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("ZADD", KEYS[1], string.format("%d", now + tonumber(ARGV[2])), ARGV[1])
return 1
