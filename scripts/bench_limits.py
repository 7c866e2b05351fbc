"""Cost of sluice's rate limits in Redis: CPU per admitted request (admission +
settlement script calls, from INFO commandstats) and memory per key (MEMORY
USAGE of the string holding the key's three windows), against a private redis-server, the mock
upstream and a Release build. Bounded: a fixed number of requests.
BENCH_MONEY=1 adds what issue #15 brought: model prices, a budget on every
key, and every key in one of 5 teams with its own rpm and budget.
BENCH_USERS=N (issue #32): every key trusts x-sluice-user and has per-user
rpm, input_tpm and output_tpm; the requests name N end users in turn.
BENCH_CONNS=N client connections (8). The worst case of issue #33 is
BENCH_KEYS=1 BENCH_CONNS=1: one key, every request its own call.
With two cores or more, Redis runs on a core of its own (the last) and
everything else on the others (BENCH_PIN=0: not), so the time Redis spends
in a call is not inflated by the scheduler; Redis's process CPU per request
(its whole work: network, parsing, scripts) is printed too."""
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
CONNS = int(os.environ.get("BENCH_CONNS", "8"))
PIN = os.environ.get("BENCH_PIN", "1") == "1" and len(os.sched_getaffinity(0)) >= 2


def pin(pid, cpus):
    """Every thread of the process on these CPUs."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        if PIN:
            cpus = sorted(os.sched_getaffinity(0))
            rest = set(cpus[:-1])
            pin(redis.proc.pid, {cpus[-1]})
            for pid in (s.proc.pid, mock.proc.pid, os.getpid()):
                pin(pid, rest)
        redis.cli("CONFIG", "RESETSTAT")
        cpu_before = cpu_seconds(redis.proc.pid)
        mem_before = int(info(redis, "memory")["used_memory"])

        def worker(t):
            c = s.conn()
            ok = 0
            for i in range(t, REQUESTS, CONNS):
                who = {"x-sluice-user": f"user-{i % USERS}"} if USERS else None
                ok += s.chat(body, key=f"{CLIENT_KEY}-{i % KEYS:04d}", conn=c, headers=who).status == 200
            c.close()
            return ok

        # The windows live one window past their last write (1.2 s here), so
        # they are read while the traffic runs: the largest of each seen.
        busy, per_key, strlen = threading.Event(), [0] * KEYS, 0

        def sample():
            nonlocal strlen
            while not busy.wait(0.25):
                for i in range(KEYS):
                    per_key[i] = max(per_key[i], redis.call("MEMORY", "USAGE", prefix(i) + "w") or 0)
                    strlen = max(strlen, redis.call("STRLEN", prefix(i) + "w"))

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.time()
        with ThreadPoolExecutor(CONNS) as pool:
            ok = sum(pool.map(worker, range(CONNS)))
        elapsed = time.time() - start
        busy.set()
        sampler.join()
        time.sleep(0.2)  # the last settlements (held at most 20 ms) are in
        cpu = cpu_seconds(redis.proc.pid) - cpu_before
        stats = harness.commandstats(redis.cli("INFO", "commandstats"))
        script = [stats[c] for c in harness.SCRIPT_COMMANDS if c in stats]
        calls, usec = sum(st["calls"] for st in script), sum(st["usec"] for st in script)
        skip = harness.SCRIPT_COMMANDS + ("info", "memory", "strlen", "config")  # not the scripts'
        inner = {k: st["calls"] for k, st in stats.items() if k.split("|")[0] not in skip}
        mem_after = int(info(redis, "memory")["used_memory"])
        print(f"requests admitted        {ok} of {REQUESTS} over {KEYS} keys in {elapsed:.1f}s "
              f"(window {WINDOW_MS} ms, 60 buckets{'; prices, budgets, 5 teams' if MONEY else ''}"
              f"{f'; {USERS} end users with their own 3 windows' if USERS else ''}; "
              f"{CONNS} connection{'s' if CONNS > 1 else ''}{'; Redis on a core of its own' if PIN else ''})")
        print(f"script calls             {calls} ({calls / max(ok, 1):.2f} per request: admission + settlement)")
        print(f"Redis CPU per call       {usec / max(calls, 1):.1f} us")
        print(f"Redis CPU per request    {usec / max(ok, 1):.1f} us (admission + settlement)")
        print(f"Redis process CPU/req    {cpu * 1e6 / max(ok, 1):.1f} us (the whole server, sampling included)")
        print(f"commands per request     {sum(inner.values()) / max(ok, 1):.2f} run by the scripts "
              f"({', '.join(f'{k} {v / max(ok, 1):.2f}' for k, v in sorted(inner.items()))})")
        print(f"memory per busy key      {sum(per_key) / KEYS:.0f} bytes (MEMORY USAGE of its windows, largest seen)")
        print(f"used_memory growth/key   {(mem_after - mem_before) / KEYS:.0f} bytes (incl. Redis overheads)")
        print(f"largest windows string   {strlen} bytes (at most a header and 62 buckets: 1,584)")
    finally:
        s.stop()
        mock.stop()
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
