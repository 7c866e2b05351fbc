"""A soak of sluice (scripts/soak.sh): mixed traffic for SOAK_SECONDS against
a Release build, a private redis-server and the mock upstream — plain calls,
streams, slow streams, multipart uploads, a key held to rpm, a budgeted key,
a key that queues at max_inflight, and upstream faults (5xx, resets before
and during a stream, stalls) — with a SIGHUP every 30 s that changes the
config. Every minute it prints sluice's RSS, open files and requests in
flight. It fails when a request is lost (no answer, or no access-log line
for it), when RSS or open files drift, or when anything is still in flight
once the traffic stops. Bounded: SOAK_SECONDS, SOAK_CLIENTS threads."""
import http.client
import json
import os
import pathlib
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
os.environ.setdefault("SLUICE_BUILD", str(ROOT / "build-release"))

import harness  # noqa: E402
from harness import Mock, Redis, Sluice, rss_kb, sanitizer_errors  # noqa: E402

SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "8"))
MINUTE = int(os.environ.get("SOAK_SAMPLE_SECONDS", "60"))
HUP_EVERY = int(os.environ.get("SOAK_HUP_SECONDS", "30"))
KEYS = {"plain": "sk-soak-plain-000001", "limited": "sk-soak-limited-0002",
        "budget": "sk-soak-budget-00003", "queued": "sk-soak-queued-00004"}
# Upstream connections kept alive may differ by a few between two idle moments
# (each worker's pool, two backends); a leak grows past this within minutes.
FDS_SLACK = 8
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there, soak"}]}


def config(mock, redis, generation):
    # Two backends on the one mock: failover and two breakers (short, so a burst of
    # faults opens them for a moment only).
    backends = "".join(f"""[backend {name}]
url = {mock.url}
api_key = {harness.UPSTREAM_KEY}
timeout = 3s
breaker_failures = 50
breaker_window = 1s
breaker_trip = 500ms
{harness.MOCK_HEADERS}
""" for name in ("a", "b"))
    # Each reload changes the limited key's rpm, so every SIGHUP makes a new generation.
    return f"""
[server]
listen = 127.0.0.1:{{port}}
request_timeout = 4s
max_upload_size = 2m
[redis]
url = {redis.url}
timeout = 500ms
{backends}[model gpt-4o]
input_price = 2.50
output_price = 10.00
[model whisper-1]
request_price = 0.006
[key plain]
key = {KEYS['plain']}
[key limited]
key = {KEYS['limited']}
rpm = {120 + generation % 2}
[key budget]
key = {KEYS['budget']}
budget = 0.05
budget_period = day
[key queued]
key = {KEYS['queued']}
max_inflight = 2
queue_timeout = 1s
"""


def multipart(fields, files):
    boundary = "soak-boundary-7d1f"
    out = b""
    for k, v in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    for k, (name, data, ctype) in files.items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
                f"Content-Type: {ctype}\r\n\r\n").encode() + data + b"\r\n"
    return f"multipart/form-data; boundary={boundary}", out + f"--{boundary}--\r\n".encode()


def call(port, key, path, body, headers=None, ctype="application/json", stream=False):
    """One request on a new connection: its status, or None when it was lost
    (no complete answer). A stream is read to its end."""
    h = {"Authorization": f"Bearer {key}", "Content-Type": ctype, **(headers or {})}
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("POST", path, body=body if isinstance(body, bytes) else json.dumps(body), headers=h)
        r = c.getresponse()
        data = r.read()
        if stream and r.status == 200:
            text = data.decode()
            # a whole stream ends in [DONE]; a cut one in an error event (never silently)
            if not text.rstrip().endswith("data: [DONE]") and '"error"' not in text:
                return None
        return r.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        c.close()


FORM = multipart({"model": "whisper-1"}, {"file": ("a.wav", b"RIFF" + bytes(4000), "audio/wav")})
SCENARIOS = [
    ("plain", lambda p: call(p, KEYS["plain"], "/v1/chat/completions", CHAT)),
    ("stream", lambda p: call(p, KEYS["plain"], "/v1/chat/completions", {**CHAT, "stream": True}, stream=True)),
    ("slow stream", lambda p: call(p, KEYS["plain"], "/v1/chat/completions", {**CHAT, "stream": True},
                                   {"x-mock-chunk-delay-ms": "40", "x-mock-completion-tokens": "20"},
                                   stream=True)),
    ("multipart", lambda p: call(p, KEYS["plain"], "/v1/audio/transcriptions", FORM[1], ctype=FORM[0])),
    ("rpm", lambda p: call(p, KEYS["limited"], "/v1/chat/completions", CHAT)),
    ("budget", lambda p: call(p, KEYS["budget"], "/v1/chat/completions", {**CHAT, "max_tokens": 50})),
    ("queue", lambda p: call(p, KEYS["queued"], "/v1/chat/completions", CHAT, {"x-mock-delay-ms": "150"})),
    ("5xx", lambda p: call(p, KEYS["plain"], "/v1/chat/completions", CHAT, {"x-mock-status": "503"})),
    ("reset", lambda p: call(p, KEYS["plain"], "/v1/chat/completions", CHAT, {"x-mock-close": "1"})),
    ("cut stream", lambda p: call(p, KEYS["plain"], "/v1/chat/completions", {**CHAT, "stream": True},
                                  {"x-mock-drop-after": "2"}, stream=True)),
    ("stall", lambda p: call(p, KEYS["plain"], "/v1/chat/completions", {**CHAT, "stream": True},
                             {"x-mock-stall-after": "2"}, stream=True)),
]

# Mostly good traffic: a fault in one call of six or so.
WEIGHTS = [4, 3, 1, 2, 2, 2, 2, 1, 1, 1, 1]


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.statuses = {}  # scenario -> {status: n}
        self.sent = 0
        self.lost = []

    def add(self, name, status):
        with self.lock:
            self.sent += 1
            by = self.statuses.setdefault(name, {})
            by[status] = by.get(status, 0) + 1
            if status is None:
                self.lost.append(name)


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0


def metrics(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    total = re.search(r"^sluice_inflight_requests (\d+)", text, re.M)
    keyed = sum(int(v) for v in re.findall(r'^sluice_inflight\{key="[^"]+"\} (\d+)', text, re.M))
    return int(total.group(1)) if total else -1, keyed


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="sluice-soak-"))
    mock, redis = Mock(tmp), Redis(tmp)
    generation = 0
    s = Sluice(tmp, config(mock, redis, generation))
    pid, failures = s.proc.pid, []
    warm = [threading.Thread(target=lambda: [call(s.port, KEYS["plain"], "/v1/chat/completions", CHAT)
                                             for _ in range(20)]) for _ in range(CLIENTS)]
    for t in warm:  # every worker's upstream connections and buffers in use once
        t.start()
    for t in warm:
        t.join()
    base_fds, tally, stop = fds(pid), Tally(), threading.Event()
    print(f"== soak: {SECONDS} s, {CLIENTS} clients, {len(SCENARIOS)} kinds of request, SIGHUP every "
          f"{HUP_EVERY} s; sluice pid {pid}, idle: RSS {rss_kb(pid) / 1024:.1f} MB, {base_fds} open files",
          flush=True)

    def client(seed):
        rnd = random.Random(seed)
        while not stop.is_set():
            name, run = rnd.choices(SCENARIOS, WEIGHTS)[0]
            tally.add(name, run(s.port))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    start = time.time()
    for t in threads:
        t.start()
    samples, next_hup, next_sample = [], start + HUP_EVERY, start + MINUTE
    while time.time() - start < SECONDS:
        time.sleep(0.2)
        now = time.time()
        if now >= next_hup:
            generation += 1
            s.conf.write_text(config(mock, redis, generation).replace("{port}", str(s.port)))
            s.proc.send_signal(signal.SIGHUP)
            next_hup += HUP_EVERY
        if now >= next_sample:
            inflight, keyed = metrics(s.port)
            sample = (rss_kb(pid) / 1024, fds(pid), inflight, keyed)
            samples.append(sample)
            print(f"minute {len(samples)}: RSS {sample[0]:.1f} MB, open files {sample[1]}, in flight "
                  f"{sample[2]} (max_inflight slots {sample[3]}), requests {tally.sent}, lost "
                  f"{len(tally.lost)}", flush=True)
            next_sample += MINUTE
    stop.set()
    for t in threads:
        t.join(60)
    # Idle again: nothing in flight, the files of the idle start.
    deadline = time.time() + 15
    while time.time() < deadline and (metrics(s.port) != (0, 0) or fds(pid) > base_fds + FDS_SLACK):
        time.sleep(0.2)
    inflight, keyed = metrics(s.port)
    end_fds, end_rss = fds(pid), rss_kb(pid) / 1024
    print(f"idle after: RSS {end_rss:.1f} MB, open files {end_fds}, in flight {inflight}, "
          f"max_inflight slots {keyed}")
    for name, by in sorted(tally.statuses.items()):
        print(f"  {name:12} " + ", ".join(f"{k}: {v}" for k, v in sorted(by.items(), key=lambda kv: str(kv[0]))))
    if tally.lost:
        failures.append(f"{len(tally.lost)} requests lost ({', '.join(sorted(set(tally.lost)))})")
    if inflight != 0 or keyed != 0:
        failures.append(f"still in flight once idle: {inflight} requests, {keyed} max_inflight slots")
    if end_fds > base_fds + FDS_SLACK:
        failures.append(f"open files drifted: {base_fds} idle before, {end_fds} after")
    if len(samples) >= 3:  # after the first minutes (warm-up) against the last minute
        (warm, warm_fds, _, _), (last, last_fds, _, _) = samples[1], samples[-1]
        if last > warm * 1.25 and last - warm > 8:
            failures.append(f"RSS drifted: {warm:.1f} MB at minute 2, {last:.1f} MB at the end")
        if last_fds > warm_fds + FDS_SLACK:
            failures.append(f"open files drifted under load: {warm_fds} at minute 2, {last_fds} at the end")
    code = s.stop(timeout=30)
    log = s.log_text()
    logged = sum(1 for line in log.splitlines() if " access " in line)
    answered = tally.sent - len(tally.lost) + 20
    if logged < answered:
        failures.append(f"{answered - logged} answered requests have no access-log line ({logged} lines)")
    if code != 0:
        failures.append(f"sluice exited with {code} on SIGTERM")
    if sanitizer_errors(log):
        failures.append("sanitizer: " + sanitizer_errors(log)[0])
    reloads = len(re.findall(r" reloaded .*: \d+ backends", log))
    mock.stop()
    redis.stop()
    summary = (f"{SECONDS} s, {tally.sent} requests, {len(tally.lost)} lost, {reloads} reloads, RSS "
               f"{samples[0][0] if samples else end_rss:.1f} -> {end_rss:.1f} MB, open files {base_fds} -> {end_fds}")
    if failures:
        for f in failures:
            print(f"soak: {f}")
        print(f"soak: the logs are kept in {tmp}")
        print(f"== soak: FAILED ({summary})")
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"== soak: passed ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
