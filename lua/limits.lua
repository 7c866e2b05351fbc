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
-- batch  [10] n, then n operations of 7 arguments each (see the end), done in
--   order in one call. Replies: one per operation.
--   admission: checks all windows and the quota and only if all pass (or
--     force: shadow mode) records the request and reserves the cost. Reply
--     {admitted, dimension (4 = quota), limit, used, requested, retry_ms
--     (-1 = never), bucket, used_requests, reset_requests_ms, used_input,
--     reset_input_ms, used_output, reset_output_ms, used_quota,
--     quota_reset_ms, period id}.
--   peek: the same reply, recording nothing.
--   settlement: corrects the admission's bucket, records output, adds to
--     the admission's period's quota. Reply 1.
-- qpeek, qreset, qadd ([10] tokens): the quota alone: {used, reset_ms, period id}.
local bucket_ms = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local mode = ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = math.floor(now / bucket_ms)
-- The window is the last window_ms / bucket_ms buckets, the current one
-- included: bucket b counts until b * bucket_ms + window_ms, so no wait is
-- ever longer than the window (Retry-After: 60 at most for a minute).
local oldest = math.floor((now - window_ms) / bucket_ms) + 1
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

-- The current period's counter: key, used, ms to reset, id, end, whether it
-- exists. Read from Redis only when `read`.
local function quota_state(read)
  local id, ends = period()
  local key = KEYS[4] .. ':' .. id
  local v = read and redis.call('GET', key)
  return key, tonumber(v) or 0, ends and (ends * 1000 - now) or -1, id, ends, v ~= false
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

local function reset_after(total, newest)
  if total <= 0 then return 0 end
  return math.max(newest * bucket_ms + window_ms - now, 0)
end

-- ---- modes ----
if mode == 'qpeek' or mode == 'qreset' or mode == 'qadd' then
  local key, used, reset_ms, id, ends = quota_state(true)
  if mode == 'qreset' then
    redis.call('DEL', key)
    used = 0
  elseif mode == 'qadd' then
    used = quota_add(key, tonumber(ARGV[10]), ends)
  end
  return { used, reset_ms, id }
end

-- ---- batch: admissions, peeks and settlements of this key, in order ----
-- Each dimension's hash is read once (trimmed), changed in memory by every
-- operation in turn, and written once at the end; the quota counter likewise.
-- The operations see each other exactly as if they had been separate calls.
local W = {} -- per dimension: total, newest, fresh, pending bucket deltas, stored bucket cache
local function win(d)
  local w = W[d]
  if not w then
    local total, newest, fresh = trim(KEYS[d])
    w = { total = total, newest = newest, fresh = fresh, delta = {}, seen = {}, dirty = false }
    W[d] = w
  end
  return w
end

-- What bucket b holds, pending changes included; nil if it holds nothing.
local function value(d, b)
  local w = win(d)
  local v = w.seen[b]
  if v == nil then
    v = tonumber(redis.call('HGET', KEYS[d], b)) or false
    w.seen[b] = v
  end
  local p = w.delta[b]
  if not v and not p then return nil end
  return (v or 0) + (p or 0)
end

local function wadd(d, b, amount)
  local w = win(d)
  w.delta[b] = (w.delta[b] or 0) + amount
  w.total = w.total + amount
  if b > w.newest then w.newest = b end
  w.dirty = true
end

-- Milliseconds until `need` of the amount in the window has left it.
local function free_after(d, need)
  local freed = 0
  for b = oldest, cur do
    freed = freed + (value(d, b) or 0)
    if freed >= need then return b * bucket_ms + window_ms - now end
  end
  return window_ms
end

local Q = nil -- the current period's quota counter
local function quota_counter()
  if not Q then
    local key, used, reset_ms, id, ends, exists = quota_state(quota > 0)
    Q = { key = key, used = used, reset_ms = reset_ms, id = id, ends = ends, exists = exists, dirty = false }
  end
  return Q
end

local function admit(cost, force, peek)
  local wants = { peek and 0 or 1, cost, 0 }
  local used, newest = { 0, 0, 0 }, { 0, 0, 0 }
  for d = 1, 3 do
    if limits[d] > 0 then
      local w = win(d)
      used[d], newest[d] = w.total, w.newest
    end
  end
  local q = quota_counter()
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
          retry = free_after(d, used[d] - lim + 1)
        else
          retry = free_after(d, used[d] + wants[d] - lim)
        end
        refusal = { 0, d, lim, used[d], wants[d], retry }
      end
    end
  end
  if quota > 0 and not peek and not refusal and q.used + cost > quota then
    refusal = { 0, 4, quota, q.used, cost, -1 }
  end
  if refusal and not force then
    return { refusal[1], refusal[2], refusal[3], refusal[4], refusal[5], refusal[6], cur,
             0, 0, 0, 0, 0, 0, q.used, q.reset_ms, q.id }
  end
  for d = 1, 2 do
    if limits[d] > 0 and wants[d] > 0 then
      wadd(d, cur, wants[d])
      used[d], newest[d] = W[d].total, cur
    end
  end
  if quota > 0 and cost > 0 and not peek then
    q.used, q.exists, q.dirty = q.used + cost, true, true
  end
  local r = refusal or { 1, 0, 0, 0, 0, 0 }
  return { 1, r[2], r[3], r[4], r[5], r[6], cur,
           used[1], reset_after(used[1], newest[1]),
           used[2], reset_after(used[2], newest[2]),
           used[3], reset_after(used[3], newest[3]),
           q.used, q.reset_ms, q.id }
end

-- Changes the admission's bucket by delta if it is still counted, never below zero.
local function adjust(d, bucket, delta)
  if bucket < oldest then return end
  local v = value(d, bucket)
  if v == nil then return end -- trimmed or reset meanwhile
  if v + delta < 0 then delta = -v end
  if delta ~= 0 then wadd(d, bucket, delta) end
end

local function settle(bucket, input_delta, output, release, quota_delta, period_id)
  if release and limits[1] > 0 then adjust(1, bucket, -1) end
  if input_delta ~= 0 and limits[2] > 0 then adjust(2, bucket, input_delta) end
  if output > 0 and limits[3] > 0 then wadd(3, cur, output) end
  if quota > 0 and quota_delta ~= 0 then
    local q = quota_counter()
    if period_id == q.id then
      if q.exists then q.used, q.dirty = math.max(q.used + quota_delta, 0), true end
    else -- the admission's period has ended since
      local key = KEYS[4] .. ':' .. period_id
      if redis.call('EXISTS', key) == 1 then quota_add(key, quota_delta, nil) end
    end
  end
  return 1
end

-- ARGV[10] = number of operations, then 7 arguments each:
--   'a', cost, force, -, -, -, -            admission
--   'p', -, -, -, -, -, -                   peek
--   's', bucket, input delta, output, release, quota delta, period id   settlement
local n = tonumber(ARGV[10])
local replies = {}
for i = 0, n - 1 do
  local a = 10 + i * 7
  local op = ARGV[a + 1]
  if op == 's' then
    replies[i + 1] = settle(tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]),
                            ARGV[a + 5] == '1', tonumber(ARGV[a + 6]), ARGV[a + 7])
  else
    replies[i + 1] = admit(op == 'a' and tonumber(ARGV[a + 2]) or 0, op == 'a' and ARGV[a + 3] == '1', op == 'p')
  end
end

for d, w in pairs(W) do
  if w.dirty then
    for b, v in pairs(w.delta) do redis.call('HINCRBY', KEYS[d], b, v) end
    if w.fresh then
      redis.call('HSET', KEYS[d], 't', w.total, 'n', w.newest, 'o', oldest)
    else
      redis.call('HSET', KEYS[d], 't', w.total, 'n', w.newest)
    end
    redis.call('PEXPIRE', KEYS[d], window_ms + 2 * bucket_ms)
  end
end
if Q and Q.dirty then
  redis.call('SET', Q.key, Q.used, 'KEEPTTL')
  if Q.ends then redis.call('EXPIREAT', Q.key, Q.ends + 86400) end
end
return replies
