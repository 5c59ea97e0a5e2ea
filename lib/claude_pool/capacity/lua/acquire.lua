-- acquire(candidates, demand, strategy): choose an account and reserve the demand on its bucket,
-- in one atomic call. The Python twin is capacity/_rules.py (assess, choose); the candidates arrive
-- sorted by account id, so both backends walk them in the same order.
-- KEYS: reservations hash, lease index, round-robin cursor, sticky mapping, then per bucket: bucket
-- hash, bucket's leases.
-- ARGV: now ('' = server time), idle ttl, strategy, r (uniform in [0,1), from Python), reservation
-- id, lease ttl, sticky ttl, demand (requests, input, output), then three packed lists (records
-- split by \30, fields by \31; one string each instead of thousands of arguments, which is what
-- made 1,000 candidates slow): buckets (bucket id, rpm, itpm, otpm, max in flight or 0), candidates
-- (account id, bucket number, priority, weight), excluded candidate numbers; then max wait (seconds a
-- request may be queued for: see _rules.admission), cold start ('1': an unseen bucket is empty).
local now = clock(ARGV[1])
local ttl = tonumber(ARGV[2])
local strategy = ARGV[3]
local r = tonumber(ARGV[4])
local rid = ARGV[5]
local lease_ttl = tonumber(ARGV[6])
local sticky_ttl = tonumber(ARGV[7])
local need = {tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])}
local excluded = {}
for c in string.gmatch(ARGV[13], '[^\31]+') do
  excluded[tonumber(c)] = true
end
local max_wait = tonumber(ARGV[14]) or 0
local cold = ARGV[15] == '1'
local TIE_EPSILON = 1e-9
local QUEUEABLE = {[1] = true, [2] = true, [3] = true, [4] = true}

-- Same order of checks as engine.assess: the code returned is the condition that clears last.
local function assess(lv, caps, s, inflight, mif, earliest)
  for m = 1, 3 do
    if need[m] > caps[m] then
      return 6, nil
    end
  end
  local code, till = 0, -math.huge
  if s.cd > now then
    code, till = 1, s.cd
  end
  if mif > 0 and inflight >= mif then
    local expiry = earliest or now
    if expiry > till then
      code, till = 5, expiry
    end
  end
  for m = 1, 3 do
    if lv[m] < need[m] then
      local ready = now + (need[m] - lv[m]) * 60 / caps[m]
      if ready > till then
        code, till = 1 + m, ready
      end
    end
  end
  if code == 0 then
    return 0, nil
  end
  return code, till
end

-- rules.admission: admitted now (0, nil, 0), ahead (0, nil, wait), or refused (code, until, 0)
local function admission(lv, caps, s, inflight, mif, earliest)
  local code, till = assess(lv, caps, s, inflight, mif, earliest)
  if code == 0 then
    return 0, nil, 0
  end
  if till == nil or not QUEUEABLE[code] or (mif > 0 and inflight >= mif) then
    return code, till, 0
  end
  local wait = till - now
  if wait <= max_wait then
    return 0, nil, wait
  end
  return code, till - max_wait, 0
end

local buckets = {}
local b = 0
for rec in string.gmatch(ARGV[11], '[^\30]+') do
  b = b + 1
  local id, rpm, itpm, otpm, mif = string.match(rec, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)$')
  local key, lease_key = KEYS[3 + 2 * b], KEYS[4 + 2 * b]
  mif = tonumber(mif)
  if mif > 0 then
    -- only an in-flight cap can block for ever; spent tokens come back by refill anyway
    reclaim_bucket(KEYS[1], KEYS[2], key, lease_key, now, ttl)
  end
  local s = load_bucket(key)
  local caps = caps_of(s, {tonumber(rpm), tonumber(itpm), tonumber(otpm)})
  local lv = refill(s, caps, now, cold)
  if cold and (s.lv[1] == nil or s.lv[2] == nil or s.lv[3] == nil) then
    -- first sight of a cold bucket: its refill starts now, whether or not this request is admitted
    save_bucket(key, s, lv, caps, now, ttl)
  end
  local inflight, earliest = 0, nil
  if mif > 0 then
    inflight = redis.call('ZCARD', lease_key)
    if inflight >= mif then
      earliest = tonumber(redis.call('ZRANGE', lease_key, 0, 0, 'WITHSCORES')[2])
    end
  end
  local code, till, wait = admission(lv, caps, s, inflight, mif, earliest)
  local score = nil
  if code == 0 then
    score = math.min((lv[1] - need[1]) / caps[1], (lv[2] - need[2]) / caps[2], (lv[3] - need[3]) / caps[3])
  end
  buckets[b] = {id = id, key = key, lease_key = lease_key, s = s, caps = caps, lv = lv,
                code = code, till = till, score = score, wait = wait}
end

local eligible, refused = {}, {}
local c = 0
for rec in string.gmatch(ARGV[12], '[^\30]+') do
  c = c + 1
  local id, bn, priority, weight = string.match(rec, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)$')
  local bucket = buckets[tonumber(bn)]
  if excluded[c] then
    refused[#refused + 1] = {c, 7, nil}
  elseif bucket.code ~= 0 then
    refused[#refused + 1] = {c, bucket.code, bucket.till}
  else
    eligible[#eligible + 1] = {c = c, id = id, b = tonumber(bn), priority = tonumber(priority),
                               weight = tonumber(weight), score = bucket.score, wait = bucket.wait}
  end
end

-- rules.choose: the strategy ranks those that can send at once; the shortest wait otherwise
local queued = eligible
local ready = {}
for _, e in ipairs(eligible) do
  if e.wait <= 0 then
    ready[#ready + 1] = e
  end
end
eligible = ready

local function pick(tied)
  return tied[math.min(#tied, math.floor(r * #tied) + 1)]
end

-- One of the entries of `list` whose `value` is the best (the highest when `highest`, else the
-- lowest), ties within TIE_EPSILON broken by r: the one rule of least-loaded, priority and
-- shortest-wait choices (the Python twin: _rules._pick over the same filter).
local function best_of(list, value, highest)
  local sign = highest and -1 or 1
  local top = math.huge
  for _, e in ipairs(list) do
    top = math.min(top, sign * value(e))
  end
  local tied = {}
  for _, e in ipairs(list) do
    if sign * value(e) <= top + TIE_EPSILON then
      tied[#tied + 1] = e
    end
  end
  return pick(tied)
end

local function least_loaded()
  return best_of(eligible, function(e) return e.score end, true)
end

local function choose()
  if strategy == 'round_robin' then
    local last = redis.call('GET', KEYS[3])
    if last then
      for _, e in ipairs(eligible) do
        if e.id > last then
          return e
        end
      end
    end
    return eligible[1]
  elseif strategy == 'weighted' then
    local total = 0
    for _, e in ipairs(eligible) do
      total = total + math.max(0, e.weight)
    end
    if total <= 0 then
      return pick(eligible)
    end
    local x, acc = r * total, 0
    for _, e in ipairs(eligible) do
      acc = acc + math.max(0, e.weight)
      if x < acc then
        return e
      end
    end
    return eligible[#eligible]
  elseif strategy == 'priority' then
    return best_of(eligible, function(e) return e.priority end, false)
  elseif strategy == 'sticky' then
    local mapped = redis.call('GET', KEYS[4])
    if mapped then
      for _, e in ipairs(eligible) do
        if e.id == mapped then
          return e
        end
      end
    end
  end
  return least_loaded()
end

local function shortest_wait()
  return best_of(queued, function(e) return e.wait end, false)
end

local out = {0, '', fmt(now), '0'}
if #queued > 0 then
  local chosen
  if #eligible > 0 then
    chosen = choose()
  else
    chosen = shortest_wait()
  end
  local bucket = buckets[chosen.b]
  for m = 1, 3 do
    bucket.lv[m] = bucket.lv[m] - need[m]
  end
  save_bucket(bucket.key, bucket.s, bucket.lv, bucket.caps, now, ttl)
  local expiry = now + bucket.wait + lease_ttl -- a queued call's lease starts when it may send
  redis.call('HSET', KEYS[1], rid, cjson.encode({a = chosen.id, b = bucket.id, r = need[1], i = need[2],
                                                  o = need[3], e = fmt(expiry), s = fmt(now + bucket.wait)}))
  redis.call('ZADD', KEYS[2], fmt(expiry), rid)
  redis.call('ZADD', bucket.lease_key, fmt(expiry), rid)
  redis.call('EXPIRE', bucket.lease_key, math.max(ttl, math.ceil(bucket.wait + lease_ttl) + 60))
  if strategy == 'round_robin' then
    redis.call('SET', KEYS[3], chosen.id, 'EX', ttl)
  elseif strategy == 'sticky' then
    redis.call('SET', KEYS[4], chosen.id, 'PX', math.max(1, math.floor(sticky_ttl * 1000)))
  end
  out[1] = chosen.c
  out[2] = fmt(expiry)
  out[4] = fmt(bucket.wait)
end
for _, f in ipairs(refused) do
  out[#out + 1] = f[1]
  out[#out + 1] = f[2]
  out[#out + 1] = f[3] and fmt(f[3]) or ''
end
return out
