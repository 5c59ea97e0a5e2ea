-- force_open(account_id, params, reason, seconds): open the circuit by hand (an operator, or a
-- signal outside the call path).
-- KEYS: breaker hash, probe slots. ARGV: now ('' = server time), reason, seconds ('' = the timeout
-- of the current trip), timeout_seconds, backoff_multiplier, max_timeout_seconds.
local seconds = tonumber(ARGV[3])
local now = clock(ARGV[1])
local r = load_record(KEYS[1])
local from = r.state
local trips = r.trips
if trips < 1 then trips = 1 end
if seconds == nil then
  seconds = open_timeout(trips, tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))
end
r.state = 'open'
r.opened_at = now
r.open_timeout = seconds
r.trips = trips
r.epoch = r.epoch + 1
save_record(KEYS[1], r, now)
redis.call('DEL', KEYS[2])
return reply('forced', from, r, now, nil, ARGV[2])
