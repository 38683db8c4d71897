--[[
  append: compare-and-append on one run. When every guard holds and the
  events continue the log exactly, pushes the events, sets the patch fields
  and publishes the new last seq; otherwise writes nothing.

  KEYS[1]  the run hash          <prefix>:run:{<runId>}
  KEYS[2]  the run's event list  <prefix>:events:{<runId>}
  ARGV[1]  feed channel to publish the new last seq on
  ARGV[2]  seq of the first event (must be the log's length + 1 when n > 0)
  ARGV[3]  n: number of events
  ARGV[4]  g: number of guards
  ARGV[5]  retention ms for a run that reaches a terminal status here ("0": keep)
  ARGV[6]  write id: unique per call, no spaces. The run's "_writes" field
           keeps the last 16 applied write ids, so the same call sent again (a
           client resending after a reconnect, even after other writes landed
           in between) is answered as applied instead of as a conflict
  ARGV[7 .. 6+n]                  events, JSON
  ARGV[7+n .. 6+n+2g]             guard pairs: field, the exact stored value expected
  ARGV[7+n+2g ..]                 patch pairs: field, new value (JSON)

  Returns  {1, status, handler, available_at, lease_expires_at, timer_at, version, customer_id}
           (raw JSON of the run after the write, for the shared indexes)
           {0}  no such run, a guard failed, or the seqs do not continue the log
]]
local KEEP_WRITES = 16
local function state()
  local s = redis.call("HMGET", KEYS[1], "status", "handler", "available_at", "lease_expires_at", "timer_at",
    "version", "customer_id")
  return {1, s[1], s[2], s[3], s[4], s[5], s[6], s[7]}
end
if redis.call("EXISTS", KEYS[1]) == 0 then
  return {0}
end
local n = tonumber(ARGV[3])
local g = tonumber(ARGV[4])
local guards = 6 + n
local holds = true
for i = 1, g do
  local field = ARGV[guards + 2 * i - 1]
  if redis.call("HGET", KEYS[1], field) ~= ARGV[guards + 2 * i] then
    holds = false
  end
end
if n > 0 and redis.call("LLEN", KEYS[2]) + 1 ~= tonumber(ARGV[2]) then
  holds = false
end
-- "_writes" is a JSON string: the applied write ids, newest first, space-separated.
local stored = redis.call("HGET", KEYS[1], "_writes")
local writes = stored and string.sub(stored, 2, -2) or ""
if not holds then
  for w in string.gmatch(writes, "%S+") do
    if w == ARGV[6] then
      return state()
    end
  end
  return {0}
end
for i = 7, 6 + n do
  redis.call("RPUSH", KEYS[2], ARGV[i])
end
local patch = {}
for i = guards + 2 * g + 1, #ARGV do
  patch[#patch + 1] = ARGV[i]
end
local kept = {ARGV[6]}
for w in string.gmatch(writes, "%S+") do
  if #kept < KEEP_WRITES then
    kept[#kept + 1] = w
  end
end
patch[#patch + 1] = "_writes"
patch[#patch + 1] = '"' .. table.concat(kept, " ") .. '"'
redis.call("HSET", KEYS[1], unpack(patch))
if n > 0 then
  redis.call("PUBLISH", ARGV[1], redis.call("LLEN", KEYS[2]))
end
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  redis.call("PEXPIRE", KEYS[1], ttl)
  redis.call("PEXPIRE", KEYS[2], ttl)
end
return state()
