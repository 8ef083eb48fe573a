-- tenantgate: settle one admitted request. Charges the difference between the
-- tokens it used and those reserved at admit (a refund when it used less) and
-- releases its concurrency leases.
-- ARGV: 1 n scopes, 2 reserved tokens, 3 used tokens, 4 reserved cost,
--       5 used cost, 6 hold id, then per scope 2 values: tok_ceil, concurrency,
--       then '1' to give the request back too (an admission undone because
--       the other half of a split path refused it) or '0', then the run id
--       when the request was part of a run.
-- KEYS: per scope 2 (bucket hash, concurrency zset), then the run's 3
--       (hash, in-flight zset, the tenant's live runs) when it was part of a run.
local n = tonumber(ARGV[1])
local delta = tonumber(ARGV[3]) - tonumber(ARGV[2])
local dcost = tonumber(ARGV[5]) - tonumber(ARGV[4])
local hold = ARGV[6]
local undo = ARGV[7 + n * 2] == '1'
for i = 1, n do
  local kb, kc = KEYS[(i - 1) * 2 + 1], KEYS[(i - 1) * 2 + 2]
  local ceil, conc = tonumber(ARGV[6 + (i - 1) * 2 + 1]), tonumber(ARGV[6 + (i - 1) * 2 + 2])
  if conc > 0 then redis.call('ZREM', kc, hold) end
  if undo then
    local f = redis.call('HMGET', kb, 'l1', 'c1')
    if f[1] and f[2] then redis.call('HSET', kb, 'l1', math.min(tonumber(f[2]), tonumber(f[1]) + 1)) end
  end
  if ceil > 0 and delta ~= 0 then
    local f = redis.call('HMGET', kb, 'l2', 's2', 'v2')
    if f[1] then
      redis.call('HSET', kb, 'l2', math.max(-ceil, math.min(ceil, tonumber(f[1]) - delta)))
    end
    if f[2] and f[3] then
      local cap = tonumber(f[3])
      redis.call('HSET', kb, 's2', math.max(-cap * 60, math.min(cap, tonumber(f[2]) - delta)))
    end
  end
end
if #KEYS > n * 2 then
  local kr, kin, kruns = KEYS[n * 2 + 1], KEYS[n * 2 + 2], KEYS[n * 2 + 3]
  if redis.call('EXISTS', kr) == 1 then
    redis.call('HINCRBY', kr, 'tokens', delta)
    redis.call('HINCRBY', kr, 'cost', dcost)
    -- The run was last used now (a run is forgotten only once quiet).
    local t = redis.call('TIME')
    redis.call('ZADD', kruns, 'XX', tonumber(t[1]) * 1000000 + tonumber(t[2]), ARGV[8 + n * 2])
  end
  redis.call('ZREM', kin, hold)
end
return 1
