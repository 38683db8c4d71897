--[[
  claim_idempotency_key: takes (customer, key) for a new run unless a live
  record holds it. A record whose expires_at <= now no longer counts.
  The record gets its full lifetime at once and never lapses while pending:
  it starts with state "pending" and pending_since (Redis's own clock), and
  confirm_idempotency_key marks it "confirmed" once its run is stored. A
  record whose run was voided (void_run_id) may be taken over by naming
  that run id in ARGV[8].

  KEYS[1]  the record hash  <prefix>:idem:<sha256(customer, key)>
  ARGV[1]  customer_id     ARGV[2]  key
  ARGV[3]  fingerprint     ARGV[4]  run_id
  ARGV[5]  expires_at (epoch ms)
  ARGV[6]  now (epoch ms, the caller's clock)
  ARGV[7]  TTL in ms (expires_at - now + grace)
  ARGV[8]  run id this call may take the record over from ("" none); only
           ever a run id that void_run_id answered "voided" for

  Returns  {"claimed"}        the record is ours now (or was already: a resend)
           {"live", fingerprint, run_id, expires_at, state, age_ms}
                              a live record holds the key: nothing written;
                              age_ms: how long it has been pending, by Redis's clock
]]
local function nowMs()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local held = redis.call("HMGET", KEYS[1], "fingerprint", "run_id", "expires_at", "state", "pending_since")
if held[2] == ARGV[4] then
  -- This very call, sent again after a reconnect: the key is already ours.
  return {"claimed"}
end
if held[1] and tonumber(held[3]) > tonumber(ARGV[6]) and held[2] ~= ARGV[8] then
  local age = 0
  if held[5] then
    age = nowMs() - tonumber(held[5])
  end
  return {"live", held[1], held[2], held[3], held[4] or "confirmed", tostring(age)}
end
redis.call("DEL", KEYS[1])
redis.call("HSET", KEYS[1], "customer_id", ARGV[1], "key", ARGV[2], "fingerprint", ARGV[3],
  "run_id", ARGV[4], "expires_at", ARGV[5], "state", "pending", "pending_since", tostring(nowMs()))
redis.call("PEXPIRE", KEYS[1], ARGV[7])
return {"claimed"}
