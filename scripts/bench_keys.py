"""sluice with many keys (issue #17's fleet-scale targets): how long `sluice -t`
takes, how long start-up takes until the listener answers, the RSS of a running
node, and what a SIGHUP reload does under load: wrk sends requests with random
keys of the file (Lua picks one of BENCH_KEYS secrets per request) while the
file is reloaded BENCH_RELOADS times; the run reports failed requests and the
largest request latency next to the same load without reloads (a stalled worker
shows as a latency spike). In-process limiter, then the same with Redis.
Bounded: fixed durations, a Release build, a private redis-server and mock."""
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("SLUICE_BUILD", str(ROOT / "build-release"))

import harness  # noqa: E402
from harness import Mock, Redis, free_port, wait_port  # noqa: E402
from gen_keys import config  # noqa: E402

KEYS = int(os.environ.get("BENCH_KEYS", "100000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "6"))
RELOADS = int(os.environ.get("BENCH_RELOADS", "5"))
CONNS = int(os.environ.get("BENCH_CONNECTIONS", "16"))

# Random keys (the reload test), or every key in turn (the memory of a node
# whose every key is in use: limiter windows, metric series).
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}],"max_tokens":8}'
math.randomseed(os.time())
local n = 0
request = function()
  local i = __PICK__
  n = n + 1
  wrk.headers["Authorization"] = string.format("Bearer sk-bench-%06d", i)
  return wrk.format()
end
done = function(summary, latency, requests)
  io.write(string.format("p99.9_us %d\n", latency:percentile(99.9)))
end
"""
RANDOM, IN_TURN = "math.random(0, __KEYS__ - 1)", "(n + __FROM__) % __KEYS__"


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wrk(port, script, seconds):
    out = subprocess.run(["wrk", "-t1", f"-c{CONNS}", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}/v1/chat/completions"],
                         capture_output=True, text=True).stdout

    def ms(pattern):
        m = re.search(pattern + r"\s+([0-9.]+)(us|ms|s)\b", out)
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")

    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"requests": total, "rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1)),
            "p99": ms(r"\s99%"), "p999": float(re.search(r"^p99\.9_us (\d+)$", out, re.M).group(1)) / 1000,
            "max": ms(r"Latency\s+[0-9.]+\w+\s+[0-9.]+\w+"),
            "failed": int(bad.group(1)) if bad else 0, "errors": errors.group(1) if errors else "none"}


def start(path, port):
    began = time.monotonic()
    log = open(path.with_suffix(".log"), "w")
    proc = subprocess.Popen([str(harness.SLUICE), "-c", str(path)], stdout=subprocess.DEVNULL,
                            stderr=log, env=harness.ENV)
    wait_port(port, proc)
    return proc, time.monotonic() - began


def scenario(tmp, mock, redis, label):
    port = free_port()
    path = tmp / f"keys-{label}.conf"
    path.write_text(config(KEYS, mock.url, redis.url if redis else None, listen=f"127.0.0.1:{port}"))
    path.chmod(0o600)
    checks = []
    for _ in range(3):
        began = time.monotonic()
        subprocess.run([str(harness.SLUICE), "-t", "-c", str(path)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        checks.append(time.monotonic() - began)
    proc, startup = start(path, port)
    try:
        rss_idle = rss_mb(proc.pid)
        script, in_turn = tmp / "keys.lua", tmp / "in-turn.lua"
        lua = WRK_SCRIPT.replace("__KEYS__", str(KEYS))
        script.write_text(lua.replace("__PICK__", RANDOM).replace("__KEYS__", str(KEYS)))
        used = 0
        while used < KEYS:  # every key once at least (wrk cannot stop at a count)
            in_turn.write_text(lua.replace("__PICK__", IN_TURN).replace("__KEYS__", str(KEYS))
                               .replace("__FROM__", str(used)))
            used += wrk(port, in_turn, SECONDS)["requests"]
        rss_busy = rss_mb(proc.pid)
        quiet = wrk(port, script, SECONDS)
        loader = subprocess.Popen([sys.executable, "-c", f"""
import os, signal, time
time.sleep(0.5)
for _ in range({RELOADS}):
    os.kill({proc.pid}, signal.SIGHUP)
    time.sleep({(SECONDS - 1) / RELOADS})
"""])
        loaded = wrk(port, script, SECONDS)
        loader.wait()
        reloads = path.with_suffix(".log").read_text().count("reloaded ")
        print(f"== {KEYS} keys, limits {label}")
        print(f"sluice -t                {min(checks):.2f} s (best of 3; {', '.join(f'{c:.2f}' for c in checks)})")
        print(f"start-up                 {startup:.2f} s until the listener answers")
        print(f"RSS                      {rss_idle:.1f} MB started, {rss_busy:.1f} MB once every key "
              f"has been used ({used} requests, each key in turn)")
        print(f"load without reloads     {quiet['rps']:.0f} req/s, p99 {quiet['p99']:.2f} ms, p99.9 {quiet['p999']:.2f} ms, "
              f"max {quiet['max']:.2f} ms, failed {quiet['failed']}, socket errors {quiet['errors']}")
        print(f"load with {reloads} reloads      {loaded['rps']:.0f} req/s, p99 {loaded['p99']:.2f} ms, p99.9 {loaded['p999']:.2f} ms, "
              f"max {loaded['max']:.2f} ms, failed {loaded['failed']}, socket errors {loaded['errors']}")
        print(f"RSS after the reloads    {rss_mb(proc.pid):.1f} MB")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="sluice-bench-keys-"))
    mock = Mock(tmp, api_key="sk-upstream-bench")
    redis = Redis(tmp)
    try:
        scenario(tmp, mock, None, "in-process")
        scenario(tmp, mock, redis, "in Redis")
    finally:
        mock.stop()
        redis.stop()


if __name__ == "__main__":
    main()
