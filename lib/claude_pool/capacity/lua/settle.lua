-- settle(reservation, usage, request_sent): refund what was reserved but not used, release the
-- lease. Idempotent: an unknown reservation (settled or reclaimed already) changes nothing; one whose
-- lease has expired is reclaimed exactly as reclaim_expired would (its usage is ignored).
-- With the answer's headers (ARGV 7 on), the bucket is then calibrated in the same step
-- (calibrate_bucket), its levels raised to upstream's word only when no other call that may have
-- reached upstream left the books after this one was sent (rules.may_raise): every call upstream
-- may not have counted is then still held here.
-- KEYS: reservations hash, lease index, bucket hash, bucket's leases, fullness index.
-- ARGV: now, idle ttl, reservation id, mode (0 usage given, 1 sent without usage, 2 not sent),
-- used input, used output; then, to calibrate: cold start ('1'), and per metric (requests, input,
-- output) limit and remaining ('' when the header was missing).
local now = clock(ARGV[1])
local ttl = tonumber(ARGV[2])
local rid = ARGV[3]
local mode = tonumber(ARGV[4])
local used_i = tonumber(ARGV[5])
local used_o = tonumber(ARGV[6])

index_fullness_in(KEYS[5])

local calibrating = ARGV[7] ~= nil
local rec = reservation_record(KEYS[1], rid)
local result, raise = 0, false
if rec and now >= tonumber(rec.e) then
  drop_lease(KEYS[1], KEYS[2], KEYS[3], KEYS[4], rid, true, now, ttl)
  result = 2
elseif rec then
  raise = calibrating and may_raise(KEYS[3], tonumber(rec.s) or 0)
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
  if mode ~= 2 then
    mark_call_ended(KEYS[3], now)
  end
  result = 1
end
if calibrating then
  calibrate_bucket(KEYS[3], KEYS[4], KEYS[1], now, ttl, ARGV[7] == '1', ARGV, 8, raise)
end
return result
