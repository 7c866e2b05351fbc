"""Deployment capacity and balancing: a backend's own rpm/tpm (exact across
nodes with Redis, in-process without), max_inflight, the upstream's own
x-ratelimit-remaining-*, 429 upstream_capacity when every backend is full,
and the latency and least_inflight strategies."""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from test_failover import access_lines
from test_pool import pool_conf

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}


def burst(calls, workers=30):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda f: f(), calls))


def redis_section(redis):
    return f"\n[redis]\nurl = {redis.url}\ntimeout = 500ms\n" if redis else ""


@pytest.mark.parametrize("nodes_n", [1, 3, "cluster"])
def test_backend_rpm_exact_across_nodes(start_mock, start_sluice, request, nodes_n):
    """30 requests at once over 1 node (in-process windows) or 3 nodes sharing
    Redis: the backend with rpm = 10 gets exactly 10, its peer the rest."""
    redis = request.getfixturevalue("redis" if nodes_n == 3 else "cluster") if nodes_n != 1 else None
    len_nodes = 1 if nodes_n == 1 else 3
    a, b = start_mock(), start_mock()
    conf = pool_conf([("a", a, "rpm = 10"), ("b", b, "")]) + redis_section(redis)
    nodes = [start_sluice(conf) for _ in range(len_nodes)]
    statuses = [r.status for r in burst([lambda i=i: nodes[i % len_nodes].chat(CHAT)
                                         for i in range(30)])]
    assert statuses == [200] * 30
    assert a.stats()["requests"] == 10 and b.stats()["requests"] == 20
    # skipped for capacity is not a failure: no breaker moved, no retry counted
    assert all("breaker backend=a" not in s.log_text() for s in nodes)
    assert all(" attempts=1 " in l for s in nodes for l in s.log_text().splitlines()
               if " access " in l)


@pytest.mark.parametrize("use_redis", [False, True])
def test_every_backend_full_is_429_upstream_capacity(start_mock, start_sluice, request, use_redis):
    redis = request.getfixturevalue("redis") if use_redis else None
    a, b = start_mock(), start_mock()
    s = start_sluice(pool_conf([("a", a, "rpm = 2"), ("b", b, "rpm = 1")]) + redis_section(redis),
                     extra_env={"SLUICE_WINDOW_MS": "3000"})
    assert [s.chat(CHAT).status for _ in range(3)] == [200] * 3
    r = s.chat(CHAT)
    assert r.status == 429
    err = r.error()
    assert err["code"] == "upstream_capacity" and err["type"] == "upstream"
    assert 1 <= int(r.headers["retry-after"]) <= 3
    assert 1 <= int(r.headers["retry-after-ms"]) <= 3000
    assert a.stats()["requests"] + b.stats()["requests"] == 3
    line = access_lines(s, 4)[-1]  # written just after the answer: waited for
    assert " end=upstream_capacity " in line and " attempts=0 " in line
    # the windows slide: after Retry-After the backends take requests again
    time.sleep(int(r.headers["retry-after-ms"]) / 1000 + 0.1)
    assert s.chat(CHAT).status == 200


@pytest.mark.parametrize("use_redis", [False, True])
def test_backend_tpm_reserves_and_settles_real_usage(start_mock, start_sluice, request, use_redis):
    """tpm = 60 with max_tokens = 40: a request reserves its prompt estimate
    plus 40 and is corrected to its real 10 tokens (2 prompt + 8 completion),
    so exactly two fit in the window; without the settlement only one would."""
    redis = request.getfixturevalue("redis") if use_redis else None
    a, b = start_mock(), start_mock()
    s = start_sluice(pool_conf([("a", a, "tpm = 60\npriority = 1"), ("b", b, "priority = 2")])
                     + redis_section(redis))
    body = dict(CHAT, max_tokens=40)
    for _ in range(5):
        assert s.chat(body).status == 200
    assert a.stats()["requests"] == 2 and b.stats()["requests"] == 3


def test_fallback_when_every_backend_is_full(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    conf = pool_conf([("a", a, "models = gpt-4o\nrpm = 1"), ("b", b, "models = gpt-4o-mini")])
    s = start_sluice(conf + "\n[model gpt-4o]\nfallbacks = gpt-4o-mini\n")
    assert s.chat(CHAT).headers["x-sluice-model"] == "gpt-4o"
    r = s.chat(CHAT)
    assert r.status == 200 and r.headers["x-sluice-model"] == "gpt-4o-mini"
    assert "fallback key=k from=gpt-4o to=gpt-4o-mini reason=exhausted" in s.log_text()


def test_max_inflight_caps_open_streams(start_mock, start_sluice):
    """10 slow streams at once: the backend with max_inflight = 2 never has
    more than 2 open, the rest go to its peer; alone, the others get 429."""
    a, b = start_mock(), start_mock()
    s = start_sluice(pool_conf([("a", a, "max_inflight = 2"), ("b", b, "")]))
    slow = {"x-mock-chunk-delay-ms": "60"}
    body = dict(CHAT, stream=True)

    def one():
        status, events = s.stream_events(headers=slow, body=body)
        return status, events[-1]

    results = burst([one] * 10, workers=10)
    assert all(st == 200 and ev == "data: [DONE]" for st, ev in results)
    assert a.stats()["max_inflight"] == 2  # used to the cap, never over it
    assert a.stats()["requests"] + b.stats()["requests"] == 10

    alone = start_mock()
    s2 = start_sluice(pool_conf([("a", alone, "max_inflight = 2")]))
    results = burst([lambda: s2.stream(headers=slow, body=body) for _ in range(6)], workers=6)
    statuses = sorted(r.status for _, r in results)
    for c, r in results:
        if r.status == 429:
            assert r.headers["retry-after"] == "1"
            assert b"upstream_capacity" in r.read()
        else:
            r.read()
        c.close()
    assert statuses == [200, 200, 429, 429, 429, 429]
    assert alone.stats()["max_inflight"] == 2


def test_upstream_remaining_marks_backend_full_until_reset(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    s = start_sluice(pool_conf([("a", a, "priority = 1"), ("b", b, "priority = 2")]))
    a.configure(header="x-ratelimit-remaining-requests: 0\r\nx-ratelimit-reset-requests: 1.5s")
    assert s.chat(CHAT).status == 200  # a answers, and says it has nothing left
    for _ in range(4):
        assert s.chat(CHAT).status == 200
    assert a.stats()["requests"] == 1 and b.stats()["requests"] == 4
    a.configure(header="x-ratelimit-remaining-tokens: 5\r\nx-ratelimit-reset-tokens: 20s")
    time.sleep(1.6)
    assert s.chat(CHAT).status == 200  # a again after the reset ...
    assert s.chat(CHAT).status == 200  # ... which now has 5 tokens left: too few for this one
    assert a.stats()["requests"] == 2 and b.stats()["requests"] == 5
    assert "breaker" not in s.log_text()


def shares(s, ms, n, workers=4):
    before = [m.stats()["requests"] for m in ms]
    conns = {}

    def one(i):
        return s.chat(CHAT).status

    statuses = burst([lambda i=i: one(i) for i in range(n)], workers=workers)
    assert statuses == [200] * n
    after = [m.stats()["requests"] for m in ms]
    return [(x - y) / n for x, y in zip(after, before)]


def test_latency_balancing_avoids_a_slow_backend_and_returns(start_mock, start_sluice):
    fast, slow = start_mock(), start_mock()
    s = start_sluice(pool_conf([("fast", fast, ""), ("slow", slow, "")],
                               server="balance = latency\nbalance_decay = 1s"))
    slow.configure(delay_ms=50)
    got = shares(s, [fast, slow], 1000)
    assert got[1] < 0.15, got
    slow.configure()  # as fast as its peer again
    deadline = time.time() + 20
    while True:  # probed back into use: its share returns to about half
        got = shares(s, [fast, slow], 400)
        if got[1] > 0.3 or time.time() > deadline:
            break
    assert got[1] > 0.3, got


def test_least_inflight_prefers_the_backend_with_fewer_open(start_mock, start_sluice):
    fast, slow = start_mock(), start_mock()
    s = start_sluice(pool_conf([("fast", fast, ""), ("slow", slow, "")],
                               server="balance = least_inflight"))
    slow.configure(delay_ms=100)
    got = shares(s, [fast, slow], 300, workers=8)
    assert got[1] < 0.2, got
    # with equal backends it is an even split (ties rotate by weight)
    slow.configure()
    fast_c, slow_c = fast.stats()["requests"], slow.stats()["requests"]
    c = s.conn()
    for _ in range(100):
        assert s.chat(CHAT, conn=c).status == 200
    assert fast.stats()["requests"] - fast_c == 50 and slow.stats()["requests"] - slow_c == 50


def test_client_that_leaves_while_redis_holds_the_capacity_check(start_mock, start_sluice, redis):
    """Redis holds a backend's rpm check (CLIENT PAUSE) while the client
    leaves: the request is answered and settled at once, waits DETACHED for
    the limiter's answer, then gives the backend's admission back and is
    freed (a clean exit and sanitizer log are the fixture's checks)."""
    import socket
    a = start_mock()
    conf = pool_conf([("a", a, "rpm = 5")]) + "\n[redis]\nurl = " + redis.url + "\ntimeout = 2s\n"
    s = start_sluice(conf)
    assert s.chat(CHAT).status == 200  # connected, the script loaded
    redis.call("CLIENT", "PAUSE", 700, "ALL")
    body = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hello there"}]}'
    c = socket.create_connection(("127.0.0.1", s.port))
    c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
              b"sk-test-client-key-0001\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    time.sleep(0.2)
    c.close()  # gone while the check waits
    time.sleep(1.2)  # the pause ends, the check is answered: admitted, then given back
    assert a.stats()["requests"] == 1
    text = s.log_text()
    assert "end=client_closed" in text and "status=499" in text
    # the backend's window holds only the first request: the second's admission was undone
    for _ in range(4):
        assert s.chat(CHAT).status == 200
    assert a.stats()["requests"] == 5
    assert s.chat(CHAT).status == 429  # the sixth is over rpm = 5
