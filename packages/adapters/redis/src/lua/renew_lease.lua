--[[
  renew_lease: extends the lease of a running run held under a token.
  Does not change the version (a renewal is not an event).

  KEYS[1]  the run hash  <prefix>:run:{<runId>}
  ARGV[1]  the lease token, JSON
  ARGV[2]  the new lease_expires_at, JSON

  Returns  the run hash after the write, as a flat field/value array
           {}  the run is missing, not running, or held under another token
]]
if redis.call("HGET", KEYS[1], "status") ~= '"running"' then
  return {}
end
if redis.call("HGET", KEYS[1], "lease_token") ~= ARGV[1] then
  return {}
end
redis.call("HSET", KEYS[1], "lease_expires_at", ARGV[2])
return redis.call("HGETALL", KEYS[1])
