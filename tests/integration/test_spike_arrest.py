"""Spike arrest (spike_arrest, spike_burst): requests of a key or a team at
least 1/rate apart, spike_burst of them ahead of that — a GCRA taken in the
same atomic call as every other limit, exact across nodes on the in-process
limiter, one Redis, and a Redis Cluster."""
import time

import pytest

from harness import CLIENT_KEY, OTHER_KEY
from test_limits import EIGHT, burst, limited_conf
from test_operations import scrape, value


def spike_conf(mock, limits, redis=None):
    return limited_conf(mock, limits, redis, timeout="500ms")


@pytest.mark.parametrize("nodes_n", [1, 3, "cluster"])
def test_a_burst_gets_exactly_spike_burst_plus_one(mock, start_sluice, request, nodes_n):
    """1/m with spike_burst = 4: of 30 concurrent requests exactly 5 pass, on
    one node in-process, three sharing one Redis, or three on a cluster."""
    redis = request.getfixturevalue("redis" if nodes_n == 3 else "cluster") if nodes_n != 1 else None
    nodes = [start_sluice(spike_conf(mock, "spike_arrest = 1/m\nspike_burst = 4", redis))
             for _ in range(1 if nodes_n == 1 else 3)]
    statuses = burst(nodes, 30)
    assert statuses.count(200) == 5 and statuses.count(429) == 25
    assert mock.stats()["requests"] == 5
    refused = nodes[0].chat(EIGHT)
    err = refused.error()
    assert refused.status == 429 and err["code"] == "rate_limit_exceeded"
    assert "spike arrest" in err["message"] and "Limit 5" in err["message"]
    # the next one is allowed 12 s after the last (60 s / 5 ahead): Retry-After says so
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert sum(value(scrape(n), "sluice_rate_limited_total", key="team-a",
                     dimension="spike_arrest") for n in nodes) == 26


@pytest.mark.parametrize("use_redis", [False, True])
def test_requests_are_spaced_and_retry_after_ms_is_exact(mock, start_sluice, request, use_redis):
    """10/s, no burst: one request per 100 ms. The one refused is told how
    long to wait, and passes when it has."""
    redis = request.getfixturevalue("redis") if use_redis else None
    s = start_sluice(spike_conf(mock, "spike_arrest = 10/s", redis))
    assert s.chat(EIGHT).status == 200
    t0 = time.monotonic()
    r = s.chat(EIGHT)
    assert r.status == 429
    wait_ms = int(r.headers["retry-after-ms"])
    elapsed = (time.monotonic() - t0) * 1000
    assert 100 - elapsed - 5 <= wait_ms <= 100, (wait_ms, elapsed)
    assert r.headers["retry-after"] == "1"
    time.sleep(wait_ms / 1000 + 0.005)
    assert s.chat(EIGHT).status == 200
    assert s.chat(EIGHT).status == 429
    # paced at the rate, every request passes
    time.sleep(0.11)
    passed = 0
    for _ in range(5):
        passed += s.chat(EIGHT).status == 200
        time.sleep(0.11)
    assert passed == 5


@pytest.mark.parametrize("use_redis", [False, True])
def test_a_team_s_spike_arrest_counts_every_key(mock, start_sluice, request, use_redis):
    redis = request.getfixturevalue("redis") if use_redis else None
    conf = spike_conf(mock, "team = platform", redis).replace(
        "[key team-b]", "[key team-b]\nteam = platform") + \
        "\n[team platform]\nspike_arrest = 1/m\nspike_burst = 2\n"
    conf = conf.replace("models = gpt-4o-mini", "models = *")
    s = start_sluice(conf)
    statuses = [s.chat(EIGHT, key=k).status for k in (CLIENT_KEY, OTHER_KEY) * 3]
    assert statuses.count(200) == 3, statuses
    r = s.chat(EIGHT, key=OTHER_KEY)
    assert r.status == 429 and "team platform" in r.error()["message"]
    assert "spike arrest" in r.error()["message"]


def test_spike_arrest_is_checked_at_load(tmp):
    import subprocess
    from harness import ENV, SLUICE
    for bad in ("10", "10/h", "x/s", "-1/s", "10/s/s", "2000000/s"):
        conf = tmp / "t.conf"
        conf.write_text("[server]\nlisten = 127.0.0.1:1\n[backend b]\nurl = http://127.0.0.1:2/v1\n"
                        f"api_key = k\n[key a]\nkey = sk-aaaaaaaaaaaaaaaaaaaa\nspike_arrest = {bad}\n")
        r = subprocess.run([SLUICE, "-t", "-c", str(conf)], capture_output=True, text=True, env=ENV)
        assert r.returncode != 0 and "spike_arrest" in r.stderr and "10/s or 300/m" in r.stderr, bad
