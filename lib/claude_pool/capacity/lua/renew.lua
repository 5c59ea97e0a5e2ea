-- renew(reservation, lease ttl): a call still in flight pushes its lease's expiry to now + ttl, so a
-- call that outlives one lease period is not taken for a dead worker's and reclaimed under it. A lease
-- already expired, settled or reclaimed is not revived: 0, and the caller knows its slot is gone.
-- KEYS: reservations hash, lease index, bucket's leases.
-- ARGV: now, reservation id, lease ttl.
local now = clock(ARGV[1])
local rid = ARGV[2]
local lease_ttl = tonumber(ARGV[3])

local rec = reservation_record(KEYS[1], rid)
if not rec then
  return 0
end
if now >= tonumber(rec.e) then
  return 0
end
local expiry = now + lease_ttl
if expiry <= tonumber(rec.e) then
  return fmt(tonumber(rec.e))  -- never shorten a lease
end
rec.e = fmt(expiry)
redis.call('HSET', KEYS[1], rid, cjson.encode(rec))
redis.call('ZADD', KEYS[2], fmt(expiry), rid)
redis.call('ZADD', KEYS[3], fmt(expiry), rid)
local left = redis.call('TTL', KEYS[3])
if left >= 0 and left < math.ceil(lease_ttl) + 60 then
  redis.call('EXPIRE', KEYS[3], math.ceil(lease_ttl) + 60)
end
return fmt(expiry)
