"""queue_timeout: a request the limiter refuses on requests, tokens or
max_inflight waits for room, FIFO per key, instead of getting 429 (docs/limits.md,
"Waiting instead of 429"); on the in-process limiter and in Redis."""
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import CLIENT_KEY, MOCK_HEADERS, UPSTREAM_KEY
from test_failover import access_lines
from test_operations import scrape, value

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
WINDOW = {"SLUICE_WINDOW_MS": "2000"}


def conf(mock, redis, key_extra):
    red = f"[redis]\nurl = {redis.url}\ntimeout = 500ms\n" if redis else ""
    return (f"[server]\nlisten = 127.0.0.1:{{port}}\n{red}"
            f"[backend main]\nurl = {mock.url}\napi_key = {UPSTREAM_KEY}\n{MOCK_HEADERS}\n"
            f"[key team-a]\nkey = {CLIENT_KEY}\n{key_extra}\n")


def timed(s, headers=None, body=CHAT):
    began = time.time()
    r = s.chat(body, headers=headers or {})
    return r.status, time.time() - began, r


def burst(calls):
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda f: f(), calls))


@pytest.fixture(params=["in-process", "redis"])
def limiter(request):
    return request.getfixturevalue("redis") if request.param == "redis" else None


def test_waiting_instead_of_429(start_mock, start_sluice, limiter):
    """rpm = 10 in a 2 s window, 15 at once: 10 answer at once, the other 5
    wait about one window and answer 200; none gets 429."""
    mock = start_mock()
    s = start_sluice(conf(mock, limiter, "rpm = 10\nqueue_timeout = 3s"), extra_env=WINDOW)
    results = burst([lambda: timed(s)] * 15)
    assert [st for st, _, _ in results] == [200] * 15
    waits = sorted(t for _, t, _ in results)
    assert all(t < 1.0 for t in waits[:10])
    assert all(1.5 < t < 2.9 for t in waits[10:])
    lines = access_lines(s, 15)
    queued = sorted(int(re.search(r" queued_ms=(\d+) ", l).group(1)) for l in lines)
    assert queued[:10] == [0] * 10 and all(1400 < q < 2900 for q in queued[10:])
    m = scrape(s)
    assert value(m, "sluice_queue_wait_seconds_count") == 5
    assert 7 < value(m, "sluice_queue_wait_seconds_sum") < 14.5
    assert value(m, "sluice_queued_requests") == 0
    assert value(m, "sluice_rate_limited_total", key="team-a", dimension="requests") == 0
    assert mock.stats()["requests"] == 15


def test_without_queue_timeout_the_same_load_gets_429(start_mock, start_sluice, limiter):
    mock = start_mock()
    s = start_sluice(conf(mock, limiter, "rpm = 10\nqueue_timeout = 0"), extra_env=WINDOW)
    statuses = sorted(st for st, _, _ in burst([lambda: timed(s)] * 15))
    assert statuses == [200] * 10 + [429] * 5


def test_a_wait_longer_than_the_patience_is_429_at_once(start_mock, start_sluice, limiter):
    """Room in 2 s but queue_timeout 1s, or the SDK's own timeout
    (x-stainless-timeout) shorter than the wait: 429 without waiting."""
    mock = start_mock()
    s = start_sluice(conf(mock, limiter, "rpm = 2\nqueue_timeout = 1s"), extra_env=WINDOW)
    assert [timed(s)[0] for _ in range(2)] == [200, 200]
    st, took, r = timed(s)
    assert st == 429 and took < 0.5 and r.headers["retry-after"] == "2"
    s2 = start_sluice(conf(mock, limiter, "rpm = 2\nqueue_timeout = 10s"), extra_env=WINDOW)
    assert [timed(s2)[0] for _ in range(2)] == [200, 200]
    st, took, _ = timed(s2, headers={"x-stainless-timeout": "1"})
    assert st == 429 and took < 0.5
    st, took, _ = timed(s2, headers={"x-stainless-timeout": "5"})
    assert st == 200 and 1.0 < took < 2.9


def test_waiting_for_a_slot_is_fifo(start_mock, start_sluice, limiter):
    """max_inflight = 2 and queue_timeout: requests sent one after another
    while two slow ones hold the slots are answered in the order they came,
    each as a slot frees, never more than 2 at the mock."""
    mock = start_mock()
    s = start_sluice(conf(mock, limiter, "max_inflight = 2\nqueue_timeout = 10s"))
    slow = {"x-mock-delay-ms": "300"}
    done, lock = [], threading.Lock()

    def one(i):
        st, _, _ = timed(s, headers=slow)
        with lock:
            done.append((i, st))

    threads = []
    for i in range(8):
        t = threading.Thread(target=one, args=(i,))
        t.start()
        threads.append(t)
        time.sleep(0.05)  # they come in this order
    for t in threads:
        t.join()
    assert all(st == 200 for _, st in done)
    assert [i for i, _ in done][2:] == list(range(2, 8))  # the waiting ones: first come, first served
    assert mock.stats()["max_inflight"] == 2
    m = scrape(s)
    assert value(m, "sluice_queued_requests") == 0 and value(m, "sluice_queue_wait_seconds_count") == 6


def test_a_client_that_leaves_while_waiting_frees_its_place(start_mock, start_sluice, limiter):
    mock = start_mock()
    s = start_sluice(conf(mock, limiter, "rpm = 1\nqueue_timeout = 10s"), extra_env=WINDOW)
    assert timed(s)[0] == 200
    c = s.conn()
    c.putrequest("POST", "/v1/chat/completions")
    body = b'{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}'
    for k, v in (("Authorization", f"Bearer {CLIENT_KEY}"), ("Content-Type", "application/json"),
                 ("Content-Length", str(len(body)))):
        c.putheader(k, v)
    c.endheaders(body)
    time.sleep(0.3)
    assert value(scrape(s), "sluice_queued_requests") == 1
    c.close()  # leaves while waiting
    deadline = time.time() + 3
    while value(scrape(s), "sluice_queued_requests") and time.time() < deadline:
        time.sleep(0.05)
    assert value(scrape(s), "sluice_queued_requests") == 0
    assert " status=499 " in access_lines(s, 2)[-1]
    st, took, _ = timed(s)  # the next one is not held behind it
    assert st == 200 and took < 2.9
    assert mock.stats()["requests"] == 2


def test_waiting_does_not_poll_redis(start_mock, start_sluice, redis):
    """The 5 that wait ask Redis again only when room frees: over the ~2 s
    wait the script is called about once per request on each side
    (admission, settlement) plus one retry each, not once per loop pass."""
    mock = start_mock()
    nodes = [start_sluice(conf(mock, redis, "rpm = 10\nqueue_timeout = 3s"), extra_env=WINDOW)
             for _ in range(2)]
    redis.call("CONFIG", "RESETSTAT")
    results = burst([lambda i=i: timed(nodes[i % 2]) for i in range(15)])
    assert [st for st, _, _ in results] == [200] * 15
    assert sorted(t for _, t, _ in results)[-1] > 1.5  # some did wait
    time.sleep(0.3)  # the last settlements
    stats = redis.call("INFO", "commandstats")
    calls = int(re.search(r"cmdstat_fcall:calls=(\d+)", stats).group(1))
    # at most 15 admissions + 15 settlements (fewer: one loop pass's operations
    # of a key share a call, and settlements ride with the key's next admission)
    # + the waiting ones' refusals and retries (a node's
    # head asks at the limiter's time, the next once when woken); polling
    # every loop pass or millisecond would be hundreds
    assert calls <= 60, calls
