-- sluice settlement: after the response, corrects the input reservation made
-- at admission (in the admission's bucket, if it is still in the window),
-- records the real output tokens, and undoes the request itself when the
-- upstream never answered. See docs/limits.md.
--
-- KEYS[1..3]: as in admit.lua
-- ARGV: admission bucket, input delta, output tokens, release (0/1),
--       rpm, input_tpm, output_tpm, bucket_ms, window_ms
local bucket = tonumber(ARGV[1])
local input_delta = tonumber(ARGV[2])
local output = tonumber(ARGV[3])
local release = tonumber(ARGV[4]) == 1
local bucket_ms = tonumber(ARGV[8])
local window_ms = tonumber(ARGV[9])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = math.floor(now / bucket_ms)
local oldest = math.floor((now - window_ms) / bucket_ms)

-- Changes one bucket by delta, never below zero; only buckets still counted.
local function adjust(key, b, delta)
  local first = tonumber(redis.call('HGET', key, 'o'))
  if first == nil or b < first or b < oldest then return end
  local v = tonumber(redis.call('HGET', key, b))
  if v == nil then return end
  if v + delta < 0 then delta = -v end
  redis.call('HINCRBY', key, b, delta)
  redis.call('HINCRBY', key, 't', delta)
end

if release and tonumber(ARGV[5]) > 0 then adjust(KEYS[1], bucket, -1) end
if input_delta ~= 0 and tonumber(ARGV[6]) > 0 then adjust(KEYS[2], bucket, input_delta) end
if output > 0 and tonumber(ARGV[7]) > 0 then
  local key = KEYS[3]
  redis.call('HINCRBY', key, cur, output)
  redis.call('HINCRBY', key, 't', output)
  redis.call('HSETNX', key, 'o', oldest)
  redis.call('HSET', key, 'n', cur)
  redis.call('PEXPIRE', key, window_ms + 2 * bucket_ms)
end
return 1
