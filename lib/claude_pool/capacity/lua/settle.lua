-- settle(reservation, usage, request_sent): refund what was reserved but not used, release the
-- lease. Idempotent: an unknown reservation (settled or reclaimed already) changes nothing; one whose
-- lease has expired is reclaimed exactly as reclaim_expired would (its usage is ignored).
-- KEYS: reservations hash, lease index, bucket hash, bucket's leases, fullness index.
-- ARGV: now, idle ttl, reservation id, mode (0 usage given, 1 sent without usage, 2 not sent),
-- used input, used output.
local now = clock(ARGV[1])
local ttl = tonumber(ARGV[2])
local rid = ARGV[3]
local mode = tonumber(ARGV[4])
local used_i = tonumber(ARGV[5])
local used_o = tonumber(ARGV[6])

index_fullness_in(KEYS[5])

local rec = reservation_record(KEYS[1], rid)
if not rec then
  return 0
end
if now >= tonumber(rec.e) then
  drop_lease(KEYS[1], KEYS[2], KEYS[3], KEYS[4], rid, true, now, ttl)
  return 2
end
drop_lease(KEYS[1], KEYS[2], KEYS[3], KEYS[4], rid, false, now, ttl)
local delta
if mode == 2 then
  delta = {rec.r, rec.i, rec.o}
elseif mode == 1 then
  delta = {0, rec.i, rec.o}
else
  delta = {0, rec.i - used_i, rec.o - used_o}
end
apply_refund(KEYS[3], delta, now, ttl)
return 1
