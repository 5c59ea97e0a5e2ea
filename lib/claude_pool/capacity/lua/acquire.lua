-- acquire(candidates, demand, strategy): choose an account and reserve the demand on its bucket,
-- in one atomic call. The Python twin is capacity/_rules.py (assess, choose); the candidates arrive
-- sorted by account id, so both backends walk them in the same order.
-- KEYS: reservations hash, lease index, round-robin cursor, sticky mapping, fullness index, the
-- candidate list's registration (a hash: bucket key -> its record and its candidates'; walk only).
-- The buckets' own keys (hash, leases) are made here from their ids and the two key prefixes, so
-- that 1,000 candidates are not 2,000 KEYS to send: every key of a pool shares its hash tag, and so
-- its Redis Cluster slot (see redis_keys.py).
-- ARGV: now ('' = server time), idle ttl, strategy, r (uniform in [0,1), from Python), reservation
-- id, lease ttl, sticky ttl, demand (requests, input, output), then three packed lists (records
-- split by \30, fields by \31; one string each instead of thousands of arguments): buckets (bucket
-- id, rpm, itpm, otpm, max in flight or 0), candidates (account id, bucket number, priority, weight),
-- excluded candidate numbers; then max wait (seconds a request may be queued for: see
-- _rules.admission), cold start ('1': an unseen bucket is empty), the bucket and leases key
-- prefixes, walk ('1': least-loaded among many buckets, see walk below).
-- Returns the chosen candidate's number (0: none), its lease's expiry, now, its wait, whether its
-- bucket is calibrated (1: upstream's headers set a limit), then per refusal: candidate number,
-- reason code, until ('' = not by waiting).
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
index_fullness_in(KEYS[5])
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

local BUCKET_PREFIX, LEASES_PREFIX = ARGV[16], ARGV[17]
-- Cold buckets seen for the first time: their refill starts now, whether or not this request is
-- admitted; saved once the choice is made (a walk must not reorder the index under its feet).
local first_sights = {}

-- One bucket as it stands now: its refilled levels, and whether a request may have it now (code 0,
-- wait 0), later (code 0, wait > 0) or not (code, till).
local function evaluate(id, rpm, itpm, otpm, mif)
  local key, lease_key = BUCKET_PREFIX .. id, LEASES_PREFIX .. id
  mif = tonumber(mif)
  if mif > 0 then
    -- only an in-flight cap can block for ever; spent tokens come back by refill anyway
    reclaim_bucket(KEYS[1], KEYS[2], key, lease_key, now, ttl)
  end
  local s = load_bucket(key)
  local caps = caps_of(s, {tonumber(rpm), tonumber(itpm), tonumber(otpm)})
  local lv = refill(s, caps, now, cold)
  local first_sight = cold and (s.lv[1] == nil or s.lv[2] == nil or s.lv[3] == nil)
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
  local bucket = {id = id, key = key, lease_key = lease_key, s = s, caps = caps, lv = lv,
                  code = code, till = till, score = score, wait = wait}
  if first_sight then
    first_sights[#first_sights + 1] = bucket
  end
  return bucket
end

local FOUR_FIELDS = '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)$'
local FIVE_FIELDS = '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)$'

local eligible, refused = {}, {}

-- Candidate number c (1-based, in account id order) of a bucket: refused, or eligible with the
-- bucket's score and wait. Returns 1 when it may send at once, else 0.
local function consider(c, id, bucket, priority, weight)
  if excluded[c] then
    refused[#refused + 1] = {c, 7, nil}
  elseif bucket.code ~= 0 then
    refused[#refused + 1] = {c, bucket.code, bucket.till}
  else
    eligible[#eligible + 1] = {c = c, id = id, bucket = bucket, priority = tonumber(priority),
                               weight = tonumber(weight), score = bucket.score, wait = bucket.wait}
    return bucket.wait <= 0 and 1 or 0
  end
  return 0
end

-- Every candidate, every bucket read: what every strategy but a walk needs.
local function scan()
  local buckets = {}
  for rec in string.gmatch(ARGV[11], '[^\30]+') do
    buckets[#buckets + 1] = evaluate(string.match(rec, FIVE_FIELDS))
  end
  local c = 0
  for rec in string.gmatch(ARGV[12], '[^\30]+') do
    c = c + 1
    local id, bn, priority, weight = string.match(rec, FOUR_FIELDS)
    consider(c, id, buckets[tonumber(bn)], priority, weight)
  end
end

-- The candidate list's registration: per bucket key, the bucket's record then its candidates'
-- (number first), and each bucket entered in the fullness index (an unseen bucket is full since
-- ever, or, cold, empty now). Written when missing: the first call with this list, or after the
-- store lost it (restart, idle expiry).
local function register()
  local ids, parts = {}, {}
  for rec in string.gmatch(ARGV[11], '[^\30]+') do
    ids[#ids + 1] = string.match(rec, '^[^\31]*')
    parts[#parts + 1] = {rec}
  end
  local c = 0
  for rec in string.gmatch(ARGV[12], '[^\30]+') do
    c = c + 1
    local part = parts[tonumber(string.match(rec, '^[^\31]*\31([^\31]*)'))]
    part[#part + 1] = c .. '\31' .. rec
  end
  local unseen = cold and fmt(now + 60) or '0'
  local fields = {}
  for b, id in ipairs(ids) do
    local key = BUCKET_PREFIX .. id
    redis.call('ZADD', KEYS[5], 'NX', unseen, key)
    fields[#fields + 1] = key
    fields[#fields + 1] = table.concat(parts[b], '\30')
    if #fields >= 1000 or b == #ids then -- unpack has a limit on the stack
      redis.call('HSET', KEYS[6], unpack(fields))
      fields = {}
    end
  end
  redis.call('EXPIRE', KEYS[5], ttl)
end

local WALK_BATCH = 16
local MAX_TIES = 16

-- Least-loaded among many buckets without reading them all: the fullness index orders the buckets
-- by the best score each could have now (see full_again_at), so the walk reads them in that order
-- and stops at the first whose bound falls below the best score found, or once MAX_TIES ready
-- candidates tie for it (the tie is then broken among those, the fullest first). The same choice
-- as a scan but for that bound on a tie; false when no candidate could send at once (a scan then
-- says when each could, and why not).
local function search()
  if redis.call('EXISTS', KEYS[5], KEYS[6]) < 2 then
    register()
  end
  redis.call('EXPIRE', KEYS[6], ttl)
  local best, ties, start = nil, 0, 0
  local visited = {} -- a refund met on the way (an expired lease) moves a bucket up the index
  -- Buckets found fuller-looking in the index than they are (a rebuilt index has every bucket at
  -- full): their place is corrected once the walk is over, not under its feet.
  local misplaced = {}
  while true do
    local batch = redis.call('ZRANGE', KEYS[5], start, start + WALK_BATCH - 1, 'WITHSCORES')
    if #batch == 0 then
      return best ~= nil, misplaced
    end
    for j = 1, #batch, 2 do
      local bound = math.min(1, 1 - (tonumber(batch[j + 1]) - now) / 60)
      if best ~= nil and (bound < best - TIE_EPSILON or ties >= MAX_TIES) then
        return true, misplaced
      end
      local raw = not visited[batch[j]] and redis.call('HGET', KEYS[6], batch[j])
      visited[batch[j]] = true
      if raw then
        local rec = string.gmatch(raw, '[^\30]+')
        local bucket = evaluate(string.match(rec(), FIVE_FIELDS))
        local due = full_again_at(bucket.s, bucket.lv, bucket.caps, now)
        if due > tonumber(batch[j + 1]) + 1e-6 then
          misplaced[#misplaced + 1] = fmt(due)
          misplaced[#misplaced + 1] = bucket.key
        end
        local ready = 0
        for cand in rec do
          local c, id, _, priority, weight = string.match(cand, FIVE_FIELDS)
          ready = ready + consider(tonumber(c), id, bucket, priority, weight)
        end
        if ready > 0 then
          if best == nil or bucket.score > best + TIE_EPSILON then
            best, ties = bucket.score, 0
            for _, e in ipairs(eligible) do
              if e.wait <= 0 and e.score >= best - TIE_EPSILON then
                ties = ties + 1
              end
            end
          elseif bucket.score >= best - TIE_EPSILON then
            ties = ties + ready
          end
        end
      end
    end
    start = start + WALK_BATCH
  end
end

local function walk()
  local found, misplaced = search()
  for k = 1, #misplaced, 1000 do -- unpack has a limit on the stack
    redis.call('ZADD', KEYS[5], 'XX', unpack(misplaced, k, math.min(#misplaced, k + 999)))
  end
  return found
end

local walked = ARGV[18] == '1' and walk()
if not walked then
  eligible, refused, first_sights = {}, {}, {}
  scan()
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

for _, bucket in ipairs(first_sights) do
  save_bucket(bucket.key, bucket.s, bucket.lv, bucket.caps, now, ttl)
end
local out = {0, '', fmt(now), '0', 0}
if #queued > 0 then
  local chosen
  if #eligible > 0 then
    chosen = choose()
  else
    chosen = shortest_wait()
  end
  local bucket = chosen.bucket
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
  out[5] = (bucket.s.up[1] or bucket.s.up[2] or bucket.s.up[3]) and 1 or 0 -- calibrated by upstream
end
for _, f in ipairs(walked and {} or refused) do -- a walk's refusals are of the buckets it read only
  out[#out + 1] = f[1]
  out[#out + 1] = f[2]
  out[#out + 1] = f[3] and fmt(f[3]) or ''
end
return out
