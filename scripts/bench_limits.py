"""Cost of sluice's rate limits in Redis: CPU per admitted request (admission +
settlement script calls, from INFO commandstats) and memory per key (MEMORY
USAGE of the key's three hashes), against a private redis-server, the mock
upstream and a Release build. Bounded: a fixed number of requests.
BENCH_MONEY=1 adds what issue #15 brought: model prices, a budget on every
key, and every key in one of 5 teams with its own rpm and budget.
BENCH_USERS=N (issue #32): every key trusts x-sluice-user and has per-user
rpm, input_tpm and output_tpm; the requests name N end users in turn."""
import os
import pathlib
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
os.environ.setdefault("SLUICE_BUILD", str(ROOT / "build-release"))

import harness  # noqa: E402
from harness import CLIENT_KEY, Mock, Redis, Sluice  # noqa: E402

KEYS = int(os.environ.get("BENCH_KEYS", "20"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "6000"))
# A short window, so the traffic outlasts it and every bucket of every key
# fills: the memory measured is a busy key's steady state, and the CPU
# includes trimming expired buckets.
WINDOW_MS = os.environ.get("BENCH_WINDOW_MS", "1200")
MONEY = os.environ.get("BENCH_MONEY") == "1"
TEAMS = 5
USERS = int(os.environ.get("BENCH_USERS", "0"))


def prefix(i):
    """The Redis key prefix of key k{i} (limit_redis.c)."""
    return f"sluice:{{t{i % TEAMS}}}:k:k{i}:" if MONEY else f"sluice:{{k{i}}}:"


def config(mock, redis):
    money = (f"team = t{{}}\nbudget = 1000000\nbudget_period = day\n" if MONEY else "")
    if USERS:
        money += ("trust_user = header\nuser_rpm = 1000000\nuser_input_tpm = 100000000\n"
                  "user_output_tpm = 100000000\n")
    keys = "".join(f"\n[key k{i}]\nkey = {CLIENT_KEY}-{i:04d}\nrpm = 1000000\n"
                   f"input_tpm = 100000000\noutput_tpm = 100000000\n" + money.format(i % TEAMS)
                   for i in range(KEYS))
    if MONEY:
        keys += "\n[model gpt-4o]\ninput_price = 2.50\ncached_input_price = 1.25\noutput_price = 10\n"
        keys += "".join(f"\n[team t{t}]\nrpm = 10000000\nbudget = 100000000\nbudget_period = month\n"
                        for t in range(TEAMS))
    return (f"[server]\nlisten = 127.0.0.1:{{port}}\naccess_log = off\n"
            f"[backend mock]\nurl = {mock.url}\napi_key = {harness.UPSTREAM_KEY}\n"
            f"[redis]\nurl = {redis.url}\ntimeout = 500ms\n{keys}")


def info(redis, section):
    out = {}
    for line in redis.cli("INFO", section).splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k] = v
    return out


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    mock, redis = Mock(tmp), Redis(tmp)
    s = Sluice(tmp, config(mock, redis), extra_env={"SLUICE_WINDOW_MS": WINDOW_MS})
    try:
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there, how are you?"}]}
        s.chat(body, key=f"{CLIENT_KEY}-0000")  # scripts loaded, connections up
        redis.cli("CONFIG", "RESETSTAT")
        mem_before = int(info(redis, "memory")["used_memory"])

        def worker(t):
            c = s.conn()
            ok = 0
            for i in range(t, REQUESTS, 8):
                who = {"x-sluice-user": f"user-{i % USERS}"} if USERS else None
                ok += s.chat(body, key=f"{CLIENT_KEY}-{i % KEYS:04d}", conn=c, headers=who).status == 200
            c.close()
            return ok

        # The hashes live one window past their last write (1.2 s here), so
        # they are read while the traffic runs: the largest of each seen.
        busy, per_key, hlen = threading.Event(), [0] * KEYS, 0

        def sample():
            nonlocal hlen
            while not busy.wait(0.25):
                for i in range(KEYS):
                    per_key[i] = max(per_key[i], sum(redis.call("MEMORY", "USAGE", prefix(i) + d) or 0
                                                     for d in "rio"))
                    hlen = max(hlen, redis.call("HLEN", prefix(i) + "i"))

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.time()
        with ThreadPoolExecutor(8) as pool:
            ok = sum(pool.map(worker, range(8)))
        elapsed = time.time() - start
        busy.set()
        sampler.join()
        time.sleep(0.2)
        stats = info(redis, "commandstats")
        evalsha = dict(kv.split("=") for kv in stats.get("cmdstat_evalsha", "calls=0,usec=0").split(","))
        calls, usec = int(evalsha["calls"]), float(evalsha["usec"])
        skip = ("evalsha", "info", "memory", "hlen", "config")  # not the scripts' (Redis 7: "memory|usage")
        inner = {k[len("cmdstat_"):]: int(v.split(",")[0].split("=")[1]) for k, v in stats.items()
                 if k.startswith("cmdstat_") and k[len("cmdstat_"):].split("|")[0] not in skip}
        mem_after = int(info(redis, "memory")["used_memory"])
        print(f"requests admitted        {ok} of {REQUESTS} over {KEYS} keys in {elapsed:.1f}s "
              f"(window {WINDOW_MS} ms, 60 buckets{'; prices, budgets, 5 teams' if MONEY else ''}"
              f"{f'; {USERS} end users with their own 3 windows' if USERS else ''})")
        print(f"EVALSHA calls            {calls} ({calls / max(ok, 1):.2f} per request: admission + settlement)")
        print(f"Redis CPU per call       {usec / max(calls, 1):.1f} us")
        print(f"Redis CPU per request    {usec / max(ok, 1):.1f} us (admission + settlement)")
        print(f"commands per request     {sum(inner.values()) / max(ok, 1):.2f} run by the scripts "
              f"({', '.join(f'{k} {v / max(ok, 1):.2f}' for k, v in sorted(inner.items()))})")
        print(f"memory per busy key      {sum(per_key) / KEYS:.0f} bytes (MEMORY USAGE of its 3 hashes, largest seen)")
        print(f"used_memory growth/key   {(mem_after - mem_before) / KEYS:.0f} bytes (incl. Redis overheads)")
        print(f"largest hash             {hlen} fields (bounded by 61 buckets + 3)")
    finally:
        s.stop()
        mock.stop()
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
