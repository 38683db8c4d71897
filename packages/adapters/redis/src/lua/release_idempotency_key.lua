--[[
  release_idempotency_key: deletes a record that names a run which can never
  be stored (its create_run was refused because the run id was voided), so
  the client's retry with the same key creates at once.

  KEYS[1]  the record hash  <prefix>:idem:<sha256(customer, key)>
  ARGV[1]  run_id

  Returns  1  deleted
           0  the record names another run (or is gone): untouched
]]
if redis.call("HGET", KEYS[1], "run_id") ~= ARGV[1] then
  return 0
end
redis.call("DEL", KEYS[1])
return 1
