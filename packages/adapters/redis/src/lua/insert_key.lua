--[[
  insert_key: stores an API key unless its key_id exists.

  KEYS[1]  the key hash  <prefix>:key:{<keyId>}
  ARGV     field, value pairs of the key (each value JSON)

  Returns  1  stored (or stored by this very call, sent again after a reconnect)
           0  the key_id exists with another secret: nothing written
]]
if redis.call("EXISTS", KEYS[1]) == 1 then
  for i = 1, #ARGV, 2 do
    if ARGV[i] == "secret_hash" and redis.call("HGET", KEYS[1], "secret_hash") == ARGV[i + 1] then
      return 1
    end
  end
  return 0
end
redis.call("HSET", KEYS[1], unpack(ARGV))
return 1
