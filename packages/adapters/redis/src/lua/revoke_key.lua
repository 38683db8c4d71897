--[[
  revoke_key: sets revoked_at once on a customer's key.

  KEYS[1]  the key hash  <prefix>:key:{<keyId>}
  ARGV[1]  customer_id, JSON
  ARGV[2]  now, JSON

  Returns  the key hash after the write, as a flat field/value array
           {}  no such key, or it belongs to another customer
]]
if redis.call("HGET", KEYS[1], "customer_id") ~= ARGV[1] then
  return {}
end
if redis.call("HGET", KEYS[1], "revoked_at") == "null" then
  redis.call("HSET", KEYS[1], "revoked_at", ARGV[2])
end
return redis.call("HGETALL", KEYS[1])
