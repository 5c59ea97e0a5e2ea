-- allow(account_id, params, token): admit one call. Closed lets it through; open denies until its
-- timeout; past it (half-open) a probe slot is taken if one is free, and the first such probe
-- stores the half-open state.
-- KEYS: breaker hash, probe slots. ARGV: now ('' = server time), half_open_max_calls,
-- probe_ttl_seconds, probe token.
local max_probes = tonumber(ARGV[2])
local probe_ttl = tonumber(ARGV[3])
local token = ARGV[4]

local now = clock(ARGV[1])
local r = load_record(KEYS[1])
local from = r.state

if r.state == 'closed' then
  return reply('allow', from, r, now, nil, '')
end
if r.state == 'open' then
  local until_ = (r.opened_at or 0) + r.open_timeout
  if now < until_ then
    return reply('deny', from, r, now, until_, 'circuit open')
  end
end

-- A slot whose worker died is given back when it expires, so half-open never blocks for good.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now))
if redis.call('ZCARD', KEYS[2]) >= max_probes then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return reply('deny', from, r, now, tonumber(first[2]), 'half-open: probe slots taken')
end
redis.call('ZADD', KEYS[2], fmt(now + probe_ttl), token)
redis.call('PEXPIRE', KEYS[2], math.ceil(probe_ttl * 1000) + 1000)

local reason = ''
if r.state == 'open' then
  r.state = 'half_open'
  r.epoch = r.epoch + 1
  save_record(KEYS[1], r, now)
  reason = 'open timeout elapsed'
end
return reply('probe', from, r, now, nil, reason)
