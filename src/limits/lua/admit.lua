-- tenantgate: check and reserve every limit on one request's path, atomically,
-- with the server's clock. The same algorithm as the in-process store
-- (src/limits/in_process_store.cpp): hard per-minute buckets and concurrency
-- at every scope, fair share on tree edges, then the agent run.
-- Levels are in tokens (requests count 1), refilled at limit/60e6 per µs.
--
-- ARGV: 1 n scopes, 2 tokens, 3 cost_micros, 4 burst_us, 5 window_us,
--       6 fair_share (0|1), 7 hold id, 8 hold ttl µs, 9 key ttl ms,
--       then per scope (leaf first) 8 values: kind, id, req_rate, req_ceil,
--       tok_rate, tok_ceil, concurrency, parent index (0: none),
--       then the run: run id ('' for none), tenant, parent id, 7 run limits
--       (tokens, cost, concurrency, depth, fanout, calls/min, wall_s), run ttl ms,
--       then the bounds: calls a run remembers, live runs per tenant, the quiet
--       µs after which a run may be forgotten, active children per parent.
--       Optional, for Redis Cluster (a path split over two slots, see
--       docs/limits-cluster.md), 10 more: the external parent's facts
--       (l1, l2, ceil1, ceil2, rate1, rate2, active children) for scopes whose
--       parent index is -1; a child to register (index in this call, name);
--       a handoff scope whose facts the reply carries (index).
-- KEYS: per scope 3 (bucket hash, concurrency zset, active-children zset),
--       then, when the call holds the run, 5 under the tenant's tag: the run's
--       hash, calls hash, in-flight zset, calls in use order (zset), and the
--       tenant's live runs (zset, score: last use). A run is its tenant's: the
--       same id from another tenant is another run.
--       At a bound the script forgets the oldest entry that can be
--       forgotten: a run's oldest call not in flight, or the least recently
--       used run of the tenant with nothing in flight, quiet for the quiet µs
--       and a full calls bucket (deleting that run's keys, which share this
--       slot); entries in flight count as used now.
-- Reply: {0, req_limit, req_remaining, req_reset_us, req_scope, tok_limit,
--         tok_remaining, tok_reset_us, tok_scope[, handoff facts x7]} or
--        {1, why, args...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local cost = {1, tonumber(ARGV[2])}
local cost_micros = tonumber(ARGV[3])
local burst_us, window_us = tonumber(ARGV[4]), tonumber(ARGV[5])
local fair = ARGV[6] == '1'
local hold, hold_ttl, key_ttl = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local PER_MIN = 60000000

local function refill(level, at, cap, oldcap, per_min)
  if level == nil then return cap, cap end
  if cap ~= oldcap then level = math.min(cap, level + (cap - oldcap)) end
  if now > at then level = math.min(cap, level + (now - at) * per_min / PER_MIN) end
  return level, cap
end
local function wait_for(level, need, per_min)
  if level >= need or per_min <= 0 then return 0 end
  return math.ceil((need - level) * PER_MIN / per_min)
end

local S = {}
for i = 1, n do
  local a = 9 + (i - 1) * 8
  local s = {kind = ARGV[a + 1], id = ARGV[a + 2], rate = {tonumber(ARGV[a + 3]), tonumber(ARGV[a + 5])},
             ceil = {tonumber(ARGV[a + 4]), tonumber(ARGV[a + 6])}, conc = tonumber(ARGV[a + 7]),
             parent = tonumber(ARGV[a + 8]), kb = KEYS[(i - 1) * 3 + 1], kc = KEYS[(i - 1) * 3 + 2],
             ka = KEYS[(i - 1) * 3 + 3]}
  s.name = s.kind .. ':' .. s.id
  local f = redis.call('HMGET', s.kb, 'l1', 't1', 'c1', 'l2', 't2', 'c2', 's1', 'u1', 'v1', 's2', 'u2', 'v2')
  s.l = {tonumber(f[1]), tonumber(f[4])}
  s.lt = {tonumber(f[2]), tonumber(f[5])}
  s.lc = {tonumber(f[3]), tonumber(f[6])}
  s.sl = {tonumber(f[7]), tonumber(f[10])}
  s.st = {tonumber(f[8]), tonumber(f[11])}
  s.sc = {tonumber(f[9]), tonumber(f[12])}
  s.share_charged = {false, false}
  S[i] = s
end

-- The run block and the bounds.
local a = 9 + n * 8
local run, tenant, parent = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
local rl = {}
for k = 1, 7 do rl[k] = tonumber(ARGV[a + 3 + k]) end
local run_ttl = tonumber(ARGV[a + 11])
local max_calls, max_runs, quiet_us = tonumber(ARGV[a + 12]), tonumber(ARGV[a + 13]), tonumber(ARGV[a + 14])
local max_active = tonumber(ARGV[a + 15])
local EVICT_SCAN = 32

-- The cluster block (absent: one call holds the whole path).
local c0 = a + 16
local EXT, child_of, child_name, handoff = nil, 0, '', 0
if #ARGV >= c0 + 9 then
  EXT = {l = {tonumber(ARGV[c0]), tonumber(ARGV[c0 + 1])}, ceil = {tonumber(ARGV[c0 + 2]), tonumber(ARGV[c0 + 3])},
         rate = {tonumber(ARGV[c0 + 4]), tonumber(ARGV[c0 + 5])}, active = tonumber(ARGV[c0 + 6]), ext = true}
  child_of, child_name = tonumber(ARGV[c0 + 7]), ARGV[c0 + 8]
  handoff = tonumber(ARGV[c0 + 9])
end

-- Children count as active from their first request, refused or not: for
-- the active window, and the most recent max_active of them.
local function register(ka, name)
  redis.call('ZADD', ka, now, name)
  redis.call('ZREMRANGEBYSCORE', ka, '-inf', now - window_us)
  if max_active > 0 then redis.call('ZREMRANGEBYRANK', ka, 0, -(max_active + 1)) end
  redis.call('PEXPIRE', ka, math.floor(window_us / 1000) * 2)
end
for i = 1, n do
  local p = S[i].parent
  if p > 0 then register(S[p].ka, S[i].name) end
end
if child_of > 0 then register(S[child_of].ka, child_name) end

-- 1. hard limits, most specific scope first
for i = 1, n do
  local s = S[i]
  if s.conc > 0 then
    redis.call('ZREMRANGEBYSCORE', s.kc, '-inf', now)
    if redis.call('ZCARD', s.kc) >= s.conc then return {1, 'concurrency', i, s.conc} end
  end
  for d = 1, 2 do
    local ceil = s.ceil[d]
    if ceil > 0 then
      s.l[d], s.lc[d] = refill(s.l[d], s.lt[d], ceil, s.lc[d], ceil)
      if cost[d] > ceil then return {1, 'too_big', i, d - 1, cost[d], ceil} end
      if s.l[d] < cost[d] then
        return {1, 'bucket', i, d - 1, ceil, math.floor(s.l[d]), wait_for(s.l[d], cost[d], ceil),
                wait_for(s.l[d], ceil, ceil)}
      end
    end
  end
end

-- 2. fair share: above its share, a child borrows only what leaves its active
-- siblings their burst in the parent's bucket.
if fair then
  for i = 1, n do
    local c = S[i]
    local p = c.parent > 0 and S[c.parent] or (c.parent == -1 and EXT or nil)
    if p then
      for d = 1, 2 do
        local pceil = p.ceil[d]
        if pceil > 0 then
          local prate = p.rate[d] > 0 and p.rate[d] or pceil
          local active = p.ext and math.max(1, p.active) or redis.call('ZCARD', p.ka)
          local g = c.rate[d] > 0 and c.rate[d] or math.max(1, math.floor(prate / active))
          local cap = g * burst_us / PER_MIN
          c.sl[d], c.sc[d] = refill(c.sl[d], c.st[d], cap, c.sc[d], g)
          c.share_charged[d] = true
          if c.sl[d] <= 0 then
            local reserve = math.max(0, prate - g) * burst_us / PER_MIN
            if p.l[d] - cost[d] < reserve then
              local wait = math.min(wait_for(c.sl[d], 1e-9, g), wait_for(p.l[d], reserve + cost[d], pceil))
              return {1, 'fair_share', c.parent, i, d - 1, pceil, active, g, wait, wait_for(c.sl[d], cap, g)}
            end
          end
        end
      end
    end
  end
end

-- 3. the run
local kr, kcalls, kin, korder, kruns = KEYS[n * 3 + 1], KEYS[n * 3 + 2], KEYS[n * 3 + 3], KEYS[n * 3 + 4], KEYS[n * 3 + 5]
local depth = 0
local r = nil
local forget_run, forget_call = nil, nil
-- Microseconds until a run of this tenant can be forgotten (0: now; nil: it is gone).
local function run_forgettable_in(id, last)
  local base = string.sub(kr, 1, #kr - #run) .. id
  if redis.call('EXISTS', base) == 0 then return 0 end
  if redis.call('ZCOUNT', base .. ':inflight', '(' .. now, '+inf') > 0 then return nil end
  local wait = math.max(0, last + quiet_us - now)
  if rl[6] > 0 then
    local f = redis.call('HMGET', base, 'cl', 'ct', 'cc')
    if f[1] then
      local level = refill(tonumber(f[1]), tonumber(f[2]), rl[6], tonumber(f[3]), rl[6])
      wait = math.max(wait, wait_for(level, rl[6], rl[6]))
    end
  end
  return wait
end
if run ~= '' and kr then
  if parent ~= '' then
    local pd = redis.call('HGET', kcalls, 'd:' .. parent)
    if not pd then return {1, 'unknown_parent'} end
    depth = tonumber(pd) + 1
  end
  local f = redis.call('HMGET', kr, 'start', 'tokens', 'cost', 'cl', 'ct', 'cc')
  r = {start = tonumber(f[1]), tokens = tonumber(f[2]) or 0, cost = tonumber(f[3]) or 0,
       cl = tonumber(f[4]), ct = tonumber(f[5]), cc = tonumber(f[6])}
  if r.start and rl[7] > 0 and now - r.start > rl[7] * 1000000 then
    return {1, 'run_wall', math.floor((now - r.start) / 1000000), rl[7]}
  end
  if rl[4] > 0 and depth > rl[4] then return {1, 'run_depth', rl[4], depth} end
  if rl[5] > 0 and parent ~= '' then
    local kids = tonumber(redis.call('HGET', kcalls, 'n:' .. parent) or '0')
    if kids >= rl[5] then return {1, 'run_fanout', rl[5], kids} end
  end
  if rl[3] > 0 then
    redis.call('ZREMRANGEBYSCORE', kin, '-inf', now)
    if redis.call('ZCARD', kin) >= rl[3] then return {1, 'run_concurrency', rl[3]} end
  end
  if rl[6] > 0 then
    r.cl, r.cc = refill(r.cl, r.ct, rl[6], r.cc, rl[6])
    if r.cl < 1 then return {1, 'run_rate', rl[6], wait_for(r.cl, 1, rl[6])} end
  end
  if rl[1] > 0 and r.tokens + cost[2] > rl[1] then return {1, 'run_tokens', rl[1], r.tokens, cost[2]} end
  if rl[2] > 0 and r.cost + cost_micros > rl[2] then return {1, 'run_cost', rl[2], r.cost, cost_micros} end
  -- Room (the last checks: they may pick an entry to forget).
  if not r.start then
    redis.call('ZREMRANGEBYSCORE', kruns, '-inf', now - run_ttl * 1000)  -- runs whose keys expired
    if max_runs > 0 and redis.call('ZCARD', kruns) >= max_runs then
      local soonest = nil
      local c = redis.call('ZRANGE', kruns, 0, EVICT_SCAN - 1, 'WITHSCORES')
      for j = 1, #c, 2 do
        local wait = run_forgettable_in(c[j], tonumber(c[j + 1]))
        if wait == 0 then forget_run = c[j] break end
        if wait == nil then
          redis.call('ZADD', kruns, now, c[j])  -- in flight: in use
          wait = 1000000
        end
        if not soonest or wait < soonest then soonest = wait end
      end
      if not forget_run then return {1, 'too_many_runs', max_runs, math.floor(quiet_us / 1000000), soonest or 1000000} end
    end
  elseif max_calls > 0 and not redis.call('ZSCORE', korder, hold) and redis.call('ZCARD', korder) >= max_calls then
    for _, id in ipairs(redis.call('ZRANGE', korder, 0, EVICT_SCAN - 1)) do
      local lease = redis.call('ZSCORE', kin, id)
      if id == parent or (lease and tonumber(lease) > now) then
        redis.call('ZADD', korder, now, id)  -- in use
      else
        forget_call = id
        break
      end
    end
    if not forget_call then return {1, 'run_calls', max_calls} end
  end
end

-- Every check passed. The handoff scope's facts, as they were before this request.
local facts = nil
if handoff > 0 then
  local h = S[handoff]
  facts = {math.floor(h.l[1] or -1), math.floor(h.l[2] or -1), h.ceil[1], h.ceil[2], h.rate[1], h.rate[2],
           redis.call('ZCARD', h.ka)}
end
-- Commit.
local q = {0, 0, 0, 0, 0, 0, 0, 0, 0}
for i = 1, n do
  local s = S[i]
  if s.conc > 0 then
    redis.call('ZADD', s.kc, now + hold_ttl, hold)
    redis.call('PEXPIRE', s.kc, math.floor(hold_ttl / 1000) + 1000)
  end
  local fields = {}
  for d = 1, 2 do
    if s.ceil[d] > 0 then
      s.l[d] = s.l[d] - cost[d]
      local rem = math.max(0, math.floor(s.l[d]))
      local o = (d - 1) * 4
      if q[o + 2] == 0 or rem * q[o + 2] < q[o + 3] * s.ceil[d] then
        q[o + 2], q[o + 3], q[o + 4], q[o + 5] = s.ceil[d], rem, wait_for(s.l[d], s.ceil[d], s.ceil[d]), i
      end
      table.insert(fields, 'l' .. d); table.insert(fields, s.l[d])
      table.insert(fields, 't' .. d); table.insert(fields, now)
      table.insert(fields, 'c' .. d); table.insert(fields, s.lc[d])
    end
    if s.share_charged[d] then
      local cap = s.sc[d]
      s.sl[d] = math.max(s.sl[d] - cost[d], -cap * 60)
      table.insert(fields, 's' .. d); table.insert(fields, s.sl[d])
      table.insert(fields, 'u' .. d); table.insert(fields, now)
      table.insert(fields, 'v' .. d); table.insert(fields, cap)
    end
  end
  if #fields > 0 then
    redis.call('HSET', s.kb, unpack(fields))
    redis.call('PEXPIRE', s.kb, key_ttl)
  end
end
if r then
  if forget_run then
    local base = string.sub(kr, 1, #kr - #run) .. forget_run
    redis.call('DEL', base, base .. ':calls', base .. ':inflight', base .. ':order')
    redis.call('ZREM', kruns, forget_run)
  end
  if forget_call then
    redis.call('HDEL', kcalls, 'd:' .. forget_call, 'n:' .. forget_call)
    redis.call('ZREM', korder, forget_call)
  end
  if not r.start then redis.call('HSET', kr, 'start', now) end
  redis.call('HINCRBY', kr, 'tokens', cost[2])
  redis.call('HINCRBY', kr, 'cost', cost_micros)
  redis.call('HINCRBY', kr, 'calls', 1)
  if rl[6] > 0 then redis.call('HSET', kr, 'cl', r.cl - 1, 'ct', now, 'cc', r.cc) end
  redis.call('HSET', kcalls, 'd:' .. hold, depth)
  if parent ~= '' then redis.call('HINCRBY', kcalls, 'n:' .. parent, 1) end
  redis.call('ZADD', korder, now, hold)
  redis.call('ZADD', kin, now + hold_ttl, hold)
  redis.call('ZADD', kruns, now, run)
  for _, k in ipairs({kr, kcalls, kin, korder, kruns}) do redis.call('PEXPIRE', k, run_ttl) end
end
if facts then
  for _, v in ipairs(facts) do table.insert(q, v) end
end
return q
