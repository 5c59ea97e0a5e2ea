-- cool_down(bucket_id, until): a 429 sets the bucket aside until `until`; the later end wins.
-- KEYS: bucket hash, fullness index (a bucket set aside goes down it: see full_again_at).
-- ARGV: now ('' = server time), idle ttl, until.
local now = clock(ARGV[1])
local ttl = tonumber(ARGV[2])
local till = tonumber(ARGV[3])

local current = tonumber(redis.call('HGET', KEYS[1], 'cd')) or 0
if till > current then
  redis.call('HSET', KEYS[1], 'cd', fmt(till))
  current = till
end
redis.call('ZADD', KEYS[2], 'GT', fmt(current), KEYS[1])
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[1], math.max(ttl, math.ceil(current - now) + 60))
return fmt(current)
