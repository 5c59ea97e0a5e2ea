-- Helpers shared by the breaker scripts. redis_store.py prepends this file to each of them when it
-- registers them (Redis has no include). The rules mirror claude_pool/breaker/_states.py: change both.
-- KEYS[1] is the account's breaker hash, KEYS[2] its probe slots (token scored by expiry).

-- clock(ARGV[1]), the time, comes before this file: CLOCK_LUA in claude_pool/core/redis_scripts.py.

local function fmt(x)
  if x == nil then return '' end
  return string.format('%.6f', x)
end

local function load_record(key)
  local h = redis.call('HMGET', key, 'state', 'failures', 'opened_at', 'open_timeout', 'trips', 'epoch')
  return {
    state = h[1] or 'closed',
    failures = tonumber(h[2]) or 0,
    opened_at = tonumber(h[3]),
    open_timeout = tonumber(h[4]) or 0,
    trips = tonumber(h[5]) or 0,
    epoch = tonumber(h[6]) or 0,
  }
end

local function closed_record(epoch)
  return {state = 'closed', failures = 0, opened_at = nil, open_timeout = 0, trips = 0, epoch = epoch}
end

local function save_record(key, r, now)
  redis.call('HSET', key,
    'state', r.state, 'failures', r.failures, 'opened_at', fmt(r.opened_at),
    'open_timeout', fmt(r.open_timeout), 'trips', r.trips, 'epoch', r.epoch, 'changed_at', fmt(now))
end

local function open_timeout(trips, base, multiplier, cap)
  local timeout = base * (multiplier ^ (trips - 1))
  if timeout > cap then timeout = cap end
  return timeout
end

-- One reply shape for every operation; a transition happened when from_state ~= r.state.
local function reply(verdict, from_state, r, now, until_, reason)
  return {
    verdict, from_state, r.state, tostring(r.failures), fmt(r.opened_at), fmt(r.open_timeout),
    tostring(r.trips), tostring(r.epoch), fmt(now), fmt(until_), reason or '',
  }
end
