"""lua/limits.lua on a real redis-server: a batch of operations in one call
(how sluice sends the admissions, peeks and settlements of one key made in
one loop pass) answers and leaves exactly what the same operations sent one
call each would."""
import random
import time

from conftest import ROOT

SCRIPT = (ROOT / "lua" / "limits.lua").read_text()
BUCKET_MS, WINDOW_MS = 60000, 3600000  # minute buckets: a run never straddles one
LIMITS = {"rpm": 12, "input_tpm": 150, "output_tpm": 60, "quota": 400, "period": 1}
# reply fields that do not depend on the millisecond the call ran
STABLE = [0, 1, 2, 3, 4, 6, 7, 9, 11, 13, 15]


def batch(redis, sha, key, ops):
    args = ["EVALSHA", sha, 4] + [f"sluice:{{{key}}}:{d}" for d in "rioq"]
    args += [BUCKET_MS, WINDOW_MS, "batch", LIMITS["rpm"], LIMITS["input_tpm"], LIMITS["output_tpm"],
             LIMITS["quota"], LIMITS["period"], 0, len(ops)]
    for op in ops:
        args += op
    return redis.call(*args)


def operations(rng, bucket, period, n):
    ops = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            ops.append(["a", rng.randint(1, 40), 0, 0, 0, 0, "-"])
        elif r < 0.6:
            ops.append(["p", 0, 0, 0, 0, 0, "-"])
        else:  # a settlement of an admission made in this bucket
            release = rng.random() < 0.2
            ops.append(["s", bucket, rng.randint(-30, 30), 0 if release else rng.randint(0, 25),
                        1 if release else 0, rng.randint(-20, 40), period])
    return ops


def state(redis, key):
    def fields(d):
        flat = redis.call("HGETALL", f"sluice:{{{key}}}:{d}")
        return dict(zip(flat[::2], flat[1::2]))
    hashes = {d: fields(d) for d in "rio"}
    return hashes, redis.call("GET", f"sluice:{{{key}}}:q:d{int(time.time()) // 86400}")


def test_a_batch_equals_the_same_operations_one_call_each(redis):
    sha = redis.call("SCRIPT", "LOAD", SCRIPT)
    rng = random.Random(7)
    for run in range(4):
        secs = int(redis.call("TIME")[0])
        if secs % 60 > 55:  # about to enter a new bucket
            time.sleep(61 - secs % 60)
            secs = int(redis.call("TIME")[0])
        bucket, period = secs * 1000 // BUCKET_MS, f"d{secs // 86400}"
        ops = operations(rng, bucket, period, 60)
        together = batch(redis, sha, f"together{run}", ops)
        alone = [batch(redis, sha, f"alone{run}", [op])[0] for op in ops]
        assert len(together) == len(ops)
        for op, t, a in zip(ops, together, alone):
            if op[0] == "s":
                assert t == a == 1
            else:
                assert [t[i] for i in STABLE] == [a[i] for i in STABLE], op
        assert state(redis, f"together{run}") == state(redis, f"alone{run}")
        decided = [t for op, t in zip(ops, together) if op[0] == "a"]
        # the sequence reaches every limit: both answers happen
        assert any(t[0] == 1 for t in decided) and any(t[0] == 0 for t in decided)


def test_a_batch_of_admissions_admits_exactly_the_limit(redis):
    sha = redis.call("SCRIPT", "LOAD", SCRIPT)
    replies = batch(redis, sha, "exact", [["a", 1, 0, 0, 0, 0, "-"]] * 30)
    assert [r[0] for r in replies] == [1] * 12 + [0] * 18
    assert [r[7] for r in replies[:12]] == list(range(1, 13))  # used requests, this one included
    assert all(r[1] == 1 and r[3] == 12 and r[5] > 0 for r in replies[12:])  # refused on requests
    assert redis.call("HGET", "sluice:{exact}:r", "t") == "12"
