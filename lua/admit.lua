-- sluice admission: checks a key's three sliding windows and, only if all
-- pass, reserves the request and its estimated input tokens. Atomic; time
-- comes from Redis. See docs/limits.md.
--
-- KEYS[1..3]: hashes for requests, input tokens, output tokens of one key
--   (same hash tag). Fields: <bucket index> -> amount, t = total in the
--   window, o = oldest bucket counted, n = newest bucket written.
-- ARGV: rpm, input_tpm, output_tpm (0 = unlimited), input cost, bucket_ms, window_ms
-- Returns {admitted, dimension, limit, used, requested, retry_ms, bucket,
--          used_requests, reset_requests_ms, used_input, reset_input_ms,
--          used_output, reset_output_ms}
local bucket_ms = tonumber(ARGV[5])
local window_ms = tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = math.floor(now / bucket_ms)
local oldest = math.floor((now - window_ms) / bucket_ms) -- first bucket overlapping the window
local span = math.floor(window_ms / bucket_ms) + 2

-- Drops buckets that left the window; returns the amount left and the newest bucket.
local function trim(key)
  local meta = redis.call('HMGET', key, 't', 'o', 'n')
  local total, first, newest = tonumber(meta[1]) or 0, tonumber(meta[2]), tonumber(meta[3]) or 0
  if first == nil or first >= oldest then return total, newest end
  if oldest - first > span or total == 0 then
    redis.call('DEL', key)
    return 0, 0
  end
  for b = first, oldest - 1 do
    local v = tonumber(redis.call('HGET', key, b))
    if v then
      total = total - v
      redis.call('HDEL', key, b)
    end
  end
  redis.call('HSET', key, 't', total, 'o', oldest)
  return total, newest
end

-- Milliseconds until `need` of the amount in the window has left it.
local function free_after(key, need)
  local freed = 0
  for b = oldest, cur do
    freed = freed + (tonumber(redis.call('HGET', key, b)) or 0)
    if freed >= need then return (b + 1) * bucket_ms + window_ms - now end
  end
  return window_ms
end

local function reset_after(total, newest)
  if total <= 0 then return 0 end
  return math.max((newest + 1) * bucket_ms + window_ms - now, 0)
end

local function add(key, amount)
  redis.call('HINCRBY', key, cur, amount)
  redis.call('HINCRBY', key, 't', amount)
  redis.call('HSETNX', key, 'o', oldest)
  redis.call('HSET', key, 'n', cur)
  redis.call('PEXPIRE', key, window_ms + 2 * bucket_ms)
end

local limits = { tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]) }
local cost = tonumber(ARGV[4])
local wants = { 1, cost, 0 }
local used, newest = {}, {}
for d = 1, 3 do
  if limits[d] > 0 then used[d], newest[d] = trim(KEYS[d]) else used[d], newest[d] = 0, 0 end
end
for d = 1, 3 do
  local lim = limits[d]
  if lim > 0 then
    local over
    if d == 3 then over = used[d] >= lim else over = used[d] + wants[d] > lim end
    if over then
      local retry
      if d ~= 3 and wants[d] > lim then
        retry = -1 -- can never fit
      elseif d == 3 then
        retry = free_after(KEYS[d], used[d] - lim + 1)
      else
        retry = free_after(KEYS[d], used[d] + wants[d] - lim)
      end
      return { 0, d, lim, used[d], wants[d], retry, cur, 0, 0, 0, 0, 0, 0 }
    end
  end
end
if limits[1] > 0 then add(KEYS[1], 1); used[1] = used[1] + 1; newest[1] = cur end
if limits[2] > 0 and cost > 0 then add(KEYS[2], cost); used[2] = used[2] + cost; newest[2] = cur end
return { 1, 0, 0, 0, 0, 0, cur,
         used[1], reset_after(used[1], newest[1]),
         used[2], reset_after(used[2], newest[2]),
         used[3], reset_after(used[3], newest[3]) }
