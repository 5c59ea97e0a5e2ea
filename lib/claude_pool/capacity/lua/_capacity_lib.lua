-- Helpers shared by the capacity scripts. redis_store.py prepends this file to each of them when it
-- registers them (Redis has no include); the Python twin of every function is in capacity/_rules.py.
-- Numbers are stored and returned with %.17g so that a float survives the round trip exactly.
-- clock(ARGV[1]), the time, comes before this file: CLOCK_LUA in claude_pool/core/redis_scripts.py.

local LEVEL_FIELDS = {'r', 'i', 'o'}
local CAP_FIELDS = {'lr', 'li', 'lo'}
local UPSTREAM_FIELDS = {'ur', 'ui', 'uo'}

local function fmt(x)
  return string.format('%.17g', x)
end

local function load_bucket(key)
  local h = redis.call('HMGET', key, 'r', 'i', 'o', 't', 'lr', 'li', 'lo', 'ur', 'ui', 'uo', 'cd')
  return {
    lv = {tonumber(h[1]), tonumber(h[2]), tonumber(h[3])},
    t = tonumber(h[4]) or 0,
    caps = {tonumber(h[5]), tonumber(h[6]), tonumber(h[7])},
    up = {tonumber(h[8]), tonumber(h[9]), tonumber(h[10])},
    cd = tonumber(h[11]) or 0,
  }
end

-- Upstream's limit wins over the configured one (cfg may be nil), which wins over the last used.
local function caps_of(s, cfg)
  local c = {}
  for m = 1, 3 do
    c[m] = s.up[m] or (cfg and cfg[m]) or s.caps[m]
  end
  return c
end

-- Continuous refill: cap/60 per second since the last write, never past the cap; unseen = full, or
-- empty when cold is true (rules.refill).
local function refill(s, caps, now, cold)
  local out = {}
  local elapsed = now - s.t
  if elapsed < 0 then
    elapsed = 0
  end
  for m = 1, 3 do
    local cap = caps[m]
    if cap ~= nil then
      local lv = s.lv[m]
      if lv == nil then
        out[m] = cold and 0 or cap
      else
        out[m] = math.min(cap, lv + elapsed * cap / 60)
      end
    end
  end
  return out
end

-- The pool's fullness index (a sorted set of bucket keys, see RedisKeys.fullness): each script that
-- writes a bucket names it first, from its KEYS.
local fullness_key = nil
local function index_fullness_in(key)
  fullness_key = key
end

-- When a bucket's every metric is full again, and its cooldown over, from what save_bucket writes.
-- Refill raises each metric's share of its cap by 1/60 a second, so ordering buckets by this time is
-- ordering them by their fullest-possible least-loaded score (1 - (time - now)/60, at most 1) at any
-- later moment, until the next write: the order acquire walks in (see acquire.lua).
local function full_again_at(s, levels, caps, now)
  local at = math.max(now, s.cd)
  for m = 1, 3 do
    if levels[m] ~= nil and caps[m] ~= nil then
      at = math.max(at, now + (caps[m] - levels[m]) * 60 / caps[m])
    end
  end
  return at
end

local function save_bucket(key, s, levels, caps, now, ttl)
  local args = {'t', fmt(now)}
  for m = 1, 3 do
    if levels[m] ~= nil then
      args[#args + 1] = LEVEL_FIELDS[m]
      args[#args + 1] = fmt(levels[m])
    end
    if caps[m] ~= nil then
      args[#args + 1] = CAP_FIELDS[m]
      args[#args + 1] = fmt(caps[m])
    end
  end
  redis.call('HSET', key, unpack(args))
  -- a cooldown longer than the idle TTL must outlive it
  redis.call('EXPIRE', key, math.max(ttl, math.ceil(s.cd - now) + 60))
  redis.call('ZADD', fullness_key, fmt(full_again_at(s, levels, caps, now)), key)
  redis.call('EXPIRE', fullness_key, ttl)
end

-- Add delta per metric (rules.clamp_add: up to the cap; a charge stops at 0, or at the level when it
-- is already below 0, a queue's debt); used by settle and by every reclaim.
local function apply_refund(key, delta, now, ttl)
  local s = load_bucket(key)
  local caps = caps_of(s, nil)
  local lv = refill(s, caps, now)
  for m = 1, 3 do
    if lv[m] ~= nil then
      lv[m] = math.min(caps[m], math.max(math.min(lv[m], 0), lv[m] + delta[m]))
    end
  end
  save_bucket(key, s, lv, caps, now, ttl)
end

-- A lease of a call that may have reached upstream left the books (settled as sent, or expired):
-- from now on, no answer to a call sent before it may raise the bucket (rules.may_raise).
local function mark_call_ended(key, now)
  redis.call('HSET', key, 'ea', fmt(now))
end

-- Whether an answer to a call sent at sent_at may raise the bucket's levels (rules.may_raise).
local function may_raise(key, sent_at)
  local ended = tonumber(redis.call('HGET', key, 'ea')) or 0
  return sent_at ~= nil and ended <= sent_at
end

-- What the live leases of a bucket hold reserved, per metric; unsent_only: only those queued to send
-- later (records written before queueing existed have no s: sent).
local function held_on(lease_key, res_key, now, unsent_only)
  local held = {0, 0, 0}
  local rids = redis.call('ZRANGEBYSCORE', lease_key, '(' .. fmt(now), '+inf')
  if #rids == 0 then
    return held
  end
  for _, raw in ipairs(redis.call('HMGET', res_key, unpack(rids))) do
    if raw then
      local rec = cjson.decode(raw)
      if not unsent_only or (tonumber(rec.s) or 0) > now then
        held[1], held[2], held[3] = held[1] + rec.r, held[2] + rec.i, held[3] + rec.o
      end
    end
  end
  return held
end

local ROUNDING = {0, 1000, 1000}  -- rules.REMAINING_ROUNDING

-- calibrate: upstream's headers are the truth (store.py's calibrate). A limit is adopted (it wins over
-- the configured one). A level is lowered to upstream's remaining less what is queued to send later
-- (rules.lowered); raised to the remaining less its rounding and all this store still holds on the bucket
-- only when raise is true (rules.raised); and the first time a cold store hears of a metric
-- (rules.first_calibration) set to that. args[at], args[at + 1], ...: per metric (requests, input,
-- output), limit and remaining ('' when the header was missing).
local function calibrate_bucket(bucket_key, lease_key, res_key, now, ttl, cold, args, at, raise)
  local s = load_bucket(bucket_key)
  local caps = caps_of(s, nil)
  local lv = refill(s, caps, now, cold)
  local held, unsent = nil, nil
  local adopted = {}
  for m = 1, 3 do
    local limit = tonumber(args[at + 2 * m - 2])
    local remaining = tonumber(args[at + 2 * m - 1])
    local first = cold and s.up[m] == nil
    if limit ~= nil and limit > 0 then
      caps[m] = limit
      adopted[#adopted + 1] = UPSTREAM_FIELDS[m]
      adopted[#adopted + 1] = fmt(limit)
      if lv[m] == nil then
        lv[m] = limit
      else
        lv[m] = math.min(lv[m], limit)
      end
    end
    if first and limit ~= nil and limit > 0 and remaining ~= nil then
      held = held or held_on(lease_key, res_key, now, false)
      lv[m] = math.min(caps[m], remaining - ROUNDING[m] - held[m])
    elseif remaining ~= nil and lv[m] ~= nil then
      unsent = unsent or held_on(lease_key, res_key, now, true)
      lv[m] = math.min(lv[m], math.max(0, remaining) - unsent[m])
      if raise then
        held = held or held_on(lease_key, res_key, now, false)
        lv[m] = math.max(lv[m], math.min(caps[m], remaining - ROUNDING[m] - held[m]))
      end
    end
  end
  if #adopted > 0 then
    redis.call('HSET', bucket_key, unpack(adopted))
  end
  save_bucket(bucket_key, s, lv, caps, now, ttl)
end

-- Drop a lease everywhere; an expired one gives back its output reservation only (see store.py).
-- What reservation rid holds ({a, b, r, i, o, e}), or nil when it is unknown: settled or reclaimed.
local function reservation_record(res_key, rid)
  local raw = redis.call('HGET', res_key, rid)
  if not raw then
    return nil
  end
  return cjson.decode(raw)
end

local function drop_lease(res_key, index_key, bucket_key, lease_key, rid, expired, now, ttl)
  local raw = redis.call('HGET', res_key, rid)
  redis.call('HDEL', res_key, rid)
  redis.call('ZREM', index_key, rid)
  if lease_key then
    redis.call('ZREM', lease_key, rid)
  end
  if not raw or not bucket_key then
    return nil
  end
  local rec = cjson.decode(raw)
  if expired then
    apply_refund(bucket_key, {0, 0, rec.o}, now, ttl)
    mark_call_ended(bucket_key, now)
  end
  return rec
end

-- Reclaim every expired lease of one bucket (lazily, from acquire).
local function reclaim_bucket(res_key, index_key, bucket_key, lease_key, now, ttl)
  local expired = redis.call('ZRANGEBYSCORE', lease_key, '-inf', fmt(now))
  for _, rid in ipairs(expired) do
    drop_lease(res_key, index_key, bucket_key, lease_key, rid, true, now, ttl)
  end
end
