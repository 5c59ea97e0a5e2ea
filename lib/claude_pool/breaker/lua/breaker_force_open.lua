-- Open the circuit by hand (an operator, or a signal outside the call path).
-- ARGV[1] reason, ARGV[2] seconds ('' = the timeout of the current trip), ARGV[3] timeout_seconds,
-- ARGV[4] backoff_multiplier, ARGV[5] max_timeout_seconds
local seconds = tonumber(ARGV[2])
local now = now_seconds()
local r = load_record(KEYS[1])
local from = r.state
local trips = r.trips
if trips < 1 then trips = 1 end
if seconds == nil then
  seconds = open_timeout(trips, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
end
r.state = 'open'
r.opened_at = now
r.open_timeout = seconds
r.trips = trips
r.epoch = r.epoch + 1
save_record(KEYS[1], r, now)
redis.call('DEL', KEYS[2])
return reply('forced', from, r, now, nil, ARGV[1])
