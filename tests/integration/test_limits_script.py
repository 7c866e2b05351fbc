"""lua/limits.lua on a real redis-server: a batch of operations in one call
(how sluice sends the admissions, peeks and settlements of one key made in
one loop pass) answers and leaves exactly what the same operations sent one
call each would."""
import random
import time

from conftest import ROOT

SCRIPT = (ROOT / "lua" / "limits.lua").read_text()
BUCKET_MS, WINDOW_MS = 60000, 3600000  # minute buckets: a run never straddles one
LIMITS = {"rpm": 12, "input_tpm": 150, "output_tpm": 60, "quota": 400, "period": 1,
          "budget": 5000, "budget_period": 1}
TEAM = {"rpm": 20, "input_tpm": 100, "output_tpm": 20, "budget": 3000, "budget_period": 4}
# reply fields that do not depend on the millisecond the call ran
STABLE = [0, 1, 2, 3, 4, 6, 7, 9, 11, 13, 15, 17, 18, 19, 20, 22, 23, 24, 25, 26]
LEASE_MS = 30000


def names(key, team):
    """The Redis keys sluice uses (limit_redis.c): the team's hash tag when there is one."""
    own = f"sluice:{{{team}}}:k:{key}:" if team else f"sluice:{{{key}}}:"
    keys = [own + d for d in "rioqb"]
    if team:
        keys += [f"sluice:{{{team}}}:t:{d}" for d in "riob"]
    keys.append(own + "f")  # the max_inflight leases
    if team:
        keys.append(f"sluice:{{{team}}}:t:f")
    return keys


def batch(redis, sha, key, ops, team=None, team_limits=TEAM, limits=LIMITS):
    keys = names(key, team)
    args = ["EVALSHA", sha, len(keys)] + keys
    args += [BUCKET_MS, WINDOW_MS, "batch", limits["rpm"], limits["input_tpm"], limits["output_tpm"],
             limits["quota"], limits["period"], 0, limits["budget"], limits["budget_period"],
             limits.get("max_inflight", 0), limits.get("lease_ms", LEASE_MS)]
    if team:  # the team's limits only with a team
        t = team_limits
        args += [t["rpm"], t["input_tpm"], t["output_tpm"], t["budget"], t["budget_period"],
                 t.get("max_inflight", 0)]
    args.append(len(ops))
    for op in ops:
        args += op
    return redis.call(*args)


def admission(cost, spend=0, lease="-"):
    return ["a", cost, 0, spend, lease]


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
            ops.append(["s", bucket, rng.randint(-30, 30), 0 if release else rng.randint(0, 25),
                        1 if release else 0, rng.randint(-20, 40), periods[0],
                        rng.randint(-400, 300), periods[1], periods[2], "-"])
    return ops


def state(redis, key, team):
    def fields(name):
        flat = redis.call("HGETALL", name)
        return dict(zip(flat[::2], flat[1::2]))
    keys = names(key, team)
    day = int(time.time()) // 86400
    week = day - (day + 3) % 7
    hashes = [fields(k) for k in keys[:3]]
    counters = [redis.call("GET", f"{keys[3]}:d{day}"), redis.call("GET", f"{keys[4]}:d{day}")]
    if team:
        hashes += [fields(k) for k in keys[5:8]]
        counters.append(redis.call("GET", f"{keys[8]}:w{week}"))
    return hashes, counters


def test_a_batch_equals_the_same_operations_one_call_each(redis):
    sha = redis.call("SCRIPT", "LOAD", SCRIPT)
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
        together = batch(redis, sha, f"together{run}", ops, team and team + "t")
        alone = [batch(redis, sha, f"alone{run}", [op], team and team + "a")[0] for op in ops]
        assert len(together) == len(ops)
        for op, t, a in zip(ops, together, alone):
            if op[0] == "s":
                assert t == a == 1
            else:
                assert [t[i] for i in STABLE] == [a[i] for i in STABLE], op
        assert state(redis, f"together{run}", team and team + "t") == \
            state(redis, f"alone{run}", team and team + "a")
        decided = [t for op, t in zip(ops, together) if op[0] == "a"]
        # the sequence reaches every limit: both answers happen
        assert any(t[0] == 1 for t in decided) and any(t[0] == 0 for t in decided)
        if team:  # and the team's own limits refuse some
            assert any(t[1] >= 6 for t in decided if t[0] == 0), [t[:6] for t in decided]


def test_a_batch_of_admissions_admits_exactly_the_limit(redis):
    sha = redis.call("SCRIPT", "LOAD", SCRIPT)
    replies = batch(redis, sha, "exact", [admission(1)] * 30)
    assert [r[0] for r in replies] == [1] * 12 + [0] * 18
    assert [r[7] for r in replies[:12]] == list(range(1, 13))  # used requests, this one included
    assert all(r[1] == 1 and r[3] == 12 and r[5] > 0 for r in replies[12:])  # refused on requests
    assert redis.call("HGET", "sluice:{exact}:r", "t") == "12"
    # it expires once its newest bucket has left the window
    assert WINDOW_MS < redis.call("PTTL", "sluice:{exact}:r") <= WINDOW_MS + 2 * BUCKET_MS


def test_key_and_team_budgets_admit_exactly_what_fits(redis):
    """Two keys of one team: each key's budget (5000) and the team's (8000) in
    micro-dollars; a refusal by either reserves nothing in the other."""
    sha = redis.call("SCRIPT", "LOAD", SCRIPT)
    wide = dict(TEAM, budget=8000)

    def spend(key, n, amount=1000):
        return batch(redis, sha, key, [admission(0, amount)] * n, "tb", wide)
    a = spend("ka", 7)
    assert [r[0] for r in a] == [1] * 5 + [0] * 2
    assert all(r[1] == 5 and r[3] == 5000 and r[4] == 1000 and r[5] == -1 for r in a[5:])
    assert [r[20] for r in a[:5]] == [1000, 2000, 3000, 4000, 5000]  # the team's spend
    b = spend("kb", 5)
    assert [r[0] for r in b] == [1] * 3 + [0] * 2
    assert all(r[1] == 9 and r[3] == 8000 for r in b[3:])
    assert [r[15] for r in b[:3]] == [1000, 2000, 3000]  # kb's own spend
    day = int(redis.call("TIME")[0]) // 86400
    week = day - (day + 3) % 7
    assert redis.call("GET", f"sluice:{{tb}}:k:kb:b:d{day}") == "3000"
    assert redis.call("GET", f"sluice:{{tb}}:t:b:w{week}") == "8000"
    # each counter is kept until a day after its period ends
    ttl = redis.call("TTL", f"sluice:{{tb}}:t:b:w{week}")
    assert abs(ttl - ((week + 8) * 86400 - int(redis.call("TIME")[0]))) <= 1
    # settlement gives back what a request did not cost, to the key and the team
    settle = ["s", 0, 0, 0, 0, 0, "-", -600, f"d{day}", f"w{week}", "-"]
    batch(redis, sha, "kb", [settle], "tb", wide)
    assert redis.call("GET", f"sluice:{{tb}}:t:b:w{week}") == "7400"
    assert [r[0] for r in spend("kb", 2, 600)] == [1, 0]


def test_a_key_without_budget_or_team_gets_the_short_reply(redis):
    """16 numbers and the quota's period id: the same numbers as the long reply."""
    sha = redis.call("SCRIPT", "LOAD", SCRIPT)
    plain = dict(LIMITS, budget=0)
    short = batch(redis, sha, "short", [admission(5), ["p"], admission(500)], limits=plain)
    assert [len(r) for r in short] == [17, 17, 17]
    assert short[0][:2] == [1, 0] and short[0][7] == 1 and short[0][9] == 5
    assert short[2][:5] == [0, 2, 150, 5, 500]  # refused on input tokens
    long = batch(redis, sha, "long", [admission(5), ["p"], admission(500)])
    assert [len(r) for r in long] == [27, 27, 27]
    same = [0, 1, 2, 3, 4, 6, 7, 9, 11, 13]  # what does not depend on the millisecond
    assert [[r[i] for i in same] for r in short] == [[r[i] for i in same] for r in long]


def test_max_inflight_slots_are_leases(redis):
    """Slots of the key and of its team: taken at admission (in the same
    atomic call as every other limit), freed at settlement, kept by renewal,
    and gone by themselves once a lease is not renewed."""
    sha = redis.call("SCRIPT", "LOAD", SCRIPT)
    lim = dict(LIMITS, rpm=0, input_tpm=0, output_tpm=0, quota=0, budget=0, max_inflight=2,
               lease_ms=600)
    team = dict(TEAM, rpm=0, input_tpm=0, output_tpm=0, budget=0, max_inflight=3)

    def admit(key, lease):
        return batch(redis, sha, key, [admission(1, 0, lease)], "tf", team, lim)[0]

    def settle(key, lease):
        return batch(redis, sha, key, [["s", 0, 0, 0, 0, 0, "-", 0, "-", "-", lease]], "tf", team, lim)

    a = [admit("ka", f"n-{i}") for i in range(3)]
    assert [r[0] for r in a] == [1, 1, 0]
    assert a[1][22:24] == [2, 2]  # slots taken: the key's, the team's
    assert a[2][1:6] == [10, 2, 2, 1, 1000]  # the key's slots, Retry-After 1 s
    b = [admit("kb", f"n-{i}") for i in range(3, 5)]
    assert [r[0] for r in b] == [1, 0]
    assert b[1][1:4] == [11, 3, 3]  # the team's three are taken: one of kb, two of ka
    settle("ka", "n-0")
    assert admit("kb", "n-5")[0] == 1  # the freed team slot
    # a settlement of a lease already gone frees nothing twice
    settle("ka", "n-0")
    assert admit("kb", "n-6")[0] == 0
    # renewals keep n-1 and n-5; n-3 (kb) is not renewed and expires with its lease
    time.sleep(0.4)
    for key, lease in (("ka", "n-1"), ("kb", "n-5")):
        batch(redis, sha, key, [["r", lease]], "tf", team, lim)
    time.sleep(0.35)
    r = admit("kb", "n-7")
    assert r[0] == 1 and r[22:24] == [2, 3]  # n-5 and n-7 of kb; n-1, n-5, n-7 of the team
    assert redis.call("ZSCORE", "sluice:{tf}:t:f", "n-3") is None
    assert 0 < redis.call("PTTL", "sluice:{tf}:k:kb:f") <= 600
    # a peek counts without taking one
    peek = batch(redis, sha, "ka", [["p"]], "tf", team, lim)[0]
    assert peek[0] == 1 and peek[22:24] == [1, 3]
