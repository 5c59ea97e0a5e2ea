-- reclaim_expired(): return the capacity of leases whose worker never settled (see store.py for why
-- the request and input stay charged and the output comes back). Python lists the expired ids and
-- their buckets first (their keys must be in KEYS); each is re-checked here, so a lease settled in
-- between is left alone.
-- KEYS: reservations hash, lease index, fullness index, then per bucket: bucket hash, bucket's leases.
-- ARGV: now, idle ttl, count, then per lease: reservation id, bucket number (0: no record left).
local now = clock(ARGV[1])
local ttl = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
index_fullness_in(KEYS[3])

local reclaimed = 0
for k = 1, n do
  local rid = ARGV[2 + 2 * k]
  local b = tonumber(ARGV[3 + 2 * k])
  local score = tonumber(redis.call('ZSCORE', KEYS[2], rid))
  if score ~= nil and score <= now then
    local bucket_key, lease_key = nil, nil
    if b > 0 then
      bucket_key, lease_key = KEYS[2 + 2 * b], KEYS[3 + 2 * b]
    end
    if drop_lease(KEYS[1], KEYS[2], bucket_key, lease_key, rid, true, now, ttl) then
      reclaimed = reclaimed + 1
    end
  end
end
return reclaimed
