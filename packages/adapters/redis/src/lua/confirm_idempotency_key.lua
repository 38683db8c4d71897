--[[
  confirm_idempotency_key: gives a claimed record its full lifetime once its
  run is stored, unless another run took the key meanwhile.

  KEYS[1]  the record hash  <prefix>:idem:<customer>:<key>
  ARGV[1]  run_id
  ARGV[2]  TTL in ms

  Returns  1  extended
           0  the record names another run (or is gone): untouched
]]
if redis.call("HGET", KEYS[1], "run_id") ~= ARGV[1] then
  return 0
end
redis.call("PEXPIRE", KEYS[1], ARGV[2])
return 1
