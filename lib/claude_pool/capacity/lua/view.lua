-- view(candidates): the live levels of some buckets, read only (refill computed, not written).
-- KEYS: per bucket: bucket hash, bucket's leases. ARGV: now, count, cold start ('1': unseen = empty),
-- then per bucket the configured rpm, itpm, otpm. Returns now, then per bucket: 3 levels, 3 caps,
-- cooldown end, leases in flight, calibrated (1: upstream's headers have set a limit).
local now = clock(ARGV[1])
local n = tonumber(ARGV[2])
local cold = ARGV[3] == '1'

local out = {fmt(now)}
for b = 1, n do
  local s = load_bucket(KEYS[2 * b - 1])
  local cfg = {tonumber(ARGV[3 * b + 1]), tonumber(ARGV[3 * b + 2]), tonumber(ARGV[3 * b + 3])}
  local caps = caps_of(s, cfg)
  local lv = refill(s, caps, now, cold)
  for m = 1, 3 do
    out[#out + 1] = fmt(lv[m])
  end
  for m = 1, 3 do
    out[#out + 1] = fmt(caps[m])
  end
  out[#out + 1] = fmt(s.cd)
  out[#out + 1] = redis.call('ZCOUNT', KEYS[2 * b], '(' .. fmt(now), '+inf')
  out[#out + 1] = (s.up[1] or s.up[2] or s.up[3]) and 1 or 0
end
return out
