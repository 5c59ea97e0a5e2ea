-- calibrate(bucket_id, snapshot): upstream's headers, on their own (calibrate_bucket); a level is
-- never raised here: nothing says which calls upstream had counted when it wrote them.
-- KEYS: bucket hash, bucket's leases, reservations hash, fullness index. ARGV: now, idle ttl, cold start ('1'),
-- then per metric (requests, input, output): limit, remaining ('' when the header was missing).
local now = clock(ARGV[1])
index_fullness_in(KEYS[4])
calibrate_bucket(KEYS[1], KEYS[2], KEYS[3], now, tonumber(ARGV[2]), ARGV[3] == '1', ARGV, 4, false)
return 1
