--[[
  confirm_idempotency_key: marks a claimed record "confirmed" once its run is
  stored, unless another run took the key meanwhile. (The record already has
  its full lifetime from the claim.)

  KEYS[1]  the record hash  <prefix>:idem:<sha256(customer, key)>
  ARGV[1]  run_id

  Returns  1  confirmed (or already was)
           0  the record names another run (or is gone): untouched
]]
if redis.call("HGET", KEYS[1], "run_id") ~= ARGV[1] then
  return 0
end
redis.call("HSET", KEYS[1], "state", "confirmed")
return 1
