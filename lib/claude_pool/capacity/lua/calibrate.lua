-- calibrate(bucket_id, snapshot): upstream's headers are the truth. A limit is adopted (it wins over
-- the configured one); a level is lowered to upstream's remaining, never raised (token counts come
-- rounded to the thousand, and our own reservations in flight are not in upstream's count yet).
-- KEYS[1] bucket hash. ARGV: now, idle ttl, then per metric (requests, input, output): limit,
-- remaining ('' when the header was missing).
local now = clock(ARGV[1])
local ttl = tonumber(ARGV[2])

local s = load_bucket(KEYS[1])
local caps = caps_of(s, nil)
local lv = refill(s, caps, now)
local adopted = {}
for m = 1, 3 do
  local limit = tonumber(ARGV[1 + 2 * m])
  local remaining = tonumber(ARGV[2 + 2 * m])
  if limit ~= nil and limit > 0 then
    caps[m] = limit
    adopted[#adopted + 1] = UPSTREAM_FIELDS[m]
    adopted[#adopted + 1] = fmt(limit)
    if lv[m] == nil then
      lv[m] = limit
    else
      lv[m] = math.min(lv[m], limit)
    end
  end
  if remaining ~= nil and lv[m] ~= nil and remaining < lv[m] then
    lv[m] = math.max(0, remaining)
  end
end
if #adopted > 0 then
  redis.call('HSET', KEYS[1], unpack(adopted))
end
save_bucket(KEYS[1], s, lv, caps, now, ttl)
return 1
