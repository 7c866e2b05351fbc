-- sluice rate limits, quota and budget of one key and its team. Atomic;
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
-- The calls and replies are declared below by name, in order (the contract:
-- include/sluice/limit_script.h declares the same lists, and
-- tests/unit/test_limit_script.c fails when the two disagree). KEYS share
-- one hash tag (the team's when there is one). Modes:
-- count ('cpeek', 'creset', 'cadd'): one counter alone (COUNT_KEYS,
--   COUNT_ARGS; period kind 1 day, 2 month, 3 total, 4 week; the clock
--   offset is for tests). Reply COUNT_REPLY.
-- batch: BATCH_KEYS (the key alone) or TEAM_KEYS, BATCH_ARGS then with a
--   team TEAM_ARGS, then the number of operations and the operations, each
--   its letter and OP_ARGS[letter], done in order in one call. One reply each:
--   admission ('a'): checks every window, the quota, both budgets and the
--     max_inflight slots, and only if all pass (or force: shadow mode)
--     records the request, reserves the input tokens and the spend and takes
--     a slot. Reply REPLY (dimension 1..3 the key's windows, 4 quota, 5
--     budget, 6..8 team windows, 9 team budget, 10 slots, 11 team slots;
--     retry_ms -1 = never), or COMPACT_REPLY for a key without budget or team.
--   peek ('p'): the same reply, recording nothing.
--   settlement ('s'): corrects the admission's bucket, records output, adds
--     to the admission's periods' quota and budgets, frees the slot. Reply 1.
--   renewal ('r'): the lease's slot expires lease ms from now. Reply 1.
--   A lease is the slot's name, '-' for none.

-- ---- the contract ----
local COUNT_KEYS = { 'counter' }
local BATCH_KEYS = { 'requests', 'input', 'output', 'quota', 'budget', 'slots' }
local TEAM_KEYS = { 'requests', 'input', 'output', 'quota', 'budget', 'team_requests',
  'team_input', 'team_output', 'team_budget', 'slots', 'team_slots' }
local COUNT_ARGS = { 'bucket_ms', 'window_ms', 'mode', 'period', 'clock_offset', 'amount' }
local BATCH_ARGS = { 'bucket_ms', 'window_ms', 'mode', 'rpm', 'input_tpm', 'output_tpm', 'quota',
  'quota_period', 'clock_offset', 'budget', 'budget_period', 'max_inflight', 'lease_ms' }
local TEAM_ARGS = { 'team_rpm', 'team_input_tpm', 'team_output_tpm', 'team_budget',
  'team_budget_period', 'team_max_inflight' }
local OP_ARGS = {
  a = { 'cost', 'force', 'spend', 'lease' },
  p = {},
  s = { 'bucket', 'input_delta', 'output', 'release', 'quota_delta', 'quota_period',
        'spend_delta', 'budget_period', 'team_budget_period', 'lease' },
  r = { 'lease' },
}
local REPLY = { 'admitted', 'dimension', 'limit', 'used', 'requested', 'retry_ms', 'bucket',
  'used_requests', 'reset_requests_ms', 'used_input', 'reset_input_ms', 'used_output',
  'reset_output_ms', 'used_quota', 'quota_reset_ms', 'spent', 'budget_reset_ms', 'team_requests',
  'team_input', 'team_output', 'team_spent', 'team_budget_reset_ms', 'slots', 'team_slots',
  'quota_period', 'budget_period', 'team_budget_period' }
local COMPACT_REPLY = { 'admitted', 'dimension', 'limit', 'used', 'requested', 'retry_ms',
  'bucket', 'used_requests', 'reset_requests_ms', 'used_input', 'reset_input_ms', 'used_output',
  'reset_output_ms', 'used_quota', 'quota_reset_ms', 'slots', 'quota_period' }
local COUNT_REPLY = { 'used', 'reset_ms', 'period' }

-- KEYS and ARGV by name; the first `from` - 1 arguments are taken.
local function named(list, values, from)
  local out = {}
  for i = 1, #list do out[list[i]] = values[from + i - 1] end
  return out
end

-- The mode is where both lists put it.
local function position(list, name)
  for i = 1, #list do if list[i] == name then return i end end
end
local mode = ARGV[position(BATCH_ARGS, 'mode')]
assert(position(COUNT_ARGS, 'mode') == position(BATCH_ARGS, 'mode'))
local arg = named(mode == 'batch' and BATCH_ARGS or COUNT_ARGS, ARGV, 1)
local bucket_ms = tonumber(arg.bucket_ms)
local window_ms = tonumber(arg.window_ms)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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
  local key = named(COUNT_KEYS, KEYS, 1)
  local c = counter_open(key.counter, tonumber(arg.period), tonumber(arg.clock_offset), true)
  if mode == 'creset' then
    redis.call('DEL', c.key)
    c.used = 0
  elseif mode == 'cadd' then
    c.used = counter_add(c.key, tonumber(arg.amount), c.ends)
  end
  local f = { used = c.used, reset_ms = c.reset_ms, period = c.id }
  local out = {}
  for i = 1, #COUNT_REPLY do out[i] = f[COUNT_REPLY[i]] end
  return out
end

local team = #KEYS == #TEAM_KEYS
local key = named(team and TEAM_KEYS or BATCH_KEYS, KEYS, 1)
if team then
  for name, v in pairs(named(TEAM_ARGS, ARGV, #BATCH_ARGS + 1)) do arg[name] = v end
end
local function num(name) return tonumber(arg[name]) or 0 end
local offset = num('clock_offset')
local limits = { num('rpm'), num('input_tpm'), num('output_tpm'), num('team_rpm'),
  num('team_input_tpm'), num('team_output_tpm') }
local wkeys = { key.requests, key.input, key.output, key.team_requests, key.team_input,
  key.team_output }
-- The counters: 1 quota, 2 budget, 3 the team's budget.
local climits = { num('quota'), num('budget'), num('team_budget') }
local ckinds = { num('quota_period'), num('budget_period'), num('team_budget_period') }
-- The slots: 1 the key's, 2 the team's.
local slimits = { num('max_inflight'), num('team_max_inflight') }
local skeys = { key.slots, key.team_slots }
local lease_ms = num('lease_ms')
local first_op = #BATCH_ARGS + (team and #TEAM_ARGS or 0) + 1 -- where n is
local compact = not team and climits[2] <= 0 -- the reply without budget and team fields
local cprefix = { key.quota, key.budget, key.team_budget }
local cdims = { 4, 5, 9 }

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
  local dim = d <= 3 and d or d + 2
  if d % 3 == 0 then
    if used < lim then return nil end
    return { 0, dim, lim, used, want, free_after(d, used - lim + 1) }
  end
  if used + want <= lim then return nil end
  if want > lim then return { 0, dim, lim, used, want, -1 } end
  return { 0, dim, lim, used, want, free_after(d, used + want - lim) }
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
  return { 0, 9 + i, lim, S[i], 1, 1000 }
end

-- Takes (or with xx renews) the lease's slot in every set with a limit.
local function slot_put(lease, xx)
  for i = 1, 2 do
    if slimits[i] > 0 then
      local added = xx and redis.call('ZADD', skeys[i], 'XX', now + lease_ms, lease)
        or redis.call('ZADD', skeys[i], now + lease_ms, lease)
      if added == 1 then S[i] = slots(i) + 1 end
      redis.call('PEXPIRE', skeys[i], lease_ms) -- the set goes with its last lease
    end
  end
end

local function slot_free(lease)
  for i = 1, 2 do
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

-- An admission's or a peek's reply, in the order of REPLY (COMPACT_REPLY).
local function reply(fields)
  local names, out = compact and COMPACT_REPLY or REPLY, {}
  for i = 1, #names do out[i] = fields[names[i]] end
  return out
end

local function admit(cost, spend, force, peek, lease)
  local refusal = nil
  if not peek then
    -- in the order of the dimensions' numbers, as limit_local.c
    refusal = window_refusal(1, 1) or window_refusal(2, cost) or window_refusal(3, 0)
      or counter_refusal(1, cost) or counter_refusal(2, spend)
    if not refusal and team then
      refusal = window_refusal(4, 1) or window_refusal(5, cost) or window_refusal(6, 0)
        or counter_refusal(3, spend)
    end
    refusal = refusal or slot_refusal(1) or slot_refusal(2)
  end
  local q, b, tb = counter(1), counter(2), counter(3)
  if refusal and not force then
    return reply({ admitted = 0, dimension = refusal[2], limit = refusal[3], used = refusal[4],
                   requested = refusal[5], retry_ms = refusal[6], bucket = cur,
                   used_requests = 0, reset_requests_ms = 0, used_input = 0, reset_input_ms = 0,
                   used_output = 0, reset_output_ms = 0, used_quota = q.used,
                   quota_reset_ms = q.reset_ms, spent = b.used, budget_reset_ms = b.reset_ms,
                   team_requests = 0, team_input = 0, team_output = 0, team_spent = tb.used,
                   team_budget_reset_ms = tb.reset_ms, slots = slots(1), team_slots = slots(2),
                   quota_period = q.id, budget_period = b.id, team_budget_period = tb.id })
  end
  if not peek then
    if lease ~= '-' then slot_put(lease, false) end
    for d = 1, team and 6 or 3 do
      local want = (d == 1 or d == 4) and 1 or (d == 2 or d == 5) and cost or 0
      if limits[d] > 0 and want > 0 then wadd(d, cur, want) end
    end
    local amounts = { cost, spend, spend }
    for i = 1, 3 do
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
  local tr, ti, to = 0, 0, 0
  if team then
    tr = window_state(4)
    ti = window_state(5)
    to = window_state(6)
  end
  return reply({ admitted = 1, dimension = r[2], limit = r[3], used = r[4], requested = r[5],
                 retry_ms = r[6], bucket = cur, used_requests = ur, reset_requests_ms = rr,
                 used_input = ui, reset_input_ms = ri, used_output = uo, reset_output_ms = ro,
                 used_quota = q.used, quota_reset_ms = q.reset_ms, spent = b.used,
                 budget_reset_ms = b.reset_ms, team_requests = tr, team_input = ti,
                 team_output = to, team_spent = tb.used, team_budget_reset_ms = tb.reset_ms,
                 slots = slots(1), team_slots = slots(2), quota_period = q.id,
                 budget_period = b.id, team_budget_period = tb.id })
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
                      lease)
  if lease ~= '-' then slot_free(lease) end
  for base = 0, team and 3 or 0, 3 do
    if release and limits[base + 1] > 0 then adjust(base + 1, bucket, -1) end
    if input_delta ~= 0 and limits[base + 2] > 0 then adjust(base + 2, bucket, input_delta) end
    if output > 0 and limits[base + 3] > 0 then wadd(base + 3, cur, output) end
  end
  counter_settle(1, quota_delta, qid)
  counter_settle(2, spend_delta, bid)
  counter_settle(3, spend_delta, tid)
  return 1
end

-- ARGV[first_op] = number of operations, then each: its letter and OP_ARGS[letter].
local n = tonumber(ARGV[first_op])
local replies = {}
local at = first_op + 1
for i = 1, n do
  local op = ARGV[at]
  local o = named(OP_ARGS[op] or OP_ARGS.p, ARGV, at + 1)
  if op == 's' then
    replies[i] = settle(tonumber(o.bucket), tonumber(o.input_delta), tonumber(o.output),
                        o.release == '1', tonumber(o.quota_delta), o.quota_period,
                        tonumber(o.spend_delta), o.budget_period, o.team_budget_period, o.lease)
  elseif op == 'a' then
    replies[i] = admit(tonumber(o.cost), tonumber(o.spend), o.force == '1', false, o.lease)
  elseif op == 'r' then
    if o.lease ~= '-' then slot_put(o.lease, true) end
    replies[i] = 1
  else
    replies[i] = admit(0, 0, false, true)
  end
  at = at + 1 + #(OP_ARGS[op] or OP_ARGS.p)
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
return replies
