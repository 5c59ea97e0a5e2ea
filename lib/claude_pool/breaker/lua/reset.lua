-- reset(account_id, reason): close the circuit by hand; counts and trips start again, probes in
-- flight lose their say.
-- KEYS: breaker hash, probe slots. ARGV: now ('' = server time), reason.
local now = clock(ARGV[1])
local r = load_record(KEYS[1])
local after = closed_record(r.epoch + 1)
save_record(KEYS[1], after, now)
redis.call('DEL', KEYS[2])
return reply('reset', r.state, after, now, nil, ARGV[2])
