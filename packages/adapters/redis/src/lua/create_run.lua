--[[
  create_run: stores a new run and its first events, unless the run exists or
  its id was voided (void_run_id).

  KEYS[1]  the run hash          <prefix>:run:{<runId>}
  KEYS[2]  the run's event list  <prefix>:events:{<runId>}
  KEYS[3]  the run's tombstone   <prefix>:void:{<runId>}
  ARGV[1]  feed channel to publish the new last seq on
  ARGV[2]  n: number of events
  ARGV[3 .. 2+n]        events, JSON, seq 1..n in order
  ARGV[3+n ..]          field, value pairs of the run (each value JSON)

  Returns  1   created
           0   a run with this id exists: nothing written (ids are minted per
               request, so this is the same request sent again)
           -1  the id was voided: nothing written, it can never be stored
]]
if redis.call("EXISTS", KEYS[3]) == 1 then
  return -1
end
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
local n = tonumber(ARGV[2])
for i = 3, 2 + n do
  redis.call("RPUSH", KEYS[2], ARGV[i])
end
local fields = {}
for i = 3 + n, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call("HSET", KEYS[1], unpack(fields))
if n > 0 then
  redis.call("PUBLISH", ARGV[1], n)
end
return 1
