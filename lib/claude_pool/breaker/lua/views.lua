-- views(account_ids): many accounts' breakers at one instant; writes nothing.
-- KEYS: breaker hash and probe slots of each account, in pairs. ARGV: now ('' = server time).
-- Reply: now, then per account: state, failures, opened_at, open_until, trips, live probes, epoch.
local now = clock(ARGV[1])
local out = {fmt(now)}
for i = 1, #KEYS, 2 do
  local r = load_record(KEYS[i])
  local state = r.state
  local until_ = nil
  if state ~= 'closed' and r.opened_at ~= nil then
    until_ = r.opened_at + r.open_timeout
  end
  -- Half-open is read from the clock, not stored by a timer (the first probe stores it).
  if state == 'open' and until_ ~= nil and now >= until_ then
    state = 'half_open'
  end
  local live = redis.call('ZCOUNT', KEYS[i + 1], '(' .. fmt(now), '+inf')
  out[#out + 1] = state
  out[#out + 1] = tostring(r.failures)
  out[#out + 1] = fmt(r.opened_at)
  out[#out + 1] = fmt(until_)
  out[#out + 1] = tostring(r.trips)
  out[#out + 1] = tostring(live)
  out[#out + 1] = tostring(r.epoch)
end
return out
