-- view(candidates): the live levels of some buckets, read only (refill computed, not written).
-- KEYS: per bucket: bucket hash, bucket's leases. ARGV: now, count, then per bucket the configured
-- rpm, itpm, otpm. Returns now, then per bucket: 3 levels, 3 caps, cooldown end, leases in flight.
local now = clock(ARGV[1])
local n = tonumber(ARGV[2])

local out = {fmt(now)}
for b = 1, n do
  local s = load_bucket(KEYS[2 * b - 1])
  local cfg = {tonumber(ARGV[3 * b]), tonumber(ARGV[3 * b + 1]), tonumber(ARGV[3 * b + 2])}
  local caps = caps_of(s, cfg)
  local lv = refill(s, caps, now)
  for m = 1, 3 do
    out[#out + 1] = fmt(lv[m])
  end
  for m = 1, 3 do
    out[#out + 1] = fmt(caps[m])
  end
  out[#out + 1] = fmt(s.cd)
  out[#out + 1] = redis.call('ZCOUNT', KEYS[2 * b], '(' .. fmt(now), '+inf')
end
return out
