-- Record a call's result. A probe's verdict counts only while its slot is still held; an
-- ordinary result counts only in the closed state and the epoch it was let through in.
-- ARGV[1] effect (success|failure|not_counted), ARGV[2] probe token ('' = not a probe),
-- ARGV[3] epoch ('' = current), ARGV[4] failure_threshold, ARGV[5] timeout_seconds,
-- ARGV[6] backoff_multiplier, ARGV[7] max_timeout_seconds
local effect = ARGV[1]
local token = ARGV[2]
local epoch = tonumber(ARGV[3])
local threshold = tonumber(ARGV[4])
local base = tonumber(ARGV[5])
local multiplier = tonumber(ARGV[6])
local cap = tonumber(ARGV[7])

local now = now_seconds()
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
