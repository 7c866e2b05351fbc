"""Long-period quotas, prompt caps, shadow mode and the admin quota API."""
import datetime
import time

import pytest

from harness import CLIENT_KEY, base_conf

ADMIN = "sk-admin-key-for-tests-0001"
HELLO = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}  # estimate 9


def conf(mock, key_extra, redis=None):
    text = base_conf(mock.url, extra_server=f"admin_key = {ADMIN}", key_extra=key_extra)
    if redis:
        text += f"\n[redis]\nurl = {redis.url}\n"
    return text


def quota(s, name="team-a"):
    return s.request("GET", f"/admin/quota/{name}", key=ADMIN)


@pytest.mark.parametrize("use_redis", [False, True])
def test_quota_charged_with_real_usage(mock, start_sluice, use_redis, request):
    redis = request.getfixturevalue("redis") if use_redis else None
    s = start_sluice(conf(mock, "quota = 35\nquota_period = month", redis))
    # Each request reserves its estimate (9) and is charged 2 + 8 = 10 real tokens.
    assert [s.chat(HELLO).status for _ in range(3)] == [200, 200, 200]
    r = s.chat(HELLO)
    assert r.status == 429
    err = r.error()
    assert err["code"] == "insufficient_quota" and err["type"] == "insufficient_quota"
    assert r.headers["x-should-retry"] == "false"
    assert "used 30 of 35 tokens this month" in err["message"]
    q = quota(s).json()
    assert q["used"] == 30 and q["remaining"] == 5 and q["quota"] == 35 and q["period"] == "month"
    assert q["period_id"] == "m" + datetime.datetime.utcnow().strftime("%Y%m")
    assert q["resets_at"].endswith("-01T00:00:00Z")
    assert mock.stats()["requests"] == 3


def test_quota_shared_by_two_nodes(mock, redis, start_sluice):
    a = start_sluice(conf(mock, "quota = 100\nquota_period = day", redis))
    b = start_sluice(conf(mock, "quota = 100\nquota_period = day", redis))
    statuses = [(a if i % 2 else b).chat(HELLO).status for i in range(12)]
    assert statuses == [200] * 10 + [429] * 2  # 10 x 10 tokens, whichever node served
    assert quota(a).json()["used"] == 100 and quota(b).json()["used"] == 100


def seconds_to_next(kind):
    now = datetime.datetime.now(datetime.timezone.utc)
    if kind == "day":
        nxt = (now + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        y, m = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
        nxt = now.replace(year=y, month=m, day=1, hour=0, minute=0, second=0, microsecond=0)
    return (nxt - now).total_seconds()


@pytest.mark.parametrize("use_redis", [False, True])
@pytest.mark.parametrize("period", ["day", "month"])
def test_period_rollover(mock, start_sluice, use_redis, period, request):
    redis = request.getfixturevalue("redis") if use_redis else None
    # The test clock hook moves the quota clock to 1.5 s before the period ends.
    offset = int(seconds_to_next(period) - 1.5)
    s = start_sluice(conf(mock, f"quota = 20\nquota_period = {period}", redis),
                     extra_env={"SLUICE_CLOCK_OFFSET_S": str(offset)})
    assert [s.chat(HELLO).status for _ in range(3)] == [200, 200, 429]
    before = quota(s).json()
    assert before["used"] == 20 and before["reset_ms"] <= 2600  # the offset is whole seconds
    time.sleep(max(before["reset_ms"], 0) / 1000 + 0.3)
    after = quota(s).json()
    assert after["used"] == 0 and after["period_id"] != before["period_id"]
    assert s.chat(HELLO).status == 200  # a new period, a fresh quota


def test_total_quota_never_resets_by_itself(mock, start_sluice):
    s = start_sluice(conf(mock, "quota = 10\nquota_period = total"))
    assert [s.chat(HELLO).status for _ in range(2)] == [200, 429]
    q = quota(s).json()
    assert q["period"] == "total" and q["reset_ms"] is None and q["resets_at"] is None


@pytest.mark.parametrize("use_redis", [False, True])
def test_admin_reset_and_delta(mock, start_sluice, use_redis, request):
    redis = request.getfixturevalue("redis") if use_redis else None
    s = start_sluice(conf(mock, "quota = 30\nquota_period = day", redis))
    for _ in range(3):
        s.chat(HELLO)
    assert s.chat(HELLO).status == 429
    r = s.request("POST", "/admin/quota/team-a/reset", key=ADMIN)
    assert r.status == 200 and r.json()["used"] == 0
    assert s.chat(HELLO).status == 200
    r = s.request("POST", "/admin/quota/team-a/delta", {"tokens": 15}, key=ADMIN)
    assert r.json()["used"] == 25
    assert s.chat(HELLO).status == 429  # 25 + 9 > 30
    r = s.request("POST", "/admin/quota/team-a/delta", {"tokens": -1000}, key=ADMIN)
    assert r.json()["used"] == 0  # never below zero
    assert s.chat(HELLO).status == 200


@pytest.mark.parametrize("method,path,body,status,param", [
    ("POST", "/admin/quota/team-a/delta", "not json", 400, "tokens"),
    ("POST", "/admin/quota/team-a/delta", "{}", 400, "tokens"),
    ("POST", "/admin/quota/team-a/delta", '{"tokens":"5"}', 400, "tokens"),
    ("POST", "/admin/quota/team-a/delta", '{"tokens":1.5}', 400, "tokens"),
    ("POST", "/admin/quota/team-a/delta", '{"tokens":1e300}', 400, "tokens"),
    ("POST", "/admin/quota/team-a/delta", "[1]", 400, "tokens"),
    ("POST", "/admin/quota/nobody/delta", '{"tokens":1}', 404, None),
    ("GET", "/admin/quota/nobody", None, 404, None),
    ("POST", "/admin/quota/team-b/reset", None, 400, None),  # team-b has no quota
    ("GET", "/admin/quota/team-a/reset", None, 405, None),
    ("DELETE", "/admin/quota/team-a", None, 405, None),
    ("POST", "/admin/quota/team-a/explode", None, 404, None),
])
def test_admin_quota_bad_input(mock, start_sluice, method, path, body, status, param):
    s = start_sluice(conf(mock, "quota = 30\nquota_period = day"))
    r = s.request(method, path, body.encode() if body else None, key=ADMIN)
    assert r.status == status, r.body
    err = r.error()
    assert err["message"]
    if param:
        assert err["param"] == param
    assert quota(s).json()["used"] == 0  # nothing changed


def test_admin_quota_auth(mock, start_sluice):
    s = start_sluice(conf(mock, "quota = 30"))
    assert s.request("GET", "/admin/quota/team-a", key=None).status == 401
    assert s.request("POST", "/admin/quota/team-a/reset", key=CLIENT_KEY).status == 401
    off = start_sluice(base_conf(mock.url, key_extra="quota = 30"))
    assert off.request("GET", "/admin/quota/team-a", key=ADMIN).status == 404
    q = s.request("GET", "/admin/quota/team-b", key=ADMIN).json()
    assert q["quota"] is None and q["remaining"] is None


def test_max_prompt_tokens(mock, start_sluice):
    s = start_sluice(conf(mock, "max_prompt_tokens = 10\nrpm = 5\nquota = 1000"))
    r = s.chat({"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 40}]})  # 3+10+3
    assert r.status == 413
    assert r.error()["code"] == "prompt_too_large" and r.headers["x-should-retry"] == "false"
    assert mock.stats()["requests"] == 0
    r = s.chat(HELLO)  # nothing was reserved by the refused one
    assert r.status == 200 and r.headers["x-ratelimit-remaining-requests"] == "4"
    assert quota(s).json()["used"] == 10


def test_shadow_mode_counts_but_never_refuses(mock, start_sluice):
    s = start_sluice(conf(mock, "mode = shadow\nrpm = 2\nquota = 15\nmax_prompt_tokens = 5"))
    statuses = [s.chat(HELLO) for _ in range(4)]
    assert [r.status for r in statuses] == [200] * 4
    assert statuses[-1].headers["x-ratelimit-remaining-requests"] == "0"
    assert mock.stats()["requests"] == 4
    from test_operations import scrape, value
    m = scrape(s)
    assert value(m, "sluice_rate_limited_total", key="team-a", dimension="prompt_tokens") == 4
    assert value(m, "sluice_rate_limited_total", key="team-a", dimension="requests") == 2
    assert value(m, "sluice_rate_limited_total", key="team-a", dimension="quota") == 1
    assert quota(s).json()["used"] == 40  # shadow keys are still charged
    assert "shadow: key team-a would be refused" in s.log_text()
