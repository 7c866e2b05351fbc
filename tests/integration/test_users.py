"""End users behind API keys (issue #32, its first part): trust_user takes
the user from x-sluice-user or the body, bounded; require_user refuses a
request without one; the access and usage logs say who (user=), and the
header never goes upstream."""
import json
import re
import threading
import time

from harness import CLIENT_KEY, base_conf
from test_failover import last_access

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def test_the_user_comes_from_the_header_or_the_body_and_is_logged(mock, start_sluice, tmp):
    usage = tmp / "usage.jsonl"
    s = start_sluice(base_conf(mock.url, extra_server=f"usage_log = {usage}", key_extra="trust_user = header")
                     + "trust_user = body\nrequire_user = yes\n")  # team-b: the body, required
    assert s.chat(CHAT, headers={"x-sluice-user": "ann@example.com"}).status == 200
    assert last_access(s, 1)["user"] == "ann@example.com"
    assert "x-sluice-user" not in mock.last()["headers"]  # sluice's, not the upstream's
    assert s.chat(CHAT).status == 200 and last_access(s, 2)["user"] == "-"
    r = s.chat(CHAT, headers={"x-sluice-user": "not ok"})
    assert r.status == 400 and "x-sluice-user" in r.error()["message"]
    # team-b: trust_user = body, require_user = yes
    other = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    from harness import OTHER_KEY
    r = s.chat(other, key=OTHER_KEY)
    assert r.status == 400 and r.error()["param"] == "user"
    assert s.chat(dict(other, user="bob"), key=OTHER_KEY, headers={"x-sluice-user": "eve"}).status == 200
    assert last_access(s, 5)["user"] == "bob"  # the key trusts the body, not the header
    assert s.chat(dict(other, safety_identifier="carol-7"), key=OTHER_KEY).status == 200
    assert last_access(s, 6)["user"] == "carol-7"
    deadline = time.time() + 5
    while time.time() < deadline and len(usage.read_text().splitlines() if usage.exists() else []) < 6:
        time.sleep(0.05)
    users = [json.loads(line)["user"] for line in usage.read_text().splitlines()]
    assert users == ["ann@example.com", "-", "-", "-", "bob", "carol-7"]


def test_require_user_needs_a_place_to_find_one(tmp):
    import subprocess
    from harness import SLUICE
    conf = tmp / "u.conf"
    conf.write_text(f"[server]\nlisten = 127.0.0.1:9\n[backend b]\nurl = http://127.0.0.1:9/v1\n"
                    f"[key k]\nkey = {CLIENT_KEY}\nrequire_user = yes\n")
    r = subprocess.run([str(SLUICE), "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1 and "require_user needs trust_user" in r.stdout + r.stderr


# ---- per-user limits (user_*) ------------------------------------------------------

import pytest  # noqa: E402

from test_budgets import FULL, MINI, burst, conf as money_conf, settle_wait  # noqa: E402
from harness import OTHER_KEY  # noqa: E402
from test_queue import WINDOW, timed  # noqa: E402


def user_conf(mock, redis, a, b="", teams=""):
    """Keys a and b (trusting x-sluice-user) and optional teams, priced as test_budgets."""
    return money_conf(mock, {"a": "trust_user = header\n" + a, "b": "trust_user = header\n" + b},
                      redis, teams=teams)


def as_user(u, extra=None):
    return {"x-sluice-user": u, **(extra or {})}


@pytest.mark.parametrize("nodes_n", [1, 3, "cluster"])
def test_each_user_gets_exactly_their_rpm_across_nodes(mock, start_sluice, request, nodes_n):
    """Eight users of one key, ten requests each, all at once, over one node
    (in-process) or three sharing Redis: exactly user_rpm = 3 of each user's
    pass, whichever node each lands on; the key's own rpm is not the limit."""
    redis = request.getfixturevalue("redis" if nodes_n == 3 else "cluster") if nodes_n != 1 else None
    len_nodes = 1 if nodes_n == 1 else 3
    text = user_conf(mock, redis, "rpm = 1000\nuser_rpm = 3")
    nodes = [start_sluice(text) for _ in range(len_nodes)]
    users = [f"user-{i}@example.com" for i in range(8)]
    calls = [lambda i=i: (users[i % 8], nodes[i % len_nodes].chat(
        MINI, headers=as_user(users[i % 8], {"x-mock-delay-ms": "30"})))
        for i in range(80)]
    results = burst(calls)
    for u in users:
        mine = [r.status for who, r in results if who == u]
        assert sorted(mine) == [200] * 3 + [429] * 7, (u, mine)
    refused = next(r for _, r in results if r.status == 429)
    err = refused.error()
    assert err["code"] == "rate_limit_exceeded"
    assert re.search(r"for user user-\d@example\.com of key a on requests per minute: Limit 3, "
                     r"Used 3", err["message"]), err["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert mock.stats()["requests"] == 24


@pytest.mark.parametrize("use_redis", [False, True])
def test_a_user_s_budget_and_the_team_s_per_user_limit_are_exact(mock, start_sluice, use_redis,
                                                                  request):
    """user_budget = $0.003 per user of key a ($0.001 a request: exactly 3 of
    each user's 6), and the team's user_rpm = 4 across its two keys: a user
    with 3 on key a gets 1 more on key b, another user 4 on key b alone.
    Two nodes on Redis, or one in-process; all at once."""
    redis = request.getfixturevalue("redis") if use_redis else None
    teams = "[team platform]\nuser_rpm = 4\n"
    text = user_conf(mock, redis, "team = platform\nuser_budget = 0.003\nuser_budget_period = day",
                     "team = platform", teams)
    nodes = [start_sluice(text) for _ in range(2 if use_redis else 1)]
    full = {**FULL, "x-mock-delay-ms": "30"}
    calls = [lambda i=i: ("ann", "a", nodes[i % len(nodes)].chat(MINI, headers=as_user("ann", full)))
             for i in range(6)]
    calls += [lambda i=i: ("bo", "a", nodes[i % len(nodes)].chat(MINI, headers=as_user("bo", full)))
              for i in range(6)]
    results = burst(calls)
    for u in ("ann", "bo"):
        mine = [r for who, _, r in results if who == u]
        assert sorted(r.status for r in mine) == [200] * 3 + [429] * 3
        err = next(r for r in mine if r.status == 429).error()
        assert err["code"] == "insufficient_quota"
        assert f"user {u} of key a has spent $0.003000 of its $0.003000 today (UTC)" in err["message"]
    # key b has no user limits of its own; the team's user_rpm = 4 counts both keys
    more = burst([lambda i=i: nodes[i % len(nodes)].chat(MINI, key=OTHER_KEY, headers=as_user("ann"))
                  for i in range(4)])
    assert sorted(r.status for r in more) == [200] + [429] * 3
    err = next(r for r in more if r.status == 429).error()
    assert "for user ann of team platform (key b) on requests per minute: Limit 4, Used 4" in err["message"]
    cy = burst([lambda i=i: nodes[i % len(nodes)].chat(MINI, key=OTHER_KEY, headers=as_user("cy"))
                for i in range(6)])
    assert sorted(r.status for r in cy) == [200] * 4 + [429] * 2
    assert mock.stats()["requests"] == 3 + 3 + 1 + 4


@pytest.mark.parametrize("use_redis", [False, True])
def test_a_user_s_requests_in_flight_are_capped(mock, start_sluice, use_redis, request):
    redis = request.getfixturevalue("redis") if use_redis else None
    s = start_sluice(user_conf(mock, redis, "user_max_inflight = 2"))
    slow = {"x-mock-delay-ms": "400"}
    results = burst([lambda i=i: (i % 2, s.chat(MINI, headers=as_user(f"u{i % 2}", slow)))
                     for i in range(10)])
    for u in (0, 1):
        assert sorted(r.status for who, r in results if who == u) == [200] * 2 + [429] * 3
    r = next(r for _, r in results if r.status == 429)
    assert "Too many concurrent requests for user u" in r.error()["message"]
    # freed at the end of each request
    assert s.chat(MINI, headers=as_user("u0")).status == 200


@pytest.mark.parametrize("use_redis", [False, True])
def test_a_user_waits_in_a_line_of_their_own(start_mock, start_sluice, use_redis, request):
    """queue_timeout with user_rpm = 2 in a 2 s window: one user's third and
    fourth requests wait for room, and another user's requests meanwhile pass
    at once instead of lining up behind them."""
    redis = request.getfixturevalue("redis") if use_redis else None
    mock = start_mock()
    s = start_sluice(user_conf(mock, redis, "user_rpm = 2\nqueue_timeout = 3s"), extra_env=WINDOW)
    assert [timed(s, headers=as_user("slowpoke"))[0] for _ in range(2)] == [200, 200]
    out = {}

    def waiting(i):
        out[i] = timed(s, headers=as_user("slowpoke"))

    threads = [threading.Thread(target=waiting, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    other = [timed(s, headers=as_user("other")) for _ in range(2)]
    assert [st for st, _, _ in other] == [200, 200]
    assert all(took < 0.5 for _, took, _ in other)  # not behind slowpoke's waiters
    for t in threads:
        t.join()
    assert [out[i][0] for i in range(2)] == [200, 200]
    assert all(1.0 < out[i][1] < 2.9 for i in range(2))


def test_user_limits_need_a_user_period_and_apply_only_with_a_user(mock, start_sluice, tmp):
    import subprocess
    from harness import SLUICE
    bad = tmp / "bad.conf"
    bad.write_text(f"[server]\nlisten = 127.0.0.1:9\n[backend b]\nurl = http://127.0.0.1:9/v1\n"
                   f"[key k]\nkey = {CLIENT_KEY}\nuser_budget = 1\nuser_budget_period = none\n")
    r = subprocess.run([str(SLUICE), "-t", "-c", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "user_budget needs user_budget_period" in r.stdout + r.stderr
    # without a user, user_rpm does not apply (the key's own limits do)
    s = start_sluice(user_conf(mock, None, "user_rpm = 1"))
    assert [s.chat(MINI).status for _ in range(3)] == [200] * 3
    assert [s.chat(MINI, headers=as_user("x")).status for _ in range(2)] == [200, 429]


@pytest.mark.parametrize("use_redis", [False, True])
def test_the_admin_api_shows_a_user_and_resets_their_budget(mock, start_sluice, use_redis, request):
    from test_budgets import admin
    redis = request.getfixturevalue("redis") if use_redis else None
    teams = "[team platform]\nuser_rpm = 10\nuser_budget = 0.01\nuser_budget_period = week\n"
    s = start_sluice(user_conf(mock, redis, "team = platform\nuser_rpm = 5\nuser_budget = 0.002\n"
                               "user_budget_period = day\nuser_max_inflight = 4", teams=teams))
    assert [s.chat(MINI, headers=as_user("dee@x.io", FULL)).status for _ in range(3)] == \
        [200, 200, 429]
    settle_wait(lambda: admin(s, "/admin/users/dee@x.io?key=a").json()["per_key"]["spend"]
                ["spent"] == 0.002)
    v = admin(s, "/admin/users/dee@x.io?key=a").json()
    assert v["user"] == "dee@x.io" and v["key"] == "a" and v["team"] == "platform"
    assert v["limiter"] == ("redis" if use_redis else "local")
    assert v["per_key"]["requests"] == {"limit": 5, "used": 2, "remaining": 3}
    assert v["per_key"]["inflight"] == {"limit": 4, "used": 0}
    assert v["per_key"]["spend"]["budget"] == 0.002 and v["per_key"]["spend"]["remaining"] == 0
    assert v["per_key"]["spend"]["period"] == "day"
    assert v["per_team"]["requests"]["used"] == 2 and v["per_team"]["spend"]["spent"] == 0.002
    assert v["per_team"]["spend"]["period"] == "week"
    # another user is untouched
    other = admin(s, "/admin/users/eve?key=a").json()
    assert other["per_key"]["requests"]["used"] == 0 and other["per_key"]["spend"]["spent"] == 0
    r = admin(s, "/admin/users/dee@x.io/budget/reset?key=a", {})
    assert r.status == 200, r.body
    after = r.json()
    assert after["per_key"]["spend"]["spent"] == 0 and after["per_team"]["spend"]["spent"] == 0
    assert s.chat(MINI, headers=as_user("dee@x.io", FULL)).status == 200
    # errors: no key named, an unknown key, a bad id, the wrong method
    assert admin(s, "/admin/users/dee@x.io").status == 400
    assert admin(s, "/admin/users/dee@x.io?key=nope").status == 404
    assert admin(s, "/admin/users/bad%20id?key=a").status == 404
    assert admin(s, "/admin/users/dee@x.io/budget/reset?key=a").status == 405
    assert s.request("GET", "/admin/users/dee@x.io?key=a", None, key=CLIENT_KEY).status == 401


def test_per_user_metrics_only_when_asked_and_under_a_cap(mock, start_sluice):
    from test_operations import scrape, value
    text = user_conf(mock, None, "user_rpm = 2")
    s = start_sluice(text)
    s.chat(MINI, headers=as_user("ann", FULL))
    assert not any(name.startswith("sluice_user_") for name, _ in scrape(s))  # off by default
    s2 = start_sluice(text.replace("[server]", "[server]\nmax_user_labels = 2"))
    for u in ("ann", "bo", "cy", "di"):
        assert s2.chat(MINI, headers=as_user(u, FULL)).status == 200
    assert s2.chat(MINI, headers=as_user("ann", FULL)).status == 200
    assert s2.chat(MINI, headers=as_user("ann", FULL)).status == 429
    m = scrape(s2)
    assert value(m, "sluice_user_requests_total", key="a", user="ann", code="200") == 2
    assert value(m, "sluice_user_requests_total", key="a", user="ann", code="429") == 1
    assert value(m, "sluice_user_requests_total", key="a", user="bo", code="200") == 1
    # cy and di came after the cap of 2: counted together as other
    assert value(m, "sluice_user_requests_total", key="a", user="other", code="200") == 2
    assert value(m, "sluice_user_tokens_total", key="a", user="ann", direction="output") == 200
    assert value(m, "sluice_user_spend_usd_total", key="a", user="ann") == 0.002
    assert not any(dict(labels).get("user") in ("cy", "di") for _, labels in m)
    assert value(m, "sluice_rate_limited_total", key="a", dimension="user_requests") == 1


@pytest.mark.parametrize("nodes_n", [1, 3, "cluster"])
def test_a_user_s_input_tokens_are_exact_across_nodes(mock, start_sluice, request, nodes_n):
    """user_input_tpm = 40 with requests of 9 estimated prompt tokens: 4 of each
    user's 8 concurrent requests fit (36), over one node or three on Redis."""
    from test_budgets import HELLO  # estimate 9
    redis = request.getfixturevalue("redis" if nodes_n == 3 else "cluster") if nodes_n != 1 else None
    len_nodes = 1 if nodes_n == 1 else 3
    nodes = [start_sluice(user_conf(mock, redis, "user_input_tpm = 40")) for _ in range(len_nodes)]
    calls = [lambda i=i: (i % 5, nodes[i % len_nodes].chat(
        HELLO, headers=as_user(f"p{i % 5}", {"x-mock-delay-ms": "30"}))) for i in range(40)]
    results = burst(calls)
    for u in range(5):
        assert sorted(r.status for who, r in results if who == u) == [200] * 4 + [429] * 4
    r = next(r for _, r in results if r.status == 429)
    assert "on input tokens per minute: Limit 40" in r.error()["message"]


def test_a_runtime_key_takes_user_limits(mock, start_sluice, tmp):
    from test_runtime_keys import chat as rt_chat, conf as rt_conf, make
    s = start_sluice(rt_conf(mock.url, tmp / "state"))
    made = make(s, "app", trust_user="header", user_rpm=1)
    assert made["user_rpm"] == 1 and made["trust_user"] == "header"
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
    statuses = [s.request("POST", "/v1/chat/completions", body, key=made["key"],
                          headers=as_user(u)).status for u in ("a", "a", "b")]
    assert statuses == [200, 429, 200]
    assert rt_chat(s, made["key"]).status == 200  # no user: no user_* limit
