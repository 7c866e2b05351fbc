"""lua/limits.lua on a real redis-server: a batch of operations in one call
(how sluice sends the admissions, peeks and settlements of one key made in
one loop pass) answers and leaves exactly what the same operations sent one
call each would. Every test runs the script both ways sluice does: as the
function library it loads (FCALL) and as a script (EVALSHA, for a Redis
without functions)."""
import hashlib
import random
import re
import time

import pytest

from harness import ROOT

SCRIPT = (ROOT / "lua" / "limits.lua").read_text()
CONTRACT = (ROOT / "include" / "sluice" / "limit_script.h").read_text()


def contract(macro):
    """One list of the script's contract (include/sluice/limit_script.h), in
    order: its rows' (name, the numbers after it)."""
    m = re.search(r"#define %s\(X\)((?:.*\\\n)*.*)" % macro, CONTRACT)
    return [(name, [int(n) for n in rest.split(",") if n.strip().isdigit()])
            for name, rest in re.findall(r"X\((?:[A-Z_]+, )?([a-z_]+)([^)]*)\)", m.group(1))]


REPLY = [name for name, _ in contract("LS_REPLY")]
COMPACT = [name for name, (text, compact) in contract("LS_REPLY") if compact]
BATCH_ARGS = [name for name, _ in contract("LS_BATCH_ARGS")]
TEAM_ARGS = [name for name, _ in contract("LS_TEAM_ARGS")]
USER_ARGS = [name for name, _ in contract("LS_USER_ARGS")]
TEAM_USER_ARGS = [name for name, _ in contract("LS_TEAM_USER_ARGS")]
SETTLE_ARGS = [name for name, _ in contract("LS_SETTLE_ARGS")]
ADMIT_ARGS = [name for name, _ in contract("LS_ADMIT_ARGS")]


@pytest.fixture(params=["fcall", "evalsha"])
def sha(request, redis):
    """What the calls name: the library's function (loaded as limit_redis.c
    does, its name from the script's SHA-1) or the script's SHA-1."""
    digest = hashlib.sha1(SCRIPT.encode()).hexdigest()
    if request.param == "evalsha":
        assert redis.call("SCRIPT", "LOAD", SCRIPT) == digest
        return digest
    name = f"sluice_{digest[:16]}"
    library = f"#!lua name={name}\nlocal FUNCTION_NAME = '{name}'\n{SCRIPT}"
    assert redis.call("FUNCTION", "LOAD", "REPLACE", library) == name
    return name


def slot(reply, name):
    """A reply's slot by its name, from the long reply or the compact one."""
    return reply[(COMPACT if len(reply) == len(COMPACT) else REPLY).index(name)]


def slots(reply, *names):
    return [slot(reply, n) for n in names]
BUCKET_MS, WINDOW_MS = 60000, 3600000  # minute buckets: a run never straddles one
LIMITS = {"rpm": 12, "input_tpm": 150, "output_tpm": 60, "quota": 400, "period": 1,
          "budget": 5000, "budget_period": 1}
TEAM = {"rpm": 20, "input_tpm": 100, "output_tpm": 20, "budget": 3000, "budget_period": 4}
# reply slots that do not depend on the millisecond the call ran
STABLE = ["admitted", "dimension", "limit", "used", "requested", "bucket", "used_requests",
          "used_input", "used_output", "used_quota", "spent", "team_requests", "team_input",
          "team_output", "team_spent", "slots", "team_slots", "quota_period", "budget_period",
          "team_budget_period", "user_requests", "user_input", "user_output", "user_spent",
          "user_slots", "team_user_requests", "team_user_input", "team_user_output",
          "team_user_spent", "team_user_slots", "user_budget_period", "team_user_budget_period"]
# an end user's own limits, per key and per team (runs 3 and 5)
USER = {"rpm": 6, "input_tpm": 80, "output_tpm": 30, "budget": 2000, "budget_period": 1}
TEAM_USER = {"rpm": 15, "input_tpm": 90, "output_tpm": 40, "budget": 2500, "budget_period": 4}
LEASE_MS = 30000


def names(key, team, user=None, scopes=0):
    """The Redis keys sluice uses (limit_redis.c): the team's hash tag when there is one;
    an end user's after the key's or the team's."""
    own = f"sluice:{{{team}}}:k:{key}:" if team else f"sluice:{{{key}}}:"
    keys = [own + d for d in "wqb"]
    if team:
        keys += [f"sluice:{{{team}}}:t:{d}" for d in "wb"]
    keys.append(own + "f")  # the max_inflight leases
    if team:
        keys.append(f"sluice:{{{team}}}:t:f")
    if scopes & 2:
        keys += [f"{own}u{len(user)}:{user}:{d}" for d in "wbf"]
    if scopes & 4:
        keys += [f"sluice:{{{team}}}:t:u{len(user)}:{user}:{d}" for d in "wbf"]
    return keys


def user_values(prefix, u):
    return {f"{prefix}rpm": u.get("rpm", 0), f"{prefix}input_tpm": u.get("input_tpm", 0),
            f"{prefix}output_tpm": u.get("output_tpm", 0), f"{prefix}budget": u.get("budget", 0),
            f"{prefix}budget_period": u.get("budget_period", 1),
            f"{prefix}max_inflight": u.get("max_inflight", 0)}


def batch(redis, sha, key, ops, team=None, team_limits=TEAM, limits=LIMITS, user=None,
          user_limits=None, team_user_limits=None):
    scopes = (1 if team else 0) | (2 if user and user_limits else 0) | \
        (4 if user and team and team_user_limits else 0)
    keys = names(key, team, user, scopes)
    value = {"bucket_ms": BUCKET_MS, "window_ms": WINDOW_MS, "mode": "batch",
             "rpm": limits["rpm"], "input_tpm": limits["input_tpm"],
             "output_tpm": limits["output_tpm"], "quota": limits["quota"],
             "quota_period": limits["period"], "clock_offset": 0, "budget": limits["budget"],
             "budget_period": limits["budget_period"],
             "max_inflight": limits.get("max_inflight", 0),
             "lease_ms": limits.get("lease_ms", LEASE_MS), "scopes": scopes}
    if team:  # the team's limits only with a team
        t = team_limits
        value.update(team_rpm=t["rpm"], team_input_tpm=t["input_tpm"],
                     team_output_tpm=t["output_tpm"], team_budget=t["budget"],
                     team_budget_period=t["budget_period"],
                     team_max_inflight=t.get("max_inflight", 0))
    args = ["FCALL" if sha.startswith("sluice_") else "EVALSHA", sha, len(keys)] + keys
    if scopes & 2:
        value.update(user_values("user_", user_limits))
    if scopes & 4:
        value.update(user_values("team_user_", team_user_limits))
    args += [value[name] for name in BATCH_ARGS + (TEAM_ARGS if team else []) +
             (USER_ARGS if scopes & 2 else []) + (TEAM_USER_ARGS if scopes & 4 else [])]
    args.append(len(ops))
    for op in ops:
        args += op
    return redis.call(*args)


def admission(cost, spend=0, lease="-", deadline=0):
    given = {"cost": cost, "force": 0, "spend": spend, "lease": lease, "deadline": deadline}
    return ["a"] + [given[name] for name in ADMIT_ARGS]


def settlement(**given):
    """A settlement operation; what is not given is 0 (a period id or lease: '-')."""
    return ["s"] + [given.get(name, "-" if "period" in name or name == "lease" else 0)
                    for name in SETTLE_ARGS]


def operations(rng, bucket, periods, n):
    ops = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            ops.append(admission(rng.randint(1, 40), rng.randint(0, 600)))
        elif r < 0.6:
            ops.append(["p"])
        else:  # a settlement of an admission made in this bucket
            release = rng.random() < 0.2
            ops.append(settlement(bucket=bucket, input_delta=rng.randint(-30, 30),
                                  output=0 if release else rng.randint(0, 25),
                                  release=1 if release else 0, quota_delta=rng.randint(-20, 40),
                                  quota_period=periods[0], spend_delta=rng.randint(-400, 300),
                                  budget_period=periods[1], team_budget_period=periods[2]))
    return ops


def state(redis, key, team):
    keys = names(key, team)
    day = int(time.time()) // 86400
    week = day - (day + 3) % 7
    windows = [redis.windows(keys[0])]
    counters = [redis.call("GET", f"{keys[1]}:d{day}"), redis.call("GET", f"{keys[2]}:d{day}")]
    if team:
        windows.append(redis.windows(keys[3]))
        counters.append(redis.call("GET", f"{keys[4]}:w{week}"))
    return windows, counters


def test_a_batch_equals_the_same_operations_one_call_each(redis, sha):
    rng = random.Random(7)
    for run in range(6):
        team = f"team{run}" if run % 2 else None  # the key alone, and the key with its team
        secs = int(redis.call("TIME")[0])
        if secs % 60 > 55:  # about to enter a new bucket
            time.sleep(61 - secs % 60)
            secs = int(redis.call("TIME")[0])
        day = secs // 86400
        bucket = secs * 1000 // BUCKET_MS
        periods = [f"d{day}", f"d{day}", f"w{day - (day + 3) % 7}"]
        ops = operations(rng, bucket, periods, 60)
        # with users, the key's and team's output windows open, so that the user's fill first
        users = dict(user="u.1", user_limits=USER, team_user_limits=TEAM_USER,
                     limits=dict(LIMITS, output_tpm=0),
                     team_limits=dict(TEAM, output_tpm=0)) if run in (3, 5) else {}
        if users:  # the settlements name the user's budget periods too
            for op in ops:
                if op[0] == "s":
                    op[1 + SETTLE_ARGS.index("user_budget_period")] = f"d{day}"
                    op[1 + SETTLE_ARGS.index("team_user_budget_period")] = periods[2]
        together = batch(redis, sha, f"together{run}", ops, team and team + "t", **users)
        alone = [batch(redis, sha, f"alone{run}", [op], team and team + "a", **users)[0]
                 for op in ops]
        assert len(together) == len(ops)
        for op, t, a in zip(ops, together, alone):
            if op[0] == "s":
                assert t == a == 1
            else:
                assert slots(t, *STABLE) == slots(a, *STABLE), op
        assert state(redis, f"together{run}", team and team + "t") == \
            state(redis, f"alone{run}", team and team + "a")
        decided = [t for op, t in zip(ops, together) if op[0] == "a"]
        # the sequence reaches every limit: both answers happen
        assert any(slot(t, "admitted") == 1 for t in decided)
        assert any(slot(t, "admitted") == 0 for t in decided)
        if team:  # and the team's own limits refuse some
            assert any(slot(t, "dimension") >= 6 for t in decided if slot(t, "admitted") == 0)
        if users:  # and the user's
            assert any(slot(t, "dimension") >= 12 for t in decided if slot(t, "admitted") == 0), \
                [slots(t, "dimension", "limit", "used", "requested") for t in decided]


def test_a_batch_of_admissions_admits_exactly_the_limit(redis, sha):
    replies = batch(redis, sha, "exact", [admission(1)] * 30)
    assert [slot(r, "admitted") for r in replies] == [1] * 12 + [0] * 18
    # used requests, this one included
    assert [slot(r, "used_requests") for r in replies[:12]] == list(range(1, 13))
    # refused on requests
    assert all(slots(r, "dimension", "used") == [1, 12] and slot(r, "retry_ms") > 0
               for r in replies[12:])
    w = redis.windows("sluice:{exact}:w")
    assert w["total"] == [12, 12, 0] and sum(v[0] for v in w["buckets"].values()) == 12
    # it expires once its newest bucket has left the window
    assert WINDOW_MS < redis.call("PTTL", "sluice:{exact}:w") <= WINDOW_MS + 2 * BUCKET_MS


def test_key_and_team_budgets_admit_exactly_what_fits(redis, sha):
    """Two keys of one team: each key's budget (5000) and the team's (8000) in
    micro-dollars; a refusal by either reserves nothing in the other."""
    wide = dict(TEAM, budget=8000)

    def spend(key, n, amount=1000):
        return batch(redis, sha, key, [admission(0, amount)] * n, "tb", wide)
    a = spend("ka", 7)
    assert [slot(r, "admitted") for r in a] == [1] * 5 + [0] * 2
    assert all(slots(r, "dimension", "used", "requested", "retry_ms") == [5, 5000, 1000, -1]
               for r in a[5:])
    assert [slot(r, "team_spent") for r in a[:5]] == [1000, 2000, 3000, 4000, 5000]
    b = spend("kb", 5)
    assert [slot(r, "admitted") for r in b] == [1] * 3 + [0] * 2
    assert all(slots(r, "dimension", "used") == [9, 8000] for r in b[3:])
    assert [slot(r, "spent") for r in b[:3]] == [1000, 2000, 3000]  # kb's own spend
    day = int(redis.call("TIME")[0]) // 86400
    week = day - (day + 3) % 7
    assert redis.call("GET", f"sluice:{{tb}}:k:kb:b:d{day}") == "3000"
    assert redis.call("GET", f"sluice:{{tb}}:t:b:w{week}") == "8000"
    # each counter is kept until a day after its period ends
    ttl = redis.call("TTL", f"sluice:{{tb}}:t:b:w{week}")
    assert abs(ttl - ((week + 8) * 86400 - int(redis.call("TIME")[0]))) <= 1
    # settlement gives back what a request did not cost, to the key and the team
    settle = settlement(spend_delta=-600, budget_period=f"d{day}", team_budget_period=f"w{week}")
    batch(redis, sha, "kb", [settle], "tb", wide)
    assert redis.call("GET", f"sluice:{{tb}}:t:b:w{week}") == "7400"
    assert [slot(r, "admitted") for r in spend("kb", 2, 600)] == [1, 0]


def test_a_key_without_budget_or_team_gets_the_short_reply(redis, sha):
    """The compact reply (16 numbers and the quota's period id): the same
    numbers as the long reply."""
    plain = dict(LIMITS, budget=0)
    short = batch(redis, sha, "short", [admission(5), ["p"], admission(500)], limits=plain)
    assert [len(r) for r in short] == [len(COMPACT)] * 3 == [17] * 3
    assert slots(short[0], "admitted", "dimension", "used_requests", "used_input") == [1, 0, 1, 5]
    # refused on input tokens
    assert slots(short[2], "admitted", "dimension", "limit", "used", "requested") == [0, 2, 150, 5, 500]
    long = batch(redis, sha, "long", [admission(5), ["p"], admission(500)])
    assert [len(r) for r in long] == [len(REPLY)] * 3 == [41] * 3
    same = ["admitted", "dimension", "limit", "used", "requested", "bucket", "used_requests",
            "used_input", "used_output", "used_quota"]  # what does not depend on the millisecond
    assert [slots(r, *same) for r in short] == [slots(r, *same) for r in long]


def test_max_inflight_slots_are_leases(redis, sha):
    """Slots of the key and of its team: taken at admission (in the same
    atomic call as every other limit), freed at settlement, kept by renewal,
    and gone by themselves once a lease is not renewed."""
    lim = dict(LIMITS, rpm=0, input_tpm=0, output_tpm=0, quota=0, budget=0, max_inflight=2,
               lease_ms=600)
    team = dict(TEAM, rpm=0, input_tpm=0, output_tpm=0, budget=0, max_inflight=3)

    def admit(key, lease):
        return batch(redis, sha, key, [admission(1, 0, lease)], "tf", team, lim)[0]

    def settle(key, lease):
        return batch(redis, sha, key, [settlement(lease=lease)], "tf", team, lim)

    a = [admit("ka", f"n-{i}") for i in range(3)]
    assert [slot(r, "admitted") for r in a] == [1, 1, 0]
    assert slots(a[1], "slots", "team_slots") == [2, 2]  # slots taken: the key's, the team's
    # the key's slots, Retry-After 1 s
    assert slots(a[2], "dimension", "limit", "used", "requested", "retry_ms") == [10, 2, 2, 1, 1000]
    b = [admit("kb", f"n-{i}") for i in range(3, 5)]
    assert [slot(r, "admitted") for r in b] == [1, 0]
    # the team's three are taken: one of kb, two of ka
    assert slots(b[1], "dimension", "limit", "used") == [11, 3, 3]
    settle("ka", "n-0")
    assert slot(admit("kb", "n-5"), "admitted") == 1  # the freed team slot
    # a settlement of a lease already gone frees nothing twice
    settle("ka", "n-0")
    assert slot(admit("kb", "n-6"), "admitted") == 0
    # renewals keep n-1 and n-5; n-3 (kb) is not renewed and expires with its lease
    time.sleep(0.4)
    for key, lease in (("ka", "n-1"), ("kb", "n-5")):
        batch(redis, sha, key, [["r", lease]], "tf", team, lim)
    time.sleep(0.35)
    r = admit("kb", "n-7")
    # n-5 and n-7 of kb; n-1, n-5, n-7 of the team
    assert slots(r, "admitted", "slots", "team_slots") == [1, 2, 3]
    assert redis.call("ZSCORE", "sluice:{tf}:t:f", "n-3") is None
    assert 0 < redis.call("PTTL", "sluice:{tf}:k:kb:f") <= 600
    # a peek counts without taking one
    peek = batch(redis, sha, "ka", [["p"]], "tf", team, lim)[0]
    assert slots(peek, "admitted", "slots", "team_slots") == [1, 1, 3]


def test_an_admission_after_its_deadline_records_nothing(redis, sha):
    """sluice gives up on a call after [redis] timeout and decides without
    Redis; the call carries that moment (in Redis's clock), and an admission
    that runs later — Redis was paused — takes no slot and records nothing,
    while a settlement in the same call is still done. The call answers LATE."""
    lim = dict(LIMITS, max_inflight=1, lease_ms=60000)
    now_ms = int(redis.call("TIME")[0]) * 1000
    keys = names("late", None)
    first = batch(redis, sha, "late", [admission(7, 0, "n-1", deadline=now_ms + 60000)], limits=lim)
    assert slot(first[0], "admitted") == 1 and slot(first[0], "used_input") == 7
    before = redis.windows(keys[0])
    try:
        batch(redis, sha, "late", [settlement(lease="n-1", output=3, bucket=slot(first[0], "bucket")),
                                   admission(5, 0, "n-2", deadline=now_ms - 1)], limits=lim)
        raise AssertionError("a late admission must not be answered")
    except RuntimeError as e:
        assert str(e).startswith("LATE")
    assert redis.call("ZCARD", keys[-1]) == 0  # n-1 freed by the settlement, n-2 never taken
    after = redis.windows(keys[0])
    assert after["total"] == [before["total"][0], before["total"][1], before["total"][2] + 3]
    # no request, no input; the settlement's 3 output tokens
    # one in time still admits (the slot is free)
    ok = batch(redis, sha, "late", [admission(5, 0, "n-3", deadline=now_ms + 60000)], limits=lim)
    assert slot(ok[0], "admitted") == 1


def test_end_users_count_alone_within_the_key_and_the_team(redis, sha):
    """The end user's own windows, budget and slots, per key (user_*) and per
    team (the team's user_*), in the same call as the key's and the team's:
    each user counts alone, and a refusal on any reserves nothing anywhere."""
    key = dict(LIMITS, rpm=5, input_tpm=0, output_tpm=0, quota=0, budget=0)
    team = dict(TEAM, rpm=0, input_tpm=0, output_tpm=0, budget=0)
    per_user = {"rpm": 3}
    per_team_user = {"rpm": 4, "budget": 2500, "budget_period": 1}

    def admit(k, user, n, spend=0):
        return batch(redis, sha, k, [admission(1, spend)] * n, "tu", team, key, user, per_user,
                     per_team_user)
    a = admit("k1", "alice", 4)
    assert [slot(r, "admitted") for r in a] == [1, 1, 1, 0]
    assert slots(a[3], "dimension", "limit", "used") == [12, 3, 3]  # alice's rpm of k1
    assert [slot(r, "user_requests") for r in a[:3]] == [1, 2, 3]
    b = admit("k1", "bob", 3)  # the key's rpm (5) is what stops bob, after 2
    assert [slot(r, "admitted") for r in b] == [1, 1, 0]
    assert slots(b[2], "dimension", "limit", "used") == [1, 5, 5]
    # alice on another key of the team: her per-team rpm (4) has one left
    c = admit("k2", "alice", 2)
    assert [slot(r, "admitted") for r in c] == [1, 0]
    assert slots(c[1], "dimension", "limit", "used") == [17, 4, 4]
    assert slot(c[0], "team_user_requests") == 4 and slot(c[0], "user_requests") == 1
    # nothing was reserved by refusals: k1 holds 5 requests, alice's per-key window 3
    assert redis.windows("sluice:{tu}:k:k1:w")["total"][0] == 5
    assert redis.windows("sluice:{tu}:k:k1:u5:alice:w")["total"][0] == 3
    assert redis.windows("sluice:{tu}:t:u5:alice:w")["total"][0] == 4
    # the per-team user budget, in micro-dollars: carol may spend 2500
    d = admit("k3", "carol", 3, 1000)
    assert [slot(r, "admitted") for r in d] == [1, 1, 0]
    assert [slot(r, "team_user_spent") for r in d[:2]] == [1000, 2000]
    assert slots(d[2], "dimension", "limit", "used", "requested", "retry_ms") == \
        [20, 2500, 2000, 1000, -1]
    day = int(redis.call("TIME")[0]) // 86400
    assert redis.call("GET", f"sluice:{{tu}}:t:u5:carol:b:d{day}") == "2000"
    # settlement gives back what the request did not cost, to carol's budget
    batch(redis, sha, "k3", [settlement(spend_delta=-700, team_user_budget_period=f"d{day}")],
          "tu", team, key, "carol", per_user, per_team_user)
    assert redis.call("GET", f"sluice:{{tu}}:t:u5:carol:b:d{day}") == "1300"
    assert slot(admit("k3", "carol", 1, 1000)[0], "admitted") == 1


def test_end_user_slots_are_leases_of_their_own(redis, sha):
    key = dict(LIMITS, rpm=0, input_tpm=0, output_tpm=0, quota=0, budget=0, max_inflight=3)

    def admit(user, lease):
        return batch(redis, sha, "ks", [admission(1, 0, lease)], limits=key, user=user,
                     user_limits={"max_inflight": 1})[0]
    assert slot(admit("u1", "l-1"), "admitted") == 1
    r = admit("u1", "l-2")
    assert slots(r, "admitted", "dimension", "limit", "used", "retry_ms") == [0, 16, 1, 1, 1000]
    assert slot(admit("u2", "l-3"), "admitted") == 1
    batch(redis, sha, "ks", [settlement(lease="l-1")], limits=key, user="u1",
          user_limits={"max_inflight": 1})
    r = admit("u1", "l-4")
    assert slots(r, "admitted", "slots", "user_slots") == [1, 2, 1]
