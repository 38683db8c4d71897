--[[
  void_run_id: settles, in the run's own slot, the race between a reader that
  found a run missing and a creator that may still be about to store it.
  Either the run exists, or a tombstone makes every later create_run of that
  id fail. Callers: a replay taking over an idempotency key whose run is
  missing, and a claim or sweep dropping index entries of a missing run.

  KEYS[1]  the run hash   <prefix>:run:{<runId>}
  KEYS[2]  the tombstone  <prefix>:void:{<runId>}
  ARGV[1]  tombstone TTL in ms

  Returns  "exists"  the run is stored: nothing written
           "voided"  the tombstone is set (or already was): the id can never be stored
]]
if redis.call("EXISTS", KEYS[1]) == 1 then
  return "exists"
end
redis.call("SET", KEYS[2], "1", "PX", ARGV[1])
return "voided"
