--[[
  claim_idempotency_key: takes (customer, key) for a new run unless a live
  record holds it. A record whose expires_at <= now no longer counts.
  The record starts with a short pending TTL; confirm_idempotency_key
  extends it once the run is stored, so a creator that dies in between
  frees the key quickly.

  KEYS[1]  the record hash  <prefix>:idem:<customer>:<key>
  ARGV[1]  customer_id     ARGV[2]  key
  ARGV[3]  fingerprint     ARGV[4]  run_id
  ARGV[5]  expires_at (epoch ms)
  ARGV[6]  now (epoch ms, the caller's clock)
  ARGV[7]  pending TTL in ms

  Returns  {"claimed"}                        the record is ours now
           {"live", fingerprint, run_id, expires_at}
                                              a live record holds the key: nothing written
]]
local held = redis.call("HMGET", KEYS[1], "fingerprint", "run_id", "expires_at")
if held[2] == ARGV[4] then
  -- This very call, sent again after a reconnect: the key is already ours.
  return {"claimed"}
end
if held[1] and tonumber(held[3]) > tonumber(ARGV[6]) then
  return {"live", held[1], held[2], held[3]}
end
redis.call("DEL", KEYS[1])
redis.call("HSET", KEYS[1], "customer_id", ARGV[1], "key", ARGV[2], "fingerprint", ARGV[3],
  "run_id", ARGV[4], "expires_at", ARGV[5])
redis.call("PEXPIRE", KEYS[1], ARGV[7])
return {"claimed"}
