-- calibrate(bucket_id, snapshot): upstream's headers are the truth. A limit is adopted (it wins over
-- the configured one); a level is never raised (our own reservations in flight are not in upstream's
-- count yet), and lowered to upstream's remaining less what is queued to send later only when that
-- shows someone else spent (rules.lowered: the requests count, rounded down, gets one's allowance);
-- except the first time a cold store hears of a metric (rules.first_calibration): then the level is
-- set to the remaining, less the rounding margin and what the bucket's live leases hold.
-- KEYS: bucket hash, bucket's leases, reservations hash, fullness index. ARGV: now, idle ttl, cold start ('1'),
-- then per metric (requests, input, output): limit, remaining ('' when the header was missing).
local now = clock(ARGV[1])
local ttl = tonumber(ARGV[2])
local cold = ARGV[3] == '1'
local ROUNDING = {0, 1000, 1000}
local ROUNDED_DOWN = {1, 0, 0}  -- rules.REMAINING_ROUNDED_DOWN
index_fullness_in(KEYS[4])

-- What the live leases of the bucket hold reserved, per metric; unsent_only: only those queued to
-- send later (records written before queueing existed have no s: sent).
local function outstanding(unsent_only)
  local held = {0, 0, 0}
  local rids = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. fmt(now), '+inf')
  if #rids == 0 then
    return held
  end
  for _, raw in ipairs(redis.call('HMGET', KEYS[3], unpack(rids))) do
    if raw then
      local rec = cjson.decode(raw)
      if not unsent_only or (tonumber(rec.s) or 0) > now then
        held[1], held[2], held[3] = held[1] + rec.r, held[2] + rec.i, held[3] + rec.o
      end
    end
  end
  return held
end

local s = load_bucket(KEYS[1])
local caps = caps_of(s, nil)
local lv = refill(s, caps, now, cold)
local held, unsent = nil, nil
local adopted = {}
for m = 1, 3 do
  local limit = tonumber(ARGV[2 + 2 * m])
  local remaining = tonumber(ARGV[3 + 2 * m])
  local first = cold and s.up[m] == nil
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
  if first and limit ~= nil and limit > 0 and remaining ~= nil then
    held = held or outstanding(false)
    lv[m] = math.min(caps[m], remaining - ROUNDING[m] - held[m])
  elseif remaining ~= nil and lv[m] ~= nil then
    -- rules.lowered: only when someone else spent (ours, queue added back, is at or above what
    -- upstream can have left, its rounding down allowed for); then less the queue
    unsent = unsent or outstanding(true)
    local upstream = math.max(0, remaining)
    if lv[m] + unsent[m] >= upstream + ROUNDED_DOWN[m] then
      lv[m] = upstream - unsent[m]
    end
  end
end
if #adopted > 0 then
  redis.call('HSET', KEYS[1], unpack(adopted))
end
save_bucket(KEYS[1], s, lv, caps, now, ttl)
return 1
