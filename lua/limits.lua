-- sluice rate limits, quota and budget of one key, its team and the request's
-- end user (per key, and per team). Atomic;
-- time comes from Redis. See docs/limits.md, docs/quotas.md, docs/budgets.md.
--
-- Windows: one bucketed sliding window per dimension; a scope's three
--   (requests, input and output tokens) share one string, read and written
--   once per call: a header of little-endian doubles (the three totals, each
--   window's newest bucket, the oldest bucket counted, the newest bucket
--   written), then a ring of `span` slots, bucket b in slot b % span, each
--   the three amounts. Slots of buckets from the oldest counted to the newest
--   written hold their amounts; the others are stale, and are zeroed when the
--   newest bucket moves onto them.
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
--: BATCH_KEYS windows quota budget slots
--: TEAM_KEYS windows quota budget team_windows team_budget slots team_slots
--: USER_KEYS user_windows user_budget user_slots
--: TEAM_USER_KEYS team_user_windows team_user_budget team_user_slots
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
--
-- One text, two ways to run it: EVAL runs it whole on every call (its last
-- lines call run), while sluice loads it once as a function library, with a
-- first line naming the library and FUNCTION_NAME (limit_redis.c), and
-- calls run by FCALL: the helpers below are then made once, not per call.
-- So nothing of a call may outlive it: run sets the state below afresh, and
-- empties or overwrites the tables it reuses. Only NUMS (the numbers of
-- argument texts) is kept from call to call, and it is a pure cache.

-- ---- a call's state (set by run) ----
local EVAL_KEYS, EVAL_ARGV -- EVAL's globals (a library has none)
if not redis.register_function then EVAL_KEYS, EVAL_ARGV = KEYS, ARGV end
local KEYS, ARGV
local bucket_ms, window_ms, now, now_us, cur, oldest, span
local offset, scopes, team, limits, gkeys, climits, ckinds, cprefix, slimits, skeys, lease_ms
local a, k -- setup: the next scope's first argument and key
local pint, pburst, pkeys, compact, on
local any_spike, any_slot, any_counter -- the call has a spike arrest, a slot limit, a counter
local G, C, P, S -- what the call read and changed: scopes, counters, spike arrests, slot sets

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

-- Argument numbers: a library remembers the texts it has read (a key's
-- limits are the same on every call, buckets and token counts repeat, and
-- strtod costs more than the lookup), at most NUMS_MAX of them. A
-- deadline is new on every call: tonumber.
local NUMS, nnums, NUMS_MAX = {}, 0, 1024
local function num(text)
  local v = NUMS[text]
  if v == nil then
    v = tonumber(text)
    if nnums >= NUMS_MAX then NUMS, nnums = {}, 0 end
    NUMS[text], nnums = v, nnums + 1
  end
  return v
end

-- ---- one counter alone (admin API) ----
local function count(mode)
  local c = counter_open(KEYS[1], tonumber(ARGV[4]), tonumber(ARGV[5]), true)
  if mode == 'creset' then
    redis.call('DEL', c.key)
    c.used = 0
  elseif mode == 'cadd' then
    c.used = counter_add(c.key, tonumber(ARGV[6]), c.ends)
  end
  return { c.used, c.reset_ms, c.id }
end

-- ---- a batch's limits, from its arguments ----
-- An end user's scope: windows w+1..w+3 (scope w / 3 + 1), counter ci, slots si.
local function user_scope(w, ci, si)
  for d = 1, 3 do limits[w + d] = num(ARGV[a + d - 1]) end
  gkeys[w / 3 + 1] = KEYS[k]
  climits[ci], ckinds[ci], cprefix[ci] = num(ARGV[a + 3]), num(ARGV[a + 4]), KEYS[k + 1]
  slimits[si], skeys[si] = num(ARGV[a + 5]), KEYS[k + 2]
  a, k = a + 6, k + 3
end
-- Spike arrest, a GCRA: 1 the key's, 2 the team's. Requests at least
-- pint[i] us apart, pburst[i] of them ahead of that; the state is the
-- theoretical arrival time (us) of the next request.
local function spike_scope(i)
  pint[i], pburst[i], pkeys[i] = num(ARGV[a]), num(ARGV[a + 1]), KEYS[k]
  a, k = a + 2, k + 1
end

-- The tables of a call, made once (a library's calls share them; run sets
-- every entry a call reads).
limits, climits, ckinds, slimits = {}, {}, {}, {}
gkeys, cprefix, skeys, pkeys = {}, {}, {}, {}
pint, pburst, on = {}, {}, {}
G, C, P, S = {}, {}, {}, {}

local function clear(t)
  for i in pairs(t) do t[i] = nil end
end

-- Reads the limits of every scope the call has; returns where its operations begin.
local function setup()
  offset = num(ARGV[9])
  scopes = num(ARGV[14])
  team = scopes % 2 == 1
  -- The windows: 1..3 the key's, 4..6 the team's, 7..9 the user's per key,
  -- 10..12 per team; each scope's in gkeys (window d is scope (d - 1) / 3 + 1's).
  for d = 4, 12 do limits[d] = 0 end
  limits[1], limits[2], limits[3], gkeys[1] = num(ARGV[4]), num(ARGV[5]),
    num(ARGV[6]), KEYS[1]
  -- The counters: 1 quota, 2 budget, 3 the team's budget, 4 and 5 the user's.
  climits[1], climits[2], climits[3], climits[4], climits[5] = num(ARGV[7]),
    num(ARGV[10]), 0, 0, 0
  ckinds[1], ckinds[2], cprefix[1], cprefix[2] = num(ARGV[8]), num(ARGV[11]), KEYS[2], KEYS[3]
  -- The slots: 1 the key's, 2 the team's, 3 and 4 the user's.
  slimits[1], slimits[2], slimits[3], slimits[4], skeys[1] = num(ARGV[12]), 0, 0, 0, KEYS[4]
  lease_ms = num(ARGV[13])
  a, k = 15, 8
  if team then
    gkeys[2], cprefix[3] = KEYS[4], KEYS[5]
    limits[4], limits[5], limits[6] = num(ARGV[15]), num(ARGV[16]), num(ARGV[17])
    climits[3], ckinds[3] = num(ARGV[18]), num(ARGV[19])
    slimits[2] = num(ARGV[20])
    skeys[1], skeys[2] = KEYS[6], KEYS[7]
    a = 21
  else
    k = 5
  end
  -- on[s]: the call has scope s (1 the key, 2 its team, 3 and 4 the user's)
  on[1], on[2], on[3], on[4] = true, team, scopes % 4 >= 2, scopes % 8 >= 4
  if on[3] then user_scope(6, 4, 3) end
  if on[4] then user_scope(9, 5, 4) end
  pint[1], pint[2], pburst[1], pburst[2] = 0, 0, 0, 0
  if scopes % 16 >= 8 then spike_scope(1) end
  if scopes >= 16 then spike_scope(2) end
  compact = scopes % 8 == 0 and climits[2] <= 0 -- the reply without budget, team and user fields
  any_spike = pint[1] > 0 or pint[2] > 0
  any_slot = slimits[1] > 0 or slimits[2] > 0 or slimits[3] > 0 or slimits[4] > 0
  any_counter = climits[1] > 0 or climits[2] > 0 or climits[3] > 0 or climits[4] > 0 or climits[5] > 0
  clear(G)
  clear(C)
  clear(P)
  clear(S)
  return a
end
local wdims = { 1, 2, 3, 6, 7, 8, 12, 13, 14, 17, 18, 19 }
local cdims = { 4, 5, 9, 15, 20 }
local sdims = { 10, 11, 16, 21 }

-- ---- windows ----
-- A scope's string: the header (HFMT: the three totals, each window's newest
-- bucket, the oldest bucket counted o, the newest bucket written n, bucket
-- n's three amounts, the ring's size), then the ring: bucket b < n in slot
-- b % span (SFMT), from byte HLEN. A call reads the header, and a slot only
-- when it needs one: an admission into the newest bucket reads and writes
-- the header alone.
-- Window d's scope and its place there (1 requests, 2 input, 3 output).
local SOF, JOF = { 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4 }, { 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3 }
local HFMT, SFMT, HLEN, SLEN = '<dddddddddddd', '<ddd', 96, 24
local HLAST = '95' -- HLEN - 1 as Redis reads it: a number would be formatted on every call
-- G[s]: scope s as the call read and changed it: g[1..3] the totals, g[4..6]
-- each window's newest bucket, g[7..9] bucket n's amounts, g.o, g.n; the
-- slots read or changed (vals, dirty: made when first needed), the whole
-- string (all) when read.

-- The whole ring, read at once (a refusal's wait, a long trim).
local function ring(g)
  if g.all == nil then g.all = redis.call('GET', gkeys[g.s]) or '' end
  return g.all
end

-- The amounts of bucket b < n's slot (a table of three, cached).
local function slot(g, b)
  local i = b % span
  local vals = g.vals
  if not vals then
    vals, g.dirty = {}, {}
    g.vals = vals
  end
  local v = vals[i]
  if not v then
    local off = HLEN + i * SLEN
    local raw = g.all
    if raw then
      raw = string.sub(raw, off + 1, off + SLEN)
    elseif g.stored then
      raw = redis.call('GETRANGE', gkeys[g.s], off, off + SLEN - 1)
    end
    if raw and #raw == SLEN then v = { struct.unpack(SFMT, raw) } else v = { 0, 0, 0 } end
    vals[i] = v
  end
  return v
end

-- Sets bucket b's slot (b < n) to v, to be written.
local function slot_set(g, b, v)
  if not g.vals then g.vals, g.dirty = {}, {} end
  g.vals[b % span], g.dirty[b % span] = v, true
end

-- Scope s's windows, with the buckets that left the window taken out of the totals.
local function scope(s)
  local g = G[s]
  if g then return g end
  g = { 0, 0, 0, 0, 0, 0, 0, 0, 0, s = s, changed = false, moved = false, stored = false }
  G[s] = g
  local h = redis.call('GETRANGE', gkeys[s], '0', HLAST)
  local o, n, size
  if #h == HLEN then
    g[1], g[2], g[3], g[4], g[5], g[6], o, n, g[7], g[8], g[9], size = struct.unpack(HFMT, h)
  end
  if size == span and n <= cur then
    g.stored, g.o, g.n = true, o, n
  else -- none yet, kept for another window, or from ahead of Redis's clock: empty
    if #h > 0 then redis.call('DEL', gkeys[s]) end
    for j = 1, 9 do g[j] = 0 end
    g.o, g.n = cur, cur - 1
  end
  if g.o < oldest then
    if g.n < oldest then -- all of it left: empty, from now on
      g[1], g[2], g[3], g[7], g[8], g[9], g.o, g.n = 0, 0, 0, 0, 0, 0, cur, cur - 1
      return g
    end
    if oldest - g.o > 2 then ring(g) end
    for b = g.o, oldest - 1 do -- b < n
      local v = slot(g, b)
      g[1], g[2], g[3] = g[1] - v[1], g[2] - v[2], g[3] - v[3]
    end
    g.o = oldest -- stored only with a change: until then the next call trims the same
  end
  return g
end

local function total(d)
  return scope(SOF[d])[JOF[d]]
end

-- What bucket b holds in window d; nil if it is not counted.
local function value(d, b)
  local g = scope(SOF[d])
  if b < g.o or b > g.n then return nil end
  if b == g.n then return g[6 + JOF[d]] end
  return slot(g, b)[JOF[d]]
end

-- Adds to bucket b (o <= b <= cur) of window d.
local function wadd(d, b, amount)
  local g, j = scope(SOF[d]), JOF[d]
  if b > g.n then -- the newest bucket moves: the old one goes to its slot, those between are empty
    if g.n >= g.o then slot_set(g, g.n, { g[7], g[8], g[9] }) end
    for nb = math.max(g.n + 1, g.o), b - 1 do slot_set(g, nb, { 0, 0, 0 }) end
    g[7], g[8], g[9], g.n, g.moved = 0, 0, 0, b, true
  end
  if b == g.n then
    g[6 + j] = g[6 + j] + amount
  else
    local v = slot(g, b)
    v[j] = v[j] + amount
    g.dirty[b % span] = true
  end
  g.changed = true
  g[j] = g[j] + amount
  if b > g[3 + j] then g[3 + j] = b end
end

-- Writes what the call changed: the header, the changed slots (one SETRANGE
-- per run of neighbours), or a new string whole; the string lives until
-- bucket n has left the window.
local function store(g)
  local key = gkeys[g.s]
  local head = struct.pack(HFMT, g[1], g[2], g[3], g[4], g[5], g[6], g.o, g.n, g[7], g[8], g[9], span)
  if not g.stored then -- a new string, whole: Redis sizes it once (SETRANGE would grow it with slack)
    local zero, parts = struct.pack(SFMT, 0, 0, 0), { head }
    for i = 0, span - 1 do
      local v = g.dirty and g.dirty[i] and g.vals[i]
      parts[i + 2] = v and struct.pack(SFMT, v[1], v[2], v[3]) or zero
    end
    redis.call('SET', key, table.concat(parts), 'PX', window_ms + 2 * bucket_ms)
    return
  end
  redis.call('SETRANGE', key, '0', head)
  if g.dirty then
    local idx = {}
    for i in pairs(g.dirty) do idx[#idx + 1] = i end
    table.sort(idx)
    local k = 1
    while k <= #idx do
      local parts, first = {}, idx[k]
      repeat
        local v = g.vals[idx[k]]
        parts[#parts + 1] = struct.pack(SFMT, v[1], v[2], v[3])
        k = k + 1
      until k > #idx or idx[k] ~= idx[k - 1] + 1
      redis.call('SETRANGE', key, HLEN + first * SLEN, table.concat(parts))
    end
  end
  if g.moved then redis.call('PEXPIRE', key, window_ms + 2 * bucket_ms) end
end

local function reset_after(t, newest)
  if t <= 0 then return 0 end
  return math.max(newest * bucket_ms + window_ms - now, 0)
end

-- Milliseconds until `need` of the amount in the window has left it.
local function free_after(d, need)
  ring(scope(SOF[d]))
  local freed = 0
  for b = oldest, cur do
    freed = freed + (value(d, b) or 0)
    if freed >= need then return b * bucket_ms + window_ms - now end
  end
  return window_ms
end

-- C: the counters of the current periods, read once
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
  local used = total(d)
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
-- P: per spike scope, {tat (us), dirty}, read once
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
-- S: per slot set, the leases it holds, once counted
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
  local g = scope(SOF[d])
  local j = JOF[d]
  return g[j], reset_after(g[j], g[3 + j])
end

-- The user's scopes' part of a reply: windows (zero for a refusal), budget, slots.
local function user_reply(out, refused)
  for s = 1, 2 do
    local w = 3 + 3 * s
    for d = 1, 3 do
      out[#out + 1] = (refused or limits[w + d] <= 0) and 0 or total(w + d)
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
    if any_spike then refusal = spike_refusal(1) or spike_refusal(2) end
    for base = 0, 9, 3 do
      if on[base / 3 + 1] then
        local ci = base == 0 and 2 or 2 + base / 3
        refusal = refusal or window_refusal(base + 1, 1) or window_refusal(base + 2, cost)
          or window_refusal(base + 3, 0) or (base == 0 and counter_refusal(1, cost))
          or counter_refusal(ci, spend)
      end
    end
    if any_slot then
      refusal = refusal or slot_refusal(1) or slot_refusal(2) or slot_refusal(3) or slot_refusal(4)
    end
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
    if any_spike then spike_take() end
    if lease ~= '-' then slot_put(lease, false) end
    for base = 0, 9, 3 do
      if limits[base + 1] > 0 then wadd(base + 1, cur, 1) end
      if limits[base + 2] > 0 and cost > 0 then wadd(base + 2, cur, cost) end
    end
    for i = 1, any_counter and 5 or 0 do
      local amount = i == 1 and cost or spend
      if climits[i] > 0 and amount > 0 then
        local c = counter(i)
        c.used, c.exists, c.dirty = c.used + amount, true, true
      end
    end
  end
  local ur, rr = window_state(1)
  local ui, ri = window_state(2)
  local uo, ro = window_state(3)
  if compact and not refusal then
    return { 1, 0, 0, 0, 0, 0, cur, ur, rr, ui, ri, uo, ro, q.used, q.reset_ms, slots(1), q.id }
  end
  local r = refusal or { 1, 0, 0, 0, 0, 0 }
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
  if any_counter then
    counter_settle(1, quota_delta, qid)
    counter_settle(2, spend_delta, bid)
    counter_settle(3, spend_delta, tid)
    counter_settle(4, spend_delta, uid)
    counter_settle(5, spend_delta, tuid)
  end
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
local function batch(first_op)
    local n = num(ARGV[first_op])
  local replies = {}
  local late = false
  local a = first_op + 1
  for i = 1, n do
    local op = ARGV[a]
    if op == 's' then
      replies[i] = settle(num(ARGV[a + 1]), num(ARGV[a + 2]), num(ARGV[a + 3]),
                          ARGV[a + 4] == '1', num(ARGV[a + 5]), ARGV[a + 6],
                          num(ARGV[a + 7]), ARGV[a + 8], ARGV[a + 9], ARGV[a + 10],
                          ARGV[a + 11], ARGV[a + 12])
      a = a + 13
    elseif op == 'a' then
      local deadline = tonumber(ARGV[a + 5])
      if deadline > 0 and now > deadline then
        late, replies[i] = true, 0
      else
        replies[i] = admit(num(ARGV[a + 1]), num(ARGV[a + 3]), ARGV[a + 2] == '1', false,
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

  for _, g in pairs(G) do
    if g.changed then store(g) end
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
end

-- One call: the clock, then a counter alone or a batch.
local function run(keys, argv)
  KEYS, ARGV = keys, argv
  bucket_ms, window_ms = num(ARGV[1]), num(ARGV[2])
  local t = redis.call('TIME')
  local secs, micros = tonumber(t[1]), tonumber(t[2])
  -- (x - x % y) / y is floor(x / y) without a call of math.floor
  now = secs * 1000 + (micros - micros % 1000) / 1000
  now_us = secs * 1000000 + micros
  cur = (now - now % bucket_ms) / bucket_ms
  -- The window is the last window_ms / bucket_ms buckets, the current one
  -- included: bucket b counts until b * bucket_ms + window_ms, so no wait is
  -- ever longer than the window (Retry-After: 60 at most for a minute).
  oldest = (now - window_ms - (now - window_ms) % bucket_ms) / bucket_ms + 1
  span = (window_ms - window_ms % bucket_ms) / bucket_ms + 2
  local mode = ARGV[3]
  if mode == 'cpeek' or mode == 'creset' or mode == 'cadd' then return count(mode) end
  return batch(setup())
end

if redis.register_function then
  redis.register_function(FUNCTION_NAME, run)
else
  return run(EVAL_KEYS, EVAL_ARGV)
end
