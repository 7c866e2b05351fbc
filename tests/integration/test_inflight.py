"""max_inflight: requests of a key (or of all a team's keys) open at once,
streams included, across every node sharing Redis, checked in the same atomic
call as the other limits; slots are leases that a dead node's requests give
up by themselves (docs/limits.md, "Concurrency")."""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import CLIENT_KEY, MOCK_HEADERS, OTHER_KEY, UPSTREAM_KEY, Sluice
from test_operations import scrape, value

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}], "stream": True}
SLOW = {"x-mock-chunk-delay-ms": "250"}  # 8 chunks: a stream stays open 2 s


def conf(mock, redis, key_extra, other_extra="", team=""):
    red = f"[redis]\nurl = {redis.url}\ntimeout = 500ms\n" if redis else ""
    return (f"[server]\nlisten = 127.0.0.1:{{port}}\n{red}"
            f"[backend main]\nurl = {mock.url}\napi_key = {UPSTREAM_KEY}\n{MOCK_HEADERS}\n"
            f"[key team-a]\nkey = {CLIENT_KEY}\n{key_extra}\n"
            f"[key team-b]\nkey = {OTHER_KEY}\n{other_extra}\n{team}")


def burst(calls):
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda f: f(), calls))


def stream(s, key=CLIENT_KEY, headers=SLOW):
    """(status, headers, events): the whole stream read."""
    c, r = s.stream(headers={**headers, "Authorization": f"Bearer {key}"}, body=CHAT)
    body = r.read().decode()
    c.close()
    return r.status, r.headers, body


def concurrency_refusal(status, headers, body):
    return (status == 429 and headers["retry-after"] == "1" and '"type":"concurrency"' in
            body.replace(" ", "") and '"code":"rate_limit_exceeded"' in body.replace(" ", ""))


@pytest.mark.parametrize("nodes_n", [1, 3, "cluster"])
def test_max_inflight_holds_across_nodes(start_mock, start_sluice, request, nodes_n):
    """40 slow streams at once over 1 node (in-process) or 3 nodes sharing
    Redis: 5 are open at the mock, never more; the other 35 get 429 of type
    concurrency with Retry-After 1; the slots come back when the streams end."""
    redis = request.getfixturevalue("redis" if nodes_n == 3 else "cluster") if nodes_n != 1 else None
    len_nodes = 1 if nodes_n == 1 else 3
    mock = start_mock()
    nodes = [start_sluice(conf(mock, redis, "max_inflight = 5")) for _ in range(len_nodes)]
    results = burst([lambda i=i: stream(nodes[i % len_nodes]) for i in range(40)])
    ok = [r for r in results if r[0] == 200]
    assert len(ok) == 5
    assert all(r[2].rstrip().endswith("data: [DONE]") for r in ok)  # every event of each
    assert all(r[1]["x-ratelimit-limit-inflight"] == "5" for r in ok)
    assert sorted(int(r[1]["x-ratelimit-remaining-inflight"]) for r in ok) == [0, 1, 2, 3, 4]
    refused = [r for r in results if r[0] != 200]
    assert len(refused) == 35 and all(concurrency_refusal(*r) for r in refused)
    assert "Too many concurrent requests for key team-a: Limit 5, Open 5." in refused[0][2]
    assert mock.stats()["max_inflight"] == 5
    # every slot is free again: five more at once are all admitted
    assert [r[0] for r in burst([lambda i=i: stream(nodes[i % len_nodes], headers={})
                                 for i in range(5)])] == [200] * 5
    for s in nodes:
        m = scrape(s)
        assert value(m, "sluice_inflight", key="team-a") == 0
        assert ("sluice_inflight", (("key", "team-b"),)) not in m  # only keys with the limit
        assert value(m, "sluice_rate_limited_total", key="team-a", dimension="inflight") == \
            sum(1 for r in refused if r in results[nodes.index(s)::len_nodes])


@pytest.mark.parametrize("use_redis", [False, True])
def test_team_max_inflight_counts_every_key(start_mock, start_sluice, request, use_redis):
    redis = request.getfixturevalue("redis") if use_redis else None
    mock = start_mock()
    team = "[team platform]\nmax_inflight = 3\n"
    s = start_sluice(conf(mock, redis, "team = platform", "team = platform", team))
    first = burst([lambda: stream(s)] * 2)
    assert [r[0] for r in first] == [200, 200]
    with ThreadPoolExecutor(max_workers=4) as pool:
        held = [pool.submit(stream, s, CLIENT_KEY), pool.submit(stream, s, CLIENT_KEY),
                pool.submit(stream, s, OTHER_KEY)]
        time.sleep(0.8)  # the three are open
        late = stream(s, OTHER_KEY, headers={})
        assert concurrency_refusal(*late)
        assert "team platform (of key team-b): Limit 3, Open 3" in late[2]
        assert [f.result()[0] for f in held] == [200] * 3
    assert stream(s, OTHER_KEY, headers={})[0] == 200


def test_a_dead_nodes_slots_free_within_the_lease(start_mock, start_sluice, redis, tmp):
    """Leases of 1.5 s (SLUICE_LEASE_MS): a live node's long streams keep
    their slots past the lease (renewed), and the slots of a node killed with
    5 streams open come free by themselves within one lease."""
    mock = start_mock()
    env = {"SLUICE_LEASE_MS": "1500"}
    b = start_sluice(conf(mock, redis, "max_inflight = 5"), extra_env=env)
    a = Sluice(tmp, conf(mock, redis, "max_inflight = 5"), extra_env=env)  # to be killed
    try:
        hang = {"x-mock-stall-after": "1"}  # one event, then the stream stays open
        held = []
        for _ in range(5):
            c, r = a.stream(headers=hang, body=CHAT)
            assert r.status == 200
            r.fp.readline()
            held.append(c)
        time.sleep(2.5)  # past the lease: renewed every 0.5 s, so still held
        assert concurrency_refusal(*stream(b, headers={}))
        assert redis.call("ZCARD", "sluice:{team-a}:f") == 5
        a.proc.kill()  # no settlement, no more renewals
        a.proc.wait()
        killed = time.time()
        while time.time() - killed < 5:
            r = stream(b, headers={})
            if r[0] == 200:
                break
            assert concurrency_refusal(*r)
            time.sleep(0.1)
        freed = time.time() - killed
        assert r[0] == 200
        assert 0.5 < freed < 1.5 + 0.6  # at most a lease after the last renewal
        for c in held:
            c.close()
    finally:
        if a.proc.poll() is None:
            a.proc.kill()


def test_an_admission_redis_runs_after_the_timeout_takes_no_slot(start_mock, start_sluice, redis):
    """Redis paused past [redis] timeout while a node admits: the node gives
    up and decides in process (on_error = local), and the admission, run by
    Redis once the pause ends, is past the deadline it carries: it takes no
    slot, so the other node is not refused for a lease's length."""
    mock = start_mock()
    c = conf(mock, redis, "max_inflight = 1").replace("timeout = 500ms", "timeout = 200ms")
    a, b = start_sluice(c), start_sluice(c)
    for node in (a, b):  # connected, their clocks read
        assert stream(node, headers={})[0] == 200
    deadline = time.time() + 3  # the slots go back with the settlements, just after the answers
    while redis.call("ZCARD", "sluice:{team-a}:f") and time.time() < deadline:
        time.sleep(0.02)
    assert redis.call("ZCARD", "sluice:{team-a}:f") == 0
    redis.call("CLIENT", "PAUSE", "1500", "ALL")
    paused = time.time()
    status = stream(a, headers={})[0]  # decided in process after 200 ms
    assert status == 200 and time.time() - paused < 1.2
    while time.time() - paused < 1.8:  # the pause ends; Redis runs what it held
        time.sleep(0.05)
    assert redis.call("ZCARD", "sluice:{team-a}:f") == 0  # no slot left by the late admission
    assert stream(b, headers={})[0] == 200  # so the other node admits at once
