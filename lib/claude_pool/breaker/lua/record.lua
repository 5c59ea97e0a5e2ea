-- record(account_id, effect, params, token, epoch): a call's result. A probe's verdict counts only
-- while its slot is still held; an ordinary result counts only in the closed state and the epoch it
-- was let through in.
-- KEYS: breaker hash, probe slots. ARGV: now ('' = server time), effect (success|failure|
-- not_counted), probe token ('' = not a probe), epoch ('' = current), failure_threshold,
-- timeout_seconds, backoff_multiplier, max_timeout_seconds.
local effect = ARGV[2]
local token = ARGV[3]
local epoch = tonumber(ARGV[4])
local threshold = tonumber(ARGV[5])
local base = tonumber(ARGV[6])
local multiplier = tonumber(ARGV[7])
local cap = tonumber(ARGV[8])

local now = clock(ARGV[1])
local r = load_record(KEYS[1])
local from = r.state

local function open(trips, reason)
  r.state = 'open'
  r.opened_at = now
  r.trips = trips
  r.open_timeout = open_timeout(trips, base, multiplier, cap)
  r.epoch = r.epoch + 1
  save_record(KEYS[1], r, now)
  redis.call('DEL', KEYS[2])
  return reply('counted', from, r, now, nil, reason)
end

if token ~= '' then
  if redis.call('ZREM', KEYS[2], token) == 0 then
    return reply('ignored', from, r, now, nil, '')
  end
  if effect == 'not_counted' then
    return reply('released', from, r, now, nil, '')
  end
  if r.state ~= 'half_open' then
    return reply('ignored', from, r, now, nil, '')
  end
  if effect == 'success' then
    r = closed_record(r.epoch + 1)
    save_record(KEYS[1], r, now)
    redis.call('DEL', KEYS[2])
    return reply('counted', from, r, now, nil, 'probe succeeded')
  end
  r.failures = r.failures + 1
  return open(r.trips + 1, 'probe failed')
end

if effect == 'not_counted' or (epoch ~= nil and epoch ~= r.epoch) or r.state ~= 'closed' then
  return reply('ignored', from, r, now, nil, '')
end
if effect == 'success' then
  if r.failures ~= 0 then
    r.failures = 0
    redis.call('HSET', KEYS[1], 'failures', 0)
  end
  return reply('counted', from, r, now, nil, '')
end
r.failures = r.failures + 1
if r.failures >= threshold then
  return open(1, r.failures .. ' consecutive failures')
end
redis.call('HSET', KEYS[1], 'failures', r.failures)
return reply('counted', from, r, now, nil, '')
