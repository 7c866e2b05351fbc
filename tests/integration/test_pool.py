"""The backend pool with several mock upstreams: priority groups and their
return, weight shares, breaker timing and its single probe, Retry-After
opening a breaker, breakers shared by workers, 503 when every one is open.
Retries and what each upstream failure looks like: test_failover.py."""
import time
from concurrent.futures import ThreadPoolExecutor

from harness import CLIENT_KEY, MOCK_HEADERS, UPSTREAM_KEY


def pool_conf(backends, server="", key=""):
    text = f"[server]\nlisten = 127.0.0.1:{{port}}\n{server}\n"
    for name, mock, extra in backends:
        text += f"[backend {name}]\nurl = {mock.url}\napi_key = {UPSTREAM_KEY}\n{MOCK_HEADERS}\n{extra}\n"
    return text + f"[key k]\nkey = {CLIENT_KEY}\n{key}\n"


def mocks(start_mock, n):
    return [start_mock() for _ in range(n)]


def counts(ms):
    return [m.stats()["requests"] for m in ms]


def test_weight_shares(start_mock, start_sluice):
    ms = mocks(start_mock, 3)
    s = start_sluice(pool_conf([("a", ms[0], "weight = 1"), ("b", ms[1], "weight = 2"),
                                ("c", ms[2], "weight = 5")]))
    c = s.conn()
    for _ in range(400):
        assert s.chat(conn=c).status == 200
    c.close()
    shares = [n / 400 for n in counts(ms)]
    for got, want in zip(shares, [1 / 8, 2 / 8, 5 / 8]):
        assert abs(got - want) < 0.02, shares
    # Smooth: the heavy backend never gets long runs while others starve.


def test_priority_failover_and_return(start_mock, start_sluice):
    primary, secondary = mocks(start_mock, 2)
    s = start_sluice(pool_conf([
        ("primary", primary, "priority = 1\nbreaker_failures = 2\nbreaker_trip = 800ms"),
        ("secondary", secondary, "priority = 2")]))
    for _ in range(5):
        assert s.chat().status == 200
    assert counts([primary, secondary]) == [5, 0]  # the higher group is idle while primary serves
    primary.configure(status=500)
    # The first two requests fail on primary and are retried on secondary;
    # then primary's breaker is open and it gets nothing.
    for _ in range(6):
        assert s.chat().status == 200
    assert counts([primary, secondary]) == [7, 6]
    primary.reset()
    time.sleep(0.9)  # breaker_trip: half-open, one probe, success closes it
    for _ in range(4):
        assert s.chat().status == 200
    assert primary.stats()["requests"] == 4 and secondary.stats()["requests"] == 6


def test_breaker_timing_and_single_probe(start_mock, start_sluice):
    a, b = mocks(start_mock, 2)
    s = start_sluice(pool_conf([
        ("a", a, "breaker_failures = 3\nbreaker_window = 2s\nbreaker_trip = 1s"),
        ("b", b, "")], server="max_attempts = 1"))
    a.configure(status=503)
    c = s.conn()
    statuses = [s.chat(conn=c).status for _ in range(6)]
    # a, b alternate; a's 3 failures in the window open it; then only b.
    assert statuses.count(503) == 3
    assert a.stats()["requests"] == 3
    opened = time.time()
    for _ in range(10):
        assert s.chat(conn=c).status == 200
    assert a.stats()["requests"] == 3  # nothing reaches an open backend
    while time.time() - opened < 1.05:
        time.sleep(0.02)
    # Half-open: of 12 concurrent requests exactly one probes a (and fails).
    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(lambda _: s.chat().status, range(12)))
    assert a.stats()["requests"] == 4
    assert got.count(503) == 1
    # The failed probe reopened it for another breaker_trip.
    for _ in range(6):
        assert s.chat(conn=c).status == 200
    assert a.stats()["requests"] == 4
    a.reset()
    time.sleep(1.05)
    for _ in range(6):
        s.chat(conn=c)
    assert a.stats()["requests"] == 3  # closed again: back in rotation
    c.close()


def test_retry_after_opens_for_its_duration(start_mock, start_sluice):
    a, b = mocks(start_mock, 2)
    s = start_sluice(pool_conf([("a", a, "breaker_trip = 30s"), ("b", b, "")]))
    a.configure(status=429, retry_after_ms="1200", fail_count=1)
    c = s.conn()
    assert s.chat(conn=c).status == 200  # a's 429 was retried on b
    for _ in range(8):
        assert s.chat(conn=c).status == 200
    assert a.stats()["requests"] == 1  # a receives nothing while its Retry-After runs
    time.sleep(1.3)
    for _ in range(4):
        assert s.chat(conn=c).status == 200
    assert a.stats()["requests"] == 3  # 1.2 s, not breaker_trip's 30 s
    c.close()


def test_retry_after_date_and_garbage(start_mock, start_sluice):
    a, b = mocks(start_mock, 2)
    s = start_sluice(pool_conf([("a", a, "breaker_trip = 700ms"), ("b", b, "")]))
    a.configure(status=429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT", fail_count=1)
    assert s.chat().status == 200  # a date in the past: opens for ~0 ms
    a.configure(status=503, retry_after="soon-ish", fail_count=1)
    s.chat()
    s.chat()  # garbage: ignored, the failure counts normally
    assert all(r == 200 for r in [s.chat().status for _ in range(4)])


def test_503_when_all_open_with_retry_after(start_mock, start_sluice):
    a, b = mocks(start_mock, 2)
    s = start_sluice(pool_conf([("a", a, "breaker_failures = 1\nbreaker_trip = 3s"),
                                ("b", b, "breaker_failures = 1\nbreaker_trip = 5s")]))
    a.configure(status=500)
    b.configure(status=500)
    r = s.chat()
    assert r.status == 500  # both tried, both failed: the last failure as it was
    r = s.chat()
    assert r.status == 503
    assert r.error()["code"] == "no_backend_available"
    assert r.headers["retry-after"] == "3"  # until a half-opens
    assert counts([a, b]) == [1, 1]


def test_breaker_state_is_shared_by_workers(start_mock, start_sluice):
    a, b = mocks(start_mock, 2)
    s = start_sluice(pool_conf([("a", a, "priority = 1\nbreaker_failures = 2\nbreaker_trip = 60s"),
                                ("b", b, "priority = 2")], server="workers = 2"))
    a.configure(status=500)
    # New connections spread over both workers; the failures they see add up
    # in one breaker, so a gets exactly breaker_failures requests.
    assert [s.chat().status for _ in range(12)] == [200] * 12
    assert a.stats()["requests"] == 2
    assert b.stats()["requests"] == 12
