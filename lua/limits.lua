-- sluice rate limits, quota and budget of one key, its team and the request's
-- end user (per key, and per team). Atomic;
-- time comes from Redis. See docs/limits.md, docs/quotas.md, docs/budgets.md.
--
-- Windows: one bucketed sliding window per dimension, in a hash. Fields:
--   <bucket index> -> amount, t = total in the window, o = oldest bucket
--   counted, n = newest bucket written.
-- Counters (the quota in tokens, budgets in micro-dollars): one per period,
--   prefix .. ':' .. period id (d<day number>, w<day number of its Monday>,
--   m<yyyymm>, total), expiring a day after its period ends.
--
-- max_inflight slots: a sorted set of leases (member: the lease's name,
--   score: when it expires, ms); expired ones are dropped before counting.
--
-- The calls and replies, by position. The lists below are the contract: each
-- names the positions of one call or reply, in order, and
-- include/sluice/limit_script.h declares the same lists, which limit_redis.c
-- writes and reads by name (tests/unit/test_limit_script.c fails when the two
-- disagree; tests/integration/test_limits_script.py drives this script by the
-- header's names). They are comments, not tables: a table built on every call
-- would cost Redis CPU on every request. KEYS share one hash tag (the team's
-- when there is one).
--
--: COUNT_KEYS counter
--: COUNT_ARGS bucket_ms window_ms mode period clock_offset amount
--: COUNT_REPLY used reset_ms period
--: BATCH_KEYS requests input output quota budget slots
--: TEAM_KEYS requests input output quota budget team_requests team_input team_output
--:   team_budget slots team_slots
--: USER_KEYS user_requests user_input user_output user_budget user_slots
--: TEAM_USER_KEYS team_user_requests team_user_input team_user_output team_user_budget
--:   team_user_slots
--: BATCH_ARGS bucket_ms window_ms mode rpm input_tpm output_tpm quota quota_period
--:   clock_offset budget budget_period max_inflight lease_ms scopes
--: TEAM_ARGS team_rpm team_input_tpm team_output_tpm team_budget team_budget_period
--:   team_max_inflight
--: USER_ARGS user_rpm user_input_tpm user_output_tpm user_budget user_budget_period
--:   user_max_inflight
--: TEAM_USER_ARGS team_user_rpm team_user_input_tpm team_user_output_tpm team_user_budget
--:   team_user_budget_period team_user_max_inflight
--: SPIKE_KEYS spike
--: TEAM_SPIKE_KEYS team_spike
--: SPIKE_ARGS spike_us spike_burst
--: TEAM_SPIKE_ARGS team_spike_us team_spike_burst
--: OP_ARGS.a cost force spend lease deadline
--: OP_ARGS.s bucket input_delta output release quota_delta quota_period spend_delta
--:   budget_period team_budget_period user_budget_period team_user_budget_period lease
--: OP_ARGS.r lease
--: REPLY admitted dimension limit used requested retry_ms bucket used_requests
--:   reset_requests_ms used_input reset_input_ms used_output reset_output_ms used_quota
--:   quota_reset_ms spent budget_reset_ms team_requests team_input team_output team_spent
--:   team_budget_reset_ms slots team_slots quota_period budget_period team_budget_period
--:   user_requests user_input user_output user_spent user_budget_reset_ms user_slots
--:   team_user_requests team_user_input team_user_output team_user_spent
--:   team_user_budget_reset_ms team_user_slots user_budget_period team_user_budget_period
--: COMPACT_REPLY admitted dimension limit used requested retry_ms bucket used_requests
--:   reset_requests_ms used_input reset_input_ms used_output reset_output_ms used_quota
--:   quota_reset_ms slots quota_period
--
-- Modes (ARGV's mode):
-- count ('cpeek', 'creset', 'cadd'): one counter alone (the admin API);
--   period kind 1 day, 2 month, 3 total, 4 week; the clock offset is for tests.
-- batch: BATCH_KEYS (the key alone) or TEAM_KEYS, then USER_KEYS,
--   TEAM_USER_KEYS, SPIKE_KEYS and TEAM_SPIKE_KEYS for the scopes the call
--   has (scopes: 1 team, 2 the end user's per key, 4 per team, 8 the key's
--   spike arrest, 16 the team's; the sum); BATCH_ARGS, then TEAM_ARGS,
--   USER_ARGS, TEAM_USER_ARGS, SPIKE_ARGS, TEAM_SPIKE_ARGS likewise, then the number of operations and
--   the operations, each its letter and OP_ARGS[letter], done in order in one
--   call. One reply each:
--   admission ('a'): checks every window, the quota, both budgets and the
--     max_inflight slots, and only if all pass (or force: shadow mode)
--     records the request, reserves the input tokens and the spend and takes
--     a slot. Reply REPLY (dimension 1..3 the key's windows, 4 quota, 5
--     budget, 6..8 team windows, 9 team budget, 10 slots, 11 team slots,
--     12..16 the user's windows, budget and slots per key, 17..21 per team,
--     22 and 23 the key's and the team's spike arrest;
--     retry_ms -1 = never), or COMPACT_REPLY for a key without budget, team
--     or user.
--     Its deadline (ms in Redis's clock, 0 none) is when sluice gives up
--     waiting and decides without Redis: an admission run after it (Redis
--     was paused or slow) records nothing, and the call answers the error
--     LATE once its other operations are done.
--   peek ('p'): the same reply, recording nothing.
--   settlement ('s'): corrects the admission's bucket, records output, adds
--     to the admission's periods' quota and budgets, frees the slot. Reply 1.
--   renewal ('r'): the lease's slot expires lease ms from now. Reply 1.
--   A lease is the slot's name, '-' for none.
local bucket_ms = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local mode = ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cur = math.floor(now / bucket_ms)
-- The window is the last window_ms / bucket_ms buckets, the current one
-- included: bucket b counts until b * bucket_ms + window_ms, so no wait is
-- ever longer than the window (Retry-After: 60 at most for a minute).
local oldest = math.floor((now - window_ms) / bucket_ms) + 1
local span = math.floor(window_ms / bucket_ms) + 2

-- ---- periods (UTC calendar; H. Hinnant's civil date algorithms) ----
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
local function period(kind, offset)
  local secs = math.floor(now / 1000) + offset
  local day = math.floor(secs / 86400)
  if kind == 1 then return 'd' .. day, (day + 1) * 86400 - offset end
  if kind == 4 then -- ISO week, from Monday; day 0 (1970-01-01) was a Thursday
    local monday = day - (day + 3) % 7
    return 'w' .. monday, (monday + 7) * 86400 - offset
  end
  if kind == 2 then
    local y, m = civil_from_days(day)
    local ny, nm = y, m + 1
    if nm == 13 then ny, nm = y + 1, 1 end
    return 'm' .. (y * 100 + m), days_from_civil(ny, nm) * 86400 - offset
  end
  return 'total', nil
end

-- A counter of the current period: {key, used, reset_ms, id, ends, exists,
-- dirty}. Read from Redis only when `read`.
local function counter_open(prefix, kind, offset, read)
  local id, ends = period(kind, offset)
  local key = prefix .. ':' .. id
  local v = read and redis.call('GET', key)
  return { key = key, used = tonumber(v) or 0, reset_ms = ends and (ends * 1000 - now) or -1,
           id = id, ends = ends, exists = v ~= false and v ~= nil, dirty = false }
end

local function counter_add(key, amount, ends)
  local v = redis.call('INCRBY', key, amount)
  if v < 0 then redis.call('SET', key, 0, 'KEEPTTL'); v = 0 end
  if ends then redis.call('EXPIREAT', key, ends + 86400) end
  return v
end

-- ---- one counter alone (admin API) ----
if mode == 'cpeek' or mode == 'creset' or mode == 'cadd' then
  local c = counter_open(KEYS[1], tonumber(ARGV[4]), tonumber(ARGV[5]), true)
  if mode == 'creset' then
    redis.call('DEL', c.key)
    c.used = 0
  elseif mode == 'cadd' then
    c.used = counter_add(c.key, tonumber(ARGV[6]), c.ends)
  end
  return { c.used, c.reset_ms, c.id }
end

local offset = tonumber(ARGV[9])
local scopes = tonumber(ARGV[14])
local team = scopes % 2 == 1
-- The windows: 1..3 the key's, 4..6 the team's, 7..9 the user's per key, 10..12 per team.
local limits = { tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), 0, 0, 0, 0, 0, 0, 0, 0, 0 }
local wkeys = { KEYS[1], KEYS[2], KEYS[3] }
-- The counters: 1 quota, 2 budget, 3 the team's budget, 4 and 5 the user's.
local climits = { tonumber(ARGV[7]), tonumber(ARGV[10]), 0, 0, 0 }
local ckinds = { tonumber(ARGV[8]), tonumber(ARGV[11]), 0, 0, 0 }
local cprefix = { KEYS[4], KEYS[5] }
-- The slots: 1 the key's, 2 the team's, 3 and 4 the user's.
local slimits = { tonumber(ARGV[12]), 0, 0, 0 }
local skeys = { KEYS[6] }
local lease_ms = tonumber(ARGV[13])
local a, k = 15, 12 -- the next scope's first argument and key
if team then
  wkeys[4], wkeys[5], wkeys[6], cprefix[3] = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
  limits[4], limits[5], limits[6] = tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])
  climits[3], ckinds[3] = tonumber(ARGV[18]), tonumber(ARGV[19])
  slimits[2] = tonumber(ARGV[20])
  skeys = { KEYS[10], KEYS[11] }
  a = 21
else
  k = 7
end
-- An end user's scope: windows w+1..w+3, counter ci, slots si.
local function user_scope(w, ci, si)
  for d = 1, 3 do limits[w + d], wkeys[w + d] = tonumber(ARGV[a + d - 1]), KEYS[k + d - 1] end
  climits[ci], ckinds[ci], cprefix[ci] = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), KEYS[k + 3]
  slimits[si], skeys[si] = tonumber(ARGV[a + 5]), KEYS[k + 4]
  a, k = a + 6, k + 5
end
if math.floor(scopes / 2) % 2 == 1 then user_scope(6, 4, 3) end
if math.floor(scopes / 4) % 2 == 1 then user_scope(9, 5, 4) end
-- Spike arrest, a GCRA: 1 the key's, 2 the team's. Requests at least
-- pint[i] us apart, pburst[i] of them ahead of that; the state is the
-- theoretical arrival time (us) of the next request.
local pint, pburst, pkeys = { 0, 0 }, { 0, 0 }, {}
local function spike_scope(i)
  pint[i], pburst[i], pkeys[i] = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), KEYS[k]
  a, k = a + 2, k + 1
end
if math.floor(scopes / 8) % 2 == 1 then spike_scope(1) end
if scopes >= 16 then spike_scope(2) end
local first_op = a -- where n is
local compact = scopes % 8 == 0 and climits[2] <= 0 -- the reply without budget, team and user fields
local wdims = { 1, 2, 3, 6, 7, 8, 12, 13, 14, 17, 18, 19 }
local cdims = { 4, 5, 9, 15, 20 }
local sdims = { 10, 11, 16, 21 }

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

-- ---- batch: admissions, peeks and settlements of this key, in order ----
-- Each dimension's hash is read once (trimmed), changed in memory by every
-- operation in turn, and written once at the end; the counters likewise.
-- The operations see each other exactly as if they had been separate calls.
local W = {} -- per dimension: total, newest, fresh, pending bucket deltas, stored bucket cache
local function win(d)
  local w = W[d]
  if not w then
    local total, newest, fresh = trim(wkeys[d])
    w = { total = total, newest = newest, stored_newest = newest, fresh = fresh, delta = {},
          seen = {}, dirty = false }
    W[d] = w
  end
  return w
end

-- What bucket b holds, pending changes included; nil if it holds nothing.
local function value(d, b)
  local w = win(d)
  local v = w.seen[b]
  if v == nil then
    v = tonumber(redis.call('HGET', wkeys[d], b)) or false
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

local C = {} -- the counters of the current periods, read once
local NONE = { used = 0, reset_ms = -1, id = '-' }
local function counter(i)
  if climits[i] <= 0 then return NONE end
  if not C[i] then C[i] = counter_open(cprefix[i], ckinds[i], offset, true) end
  return C[i]
end

-- The refusal of window d for `want` (nil if it has room): {0, dimension,
-- limit, used, requested, retry_ms}. The output windows refuse only when
-- already full: a request's output is known when it ends.
local function window_refusal(d, want)
  local lim = limits[d]
  if lim <= 0 then return nil end
  local used = win(d).total
  local dim = wdims[d]
  if d % 3 == 0 then
    if used < lim then return nil end
    return { 0, dim, lim, used, want, free_after(d, used - lim + 1) }
  end
  if used + want <= lim then return nil end
  if want > lim then return { 0, dim, lim, used, want, -1 } end
  return { 0, dim, lim, used, want, free_after(d, used + want - lim) }
end

-- ---- spike arrest ----
local P = {} -- per spike scope: {tat (us), dirty}, read once
local function spike(i)
  if not P[i] then P[i] = { tat = tonumber(redis.call('GET', pkeys[i])) or 0, dirty = false } end
  return P[i]
end

-- Refused while the next arrival time is more than burst spacings away: the
-- limit is burst + 1 at once, used the spacings ahead, retry_ms exact.
local function spike_refusal(i)
  local gap = pint[i]
  if gap <= 0 then return nil end
  local tat = math.max(spike(i).tat, now_us)
  local tau = gap * pburst[i]
  if tat - now_us <= tau then return nil end
  return { 0, 21 + i, pburst[i] + 1, math.ceil((tat - now_us) / gap), 1,
           math.ceil((tat - tau - now_us) / 1000) }
end

local function spike_take()
  for i = 1, 2 do
    if pint[i] > 0 then
      local p = spike(i)
      p.tat, p.dirty = math.max(p.tat, now_us) + pint[i], true
    end
  end
end

-- ---- max_inflight slots ----
local S = {} -- per slot set: the leases it holds, once counted
local function slots(i)
  if slimits[i] <= 0 then return 0 end
  if not S[i] then
    redis.call('ZREMRANGEBYSCORE', skeys[i], '-inf', now) -- leases nobody renewed
    S[i] = redis.call('ZCARD', skeys[i])
  end
  return S[i]
end

-- Full: refused, and only a slot freeing helps (Retry-After 1 s).
local function slot_refusal(i)
  local lim = slimits[i]
  if lim <= 0 or slots(i) < lim then return nil end
  return { 0, sdims[i], lim, S[i], 1, 1000 }
end

-- Takes (or with xx renews) the lease's slot in every set with a limit.
local function slot_put(lease, xx)
  for i = 1, 4 do
    if slimits[i] > 0 then
      local added = xx and redis.call('ZADD', skeys[i], 'XX', now + lease_ms, lease)
        or redis.call('ZADD', skeys[i], now + lease_ms, lease)
      if added == 1 then S[i] = slots(i) + 1 end
      redis.call('PEXPIRE', skeys[i], lease_ms) -- the set goes with its last lease
    end
  end
end

local function slot_free(lease)
  for i = 1, 4 do
    if slimits[i] > 0 and redis.call('ZREM', skeys[i], lease) == 1 and S[i] then
      S[i] = S[i] - 1
    end
  end
end

local function counter_refusal(i, want)
  local lim = climits[i]
  if lim <= 0 then return nil end
  local c = counter(i)
  if c.used + want <= lim then return nil end
  return { 0, cdims[i], lim, c.used, want, -1 }
end

local function window_state(d)
  if limits[d] <= 0 then return 0, 0 end
  local w = win(d)
  return w.total, reset_after(w.total, w.newest)
end

-- The user's scopes' part of a reply: windows (zero for a refusal), budget, slots.
local function user_reply(out, refused)
  for s = 1, 2 do
    local w = 3 + 3 * s
    for d = 1, 3 do
      out[#out + 1] = (refused or limits[w + d] <= 0) and 0 or win(w + d).total
    end
    local c = counter(3 + s)
    out[#out + 1] = c.used
    out[#out + 1] = c.reset_ms
    out[#out + 1] = slots(2 + s)
  end
  out[#out + 1] = counter(4).id
  out[#out + 1] = counter(5).id
  return out
end

local function admit(cost, spend, force, peek, lease)
  local refusal = nil
  if not peek then
    -- the spike arrests, then key, team, the user's per key and per team, then the slots;
    -- as limit_local.c
    refusal = spike_refusal(1) or spike_refusal(2)
    for base = 0, 9, 3 do
      local ci = base == 0 and 2 or 2 + base / 3
      refusal = refusal or window_refusal(base + 1, 1) or window_refusal(base + 2, cost)
        or window_refusal(base + 3, 0) or (base == 0 and counter_refusal(1, cost))
        or counter_refusal(ci, spend)
    end
    refusal = refusal or slot_refusal(1) or slot_refusal(2) or slot_refusal(3) or slot_refusal(4)
  end
  local q, b, tb = counter(1), counter(2), counter(3)
  if refusal and not force then
    if compact then
      return { refusal[1], refusal[2], refusal[3], refusal[4], refusal[5], refusal[6], cur,
               0, 0, 0, 0, 0, 0, q.used, q.reset_ms, slots(1), q.id }
    end
    return user_reply({ refusal[1], refusal[2], refusal[3], refusal[4], refusal[5], refusal[6], cur,
             0, 0, 0, 0, 0, 0, q.used, q.reset_ms, b.used, b.reset_ms, 0, 0, 0, tb.used,
             tb.reset_ms, slots(1), slots(2), q.id, b.id, tb.id }, true)
  end
  if not peek then
    spike_take()
    if lease ~= '-' then slot_put(lease, false) end
    for d = 1, 12 do
      local want = d % 3 == 1 and 1 or d % 3 == 2 and cost or 0
      if limits[d] > 0 and want > 0 then wadd(d, cur, want) end
    end
    local amounts = { cost, spend, spend, spend, spend }
    for i = 1, 5 do
      local c = counter(i)
      if climits[i] > 0 and amounts[i] > 0 then
        c.used, c.exists, c.dirty = c.used + amounts[i], true, true
      end
    end
  end
  local r = refusal or { 1, 0, 0, 0, 0, 0 }
  local ur, rr = window_state(1)
  local ui, ri = window_state(2)
  local uo, ro = window_state(3)
  if compact then
    return { 1, r[2], r[3], r[4], r[5], r[6], cur, ur, rr, ui, ri, uo, ro, q.used, q.reset_ms,
             slots(1), q.id }
  end
  local tr, ti, to = 0, 0, 0
  if team then
    tr = window_state(4)
    ti = window_state(5)
    to = window_state(6)
  end
  return user_reply({ 1, r[2], r[3], r[4], r[5], r[6], cur, ur, rr, ui, ri, uo, ro,
           q.used, q.reset_ms, b.used, b.reset_ms, tr, ti, to, tb.used, tb.reset_ms,
           slots(1), slots(2), q.id, b.id, tb.id }, false)
end

-- Changes the admission's bucket by delta if it is still counted, never below zero.
local function adjust(d, bucket, delta)
  if bucket < oldest then return end
  local v = value(d, bucket)
  if v == nil then return end -- trimmed or reset meanwhile
  if v + delta < 0 then delta = -v end
  if delta ~= 0 then wadd(d, bucket, delta) end
end

-- Adds to the counter of the admission's period, never below 0. A counter
-- this call has read is changed in memory; any other is changed in place,
-- without reading it first (a settlement alone costs one INCRBY).
local function counter_settle(i, delta, period_id)
  if climits[i] <= 0 or delta == 0 then return end
  local c = C[i]
  if c and period_id == c.id then
    c.used, c.exists, c.dirty = math.max(c.used + delta, 0), true, true
    return
  end
  local id, ends = period(ckinds[i], offset)
  local key = cprefix[i] .. ':' .. period_id
  if period_id ~= id then -- the admission's period has ended since: only if it is still kept
    if redis.call('EXISTS', key) == 1 then counter_add(key, delta, nil) end
    return
  end
  local v = redis.call('INCRBY', key, delta)
  if v < 0 then
    redis.call('SET', key, 0, 'KEEPTTL')
  end
  if (v < 0 or v == delta) and ends then -- it may have been made just now: its expiry
    redis.call('EXPIREAT', key, ends + 86400)
  end
end

local function settle(bucket, input_delta, output, release, quota_delta, qid, spend_delta, bid, tid,
                      uid, tuid, lease)
  if lease ~= '-' then slot_free(lease) end
  for base = 0, 9, 3 do
    if release and limits[base + 1] > 0 then adjust(base + 1, bucket, -1) end
    if input_delta ~= 0 and limits[base + 2] > 0 then adjust(base + 2, bucket, input_delta) end
    if output > 0 and limits[base + 3] > 0 then wadd(base + 3, cur, output) end
  end
  counter_settle(1, quota_delta, qid)
  counter_settle(2, spend_delta, bid)
  counter_settle(3, spend_delta, tid)
  counter_settle(4, spend_delta, uid)
  counter_settle(5, spend_delta, tuid)
  return 1
end

-- ARGV[first_op] = number of operations, then each with its arguments
-- (lease: the slot's name, '-' for none):
--   'a', cost, force, spend, lease, deadline         admission
--   'p'                                              peek
--   's', bucket, input delta, output, release, quota delta, quota period id,
--        spend delta, budget period id, team budget period id, the user's
--        budget period ids (per key, per team), lease                settlement
--   'r', lease                                       renewal
local n = tonumber(ARGV[first_op])
local replies = {}
local late = false
local a = first_op + 1
for i = 1, n do
  local op = ARGV[a]
  if op == 's' then
    replies[i] = settle(tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]),
                        ARGV[a + 4] == '1', tonumber(ARGV[a + 5]), ARGV[a + 6],
                        tonumber(ARGV[a + 7]), ARGV[a + 8], ARGV[a + 9], ARGV[a + 10],
                        ARGV[a + 11], ARGV[a + 12])
    a = a + 13
  elseif op == 'a' then
    local deadline = tonumber(ARGV[a + 5])
    if deadline > 0 and now > deadline then
      late, replies[i] = true, 0
    else
      replies[i] = admit(tonumber(ARGV[a + 1]), tonumber(ARGV[a + 3]), ARGV[a + 2] == '1', false,
                         ARGV[a + 4])
    end
    a = a + 6
  elseif op == 'r' then
    if ARGV[a + 1] ~= '-' then slot_put(ARGV[a + 1], true) end
    replies[i] = 1
    a = a + 2
  else
    replies[i] = admit(0, 0, false, true)
    a = a + 1
  end
end

-- A hash lives window + 2 buckets past the first write into its newest
-- bucket: until that bucket has left the window. Writes into a bucket it
-- already has leave its expiry as it is.
for d, w in pairs(W) do
  if w.dirty then
    local key = wkeys[d]
    for b, v in pairs(w.delta) do redis.call('HINCRBY', key, b, v) end
    if w.fresh then
      redis.call('HSET', key, 't', w.total, 'n', w.newest, 'o', oldest)
    elseif w.newest ~= w.stored_newest then
      redis.call('HSET', key, 't', w.total, 'n', w.newest)
    else
      redis.call('HSET', key, 't', w.total)
    end
    if w.fresh or w.newest ~= w.stored_newest then
      redis.call('PEXPIRE', key, window_ms + 2 * bucket_ms)
    end
  end
end
for _, c in pairs(C) do
  if c.dirty then
    if c.ends then
      redis.call('SET', c.key, c.used, 'EXAT', c.ends + 86400)
    else
      redis.call('SET', c.key, c.used)
    end
  end
end
for i, p in pairs(P) do
  if p.dirty then -- kept until it no longer delays anyone
    redis.call('SET', pkeys[i], string.format('%.0f', p.tat), 'PX',
               math.ceil((p.tat - now_us) / 1000) + 1)
  end
end
if late then
  return redis.error_reply('LATE an admission ran after its deadline: it recorded nothing')
end
return replies
