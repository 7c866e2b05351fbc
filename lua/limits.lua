-- sluice rate limits and quotas of one key. Atomic; time comes from Redis.
-- See docs/limits.md and docs/quotas.md.
--
-- Windows: one bucketed sliding window per dimension, in a hash. Fields:
--   <bucket index> -> amount, t = total in the window, o = oldest bucket
--   counted, n = newest bucket written.
-- Quota: one counter per period, KEYS[4] .. ':' .. period id (d<day number>,
--   m<yyyymm>, total), expiring a day after its period ends.
--
-- KEYS[1..3]: window hashes for requests, input tokens, output tokens;
-- KEYS[4]: quota key prefix. All share the key's hash tag.
-- ARGV[1] bucket_ms, [2] window_ms, [3] mode, [4..6] rpm, input_tpm,
--   output_tpm (0 = unlimited), [7] quota (0 = none), [8] period kind
--   (0 none, 1 day, 2 month, 3 total), [9] clock offset in seconds (tests),
--   then per mode:
-- admit  [10] input cost, [11] force (1: shadow mode, record even when over).
--   Checks all windows and the quota and only if all pass (or force) records
--   the request and reserves the cost. Returns {admitted, dimension (4 =
--   quota), limit, used, requested, retry_ms (-1 = never), bucket,
--   used_requests, reset_requests_ms, used_input, reset_input_ms,
--   used_output, reset_output_ms, used_quota, quota_reset_ms, period id}.
-- peek   the same reply, recording nothing.
-- settle [10] admission bucket, [11] input delta, [12] output tokens,
--   [13] release (0/1), [14] quota delta, [15] the admission's period id.
-- qpeek, qreset, qadd ([10] tokens): the quota alone: {used, reset_ms, period id}.
local bucket_ms = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local mode = ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = math.floor(now / bucket_ms)
local oldest = math.floor((now - window_ms) / bucket_ms) -- first bucket overlapping the window
local span = math.floor(window_ms / bucket_ms) + 2
local limits = { tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]) }
local quota, period_kind = tonumber(ARGV[7]), tonumber(ARGV[8])

-- ---- quota periods (UTC calendar; H. Hinnant's civil date algorithms) ----
local function civil_from_days(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end

local function days_from_civil(y, m)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5)
  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end

-- The current period's id and its end (seconds), or nil end for "total".
local function period()
  local secs = math.floor(now / 1000) + tonumber(ARGV[9])
  local day = math.floor(secs / 86400)
  if period_kind == 1 then return 'd' .. day, (day + 1) * 86400 - tonumber(ARGV[9]) end
  if period_kind == 2 then
    local y, m = civil_from_days(day)
    local ny, nm = y, m + 1
    if nm == 13 then ny, nm = y + 1, 1 end
    return 'm' .. (y * 100 + m), days_from_civil(ny, nm) * 86400 - tonumber(ARGV[9])
  end
  return 'total', nil
end

local function quota_state()
  local id, ends = period()
  local key = KEYS[4] .. ':' .. id
  if quota <= 0 and mode ~= 'qpeek' and mode ~= 'qreset' and mode ~= 'qadd' then
    return key, 0, -1, id, ends -- no quota: nothing to read
  end
  local used = tonumber(redis.call('GET', key)) or 0
  local reset_ms = ends and (ends * 1000 - now) or -1
  return key, used, reset_ms, id, ends
end

local function quota_add(key, amount, ends)
  local v = redis.call('INCRBY', key, amount)
  if v < 0 then redis.call('SET', key, 0, 'KEEPTTL'); v = 0 end
  if ends then redis.call('EXPIREAT', key, ends + 86400) end
  return v
end

-- ---- windows ----
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

-- ---- modes ----
if mode == 'qpeek' or mode == 'qreset' or mode == 'qadd' then
  local key, used, reset_ms, id, ends = quota_state()
  if mode == 'qreset' then
    redis.call('DEL', key)
    used = 0
  elseif mode == 'qadd' then
    used = quota_add(key, tonumber(ARGV[10]), ends)
  end
  return { used, reset_ms, id }
end

if mode == 'settle' then
  local bucket, input_delta = tonumber(ARGV[10]), tonumber(ARGV[11])
  local output, release = tonumber(ARGV[12]), ARGV[13] == '1'
  -- Changes the admission's bucket by delta if it is still counted, never below zero.
  local function adjust(key, delta)
    local total, _, fresh = trim(key)
    if fresh or bucket < oldest then return end
    local v = redis.call('HINCRBY', key, bucket, delta)
    if v < 0 then -- never below zero (the bucket was trimmed or reset meanwhile)
      redis.call('HSET', key, bucket, 0)
      delta = delta - v
    end
    redis.call('HSET', key, 't', total + delta)
  end
  if release and limits[1] > 0 then adjust(KEYS[1], -1) end
  if input_delta ~= 0 and limits[2] > 0 then adjust(KEYS[2], input_delta) end
  if output > 0 and limits[3] > 0 then
    local total, _, fresh = trim(KEYS[3])
    add(KEYS[3], total, fresh, output)
  end
  local quota_delta = tonumber(ARGV[14])
  if quota > 0 and quota_delta ~= 0 then
    local key = KEYS[4] .. ':' .. ARGV[15]
    if redis.call('EXISTS', key) == 1 then quota_add(key, quota_delta, nil) end
  end
  return 1
end

-- admit or peek
local peek = mode == 'peek'
local cost = peek and 0 or tonumber(ARGV[10])
local force = not peek and ARGV[11] == '1'
local wants = { peek and 0 or 1, cost, 0 }
local used, newest, fresh = { 0, 0, 0 }, { 0, 0, 0 }, { true, true, true }
for d = 1, 3 do
  if limits[d] > 0 then used[d], newest[d], fresh[d] = trim(KEYS[d]) end
end
local qkey, qused, qreset, qid, qends = quota_state()
local refusal = nil
for d = 1, 3 do
  local lim = limits[d]
  if lim > 0 and not peek and not refusal then
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
      refusal = { 0, d, lim, used[d], wants[d], retry }
    end
  end
end
if quota > 0 and not peek and not refusal and qused + cost > quota then
  refusal = { 0, 4, quota, qused, cost, -1 }
end
if refusal and not force then
  return { refusal[1], refusal[2], refusal[3], refusal[4], refusal[5], refusal[6], cur,
           0, 0, 0, 0, 0, 0, qused, qreset, qid }
end
for d = 1, 2 do
  if limits[d] > 0 and wants[d] > 0 then
    add(KEYS[d], used[d], fresh[d], wants[d])
    used[d], newest[d] = used[d] + wants[d], cur
  end
end
if quota > 0 and cost > 0 and not peek then qused = quota_add(qkey, cost, qends) end
local r = refusal or { 1, 0, 0, 0, 0, 0 }
return { 1, r[2], r[3], r[4], r[5], r[6], cur,
         used[1], reset_after(used[1], newest[1]),
         used[2], reset_after(used[2], newest[2]),
         used[3], reset_after(used[3], newest[3]),
         qused, qreset, qid }
