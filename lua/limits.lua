-- sluice rate-limit windows: one bucketed sliding window per key and
-- dimension, in a hash. Atomic; time comes from Redis. See docs/limits.md.
--
-- KEYS[1..3]: the hashes of one key (same hash tag) for requests, input
--   tokens, output tokens. Fields: <bucket index> -> amount, t = total in the
--   window, o = oldest bucket counted, n = newest bucket written.
-- ARGV[1]: bucket_ms, ARGV[2]: window_ms, ARGV[3]: "admit", "settle" or "peek",
-- ARGV[4..6]: rpm, input_tpm, output_tpm (0 = unlimited).
--
-- admit:  ARGV[7] = input cost.
--   Checks all three windows and only if all pass records the request and
--   reserves the cost. Returns {admitted, dimension, limit, used, requested,
--   retry_ms (-1 = never fits), bucket, used_requests, reset_requests_ms,
--   used_input, reset_input_ms, used_output, reset_output_ms}.
-- settle: ARGV[7..10] = admission bucket, input delta, output tokens,
--   release (0/1). Corrects the reservation in its bucket (if still counted),
--   records output now, undoes the request on release. Returns 1.
-- peek: no more arguments. Reports the windows as admit does for an
--   admitted request, without recording anything.
local bucket_ms = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = math.floor(now / bucket_ms)
local oldest = math.floor((now - window_ms) / bucket_ms) -- first bucket overlapping the window
local span = math.floor(window_ms / bucket_ms) + 2

-- Drops the buckets that left the window. Returns the total left, the newest
-- bucket, and whether the hash is new.
local function trim(key)
  local meta = redis.call('HMGET', key, 't', 'o', 'n')
  local total, first, newest = tonumber(meta[1]) or 0, tonumber(meta[2]), tonumber(meta[3]) or 0
  if first == nil then return 0, 0, true end
  if first >= oldest then return total, newest, false end
  if oldest - first > span or total <= 0 then
    redis.call('DEL', key)
    return 0, 0, true
  end
  for b = first, oldest - 1 do
    local v = tonumber(redis.call('HGET', key, b))
    if v then
      total = total - v
      redis.call('HDEL', key, b)
    end
  end
  redis.call('HSET', key, 't', total, 'o', oldest)
  return total, newest, false
end

-- Adds amount to the current bucket of a trimmed hash whose total is `total`.
local function add(key, total, fresh, amount)
  redis.call('HINCRBY', key, cur, amount)
  if fresh then
    redis.call('HSET', key, 't', total + amount, 'n', cur, 'o', oldest)
  else
    redis.call('HSET', key, 't', total + amount, 'n', cur)
  end
  redis.call('PEXPIRE', key, window_ms + 2 * bucket_ms)
end

local function reset_after(total, newest)
  if total <= 0 then return 0 end
  return math.max((newest + 1) * bucket_ms + window_ms - now, 0)
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

local limits = { tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]) }

if ARGV[3] == 'settle' then
  local bucket, input_delta = tonumber(ARGV[7]), tonumber(ARGV[8])
  local output, release = tonumber(ARGV[9]), ARGV[10] == '1'
  -- Changes the admission's bucket by delta if it is still counted, never below zero.
  local function adjust(key, delta)
    local total, _, fresh = trim(key)
    if fresh or bucket < oldest then return end
    local v = tonumber(redis.call('HGET', key, bucket))
    if v == nil then return end
    if v + delta < 0 then delta = -v end
    redis.call('HINCRBY', key, bucket, delta)
    redis.call('HSET', key, 't', total + delta)
  end
  if release and limits[1] > 0 then adjust(KEYS[1], -1) end
  if input_delta ~= 0 and limits[2] > 0 then adjust(KEYS[2], input_delta) end
  if output > 0 and limits[3] > 0 then
    local total, _, fresh = trim(KEYS[3])
    add(KEYS[3], total, fresh, output)
  end
  return 1
end

local peek = ARGV[3] == 'peek'
local cost = peek and 0 or tonumber(ARGV[7])
local wants = { 1, cost, 0 }
if peek then wants[1] = 0 end
local used, newest, fresh = { 0, 0, 0 }, { 0, 0, 0 }, { true, true, true }
for d = 1, 3 do
  if limits[d] > 0 then used[d], newest[d], fresh[d] = trim(KEYS[d]) end
end
for d = 1, 3 do
  local lim = limits[d]
  if lim > 0 and not peek then
    local over
    if d == 3 then over = used[d] >= lim else over = used[d] + wants[d] > lim end
    if over then
      local retry
      if d ~= 3 and wants[d] > lim then
        retry = -1
      elseif d == 3 then
        retry = free_after(KEYS[d], used[d] - lim + 1)
      else
        retry = free_after(KEYS[d], used[d] + wants[d] - lim)
      end
      return { 0, d, lim, used[d], wants[d], retry, cur, 0, 0, 0, 0, 0, 0 }
    end
  end
end
for d = 1, 2 do
  if limits[d] > 0 and wants[d] > 0 then
    add(KEYS[d], used[d], fresh[d], wants[d])
    used[d], newest[d] = used[d] + wants[d], cur
  end
end
return { 1, 0, 0, 0, 0, 0, cur,
         used[1], reset_after(used[1], newest[1]),
         used[2], reset_after(used[2], newest[2]),
         used[3], reset_after(used[3], newest[3]) }
