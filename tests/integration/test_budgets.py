"""Money: prices and the cost of every request, budgets of keys and teams
(reserved at admission, reconciled at settlement, exact across nodes), team
rate limits, periods, shadow mode, the admin budget API and the metrics."""
import datetime
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import CLIENT_KEY, MOCK_HEADERS, OTHER_KEY, UPSTREAM_KEY
from test_failover import access_lines

ADMIN = "sk-admin-key-for-tests-0001"
THIRD_KEY = "sk-third-client-key-0003"
# gpt-4o at list prices; gpt-4o-mini priced on output only, so that a request
# with max_tokens = 100 that gets 100 tokens costs exactly its reservation:
# 100 x $10 / 1M = $0.001.
PRICES = """
[model gpt-4o]
input_price = 2.50
cached_input_price = 1.25
output_price = 10.00

[model gpt-4o-mini]
input_price = 0
output_price = 10.00
"""
HELLO = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}  # estimate 9
MINI = {"model": "gpt-4o-mini", "max_tokens": 100,
        "messages": [{"role": "user", "content": "hello there"}]}
FULL = {"x-mock-completion-tokens": "100"}  # the mock answers max_tokens tokens: $0.001
KEYS = {"a": CLIENT_KEY, "b": OTHER_KEY, "c": THIRD_KEY}


def conf(mock, keys, redis=None, teams="", server=""):
    """keys: {name: extra lines}; names a, b, c use the three client keys."""
    text = f"""
[server]
listen = 127.0.0.1:{{port}}
admin_key = {ADMIN}
{server}

[backend main]
url = {mock.url}
api_key = {UPSTREAM_KEY}
{MOCK_HEADERS}
{PRICES}
{teams}
"""
    for name, extra in keys.items():
        text += f"\n[key {name}]\nkey = {KEYS[name]}\n{extra}\n"
    if redis:
        text += f"\n[redis]\nurl = {redis.url}\n"
    return text


def micro(usd):
    return round(float(usd) * 1e6)


def admin(s, path, body=None):
    return s.request("POST" if body is not None else "GET", path, body, key=ADMIN)


def spent(s, scope, name):
    r = admin(s, f"/admin/budgets/{scope}/{name}")
    assert r.status == 200, r.body
    return micro(r.json()["spent"])


def costs_logged(nodes, key=None):
    """Micro-dollars of every access line (of the key) in the nodes' logs."""
    total = 0
    for s in nodes:
        for line in s.log_text().splitlines():
            if " access " in line and (key is None or f" key={key} " in line):
                total += micro(re.search(r" cost_usd=([0-9.]+) ", line).group(1))
    return total


def burst(calls):
    """Runs the calls concurrently; returns their results in order."""
    with ThreadPoolExecutor(max_workers=min(len(calls), 48)) as pool:
        return list(pool.map(lambda f: f(), calls))


def settle_wait(check, timeout=5.0):
    end = time.time() + timeout
    while not check() and time.time() < end:
        time.sleep(0.05)
    assert check()


# ---- the cost of a request ------------------------------------------------------

@pytest.mark.parametrize("use_redis", [False, True])
def test_cost_in_log_metrics_headers_and_budget(mock, start_sluice, use_redis, request):
    redis = request.getfixturevalue("redis") if use_redis else None
    s = start_sluice(conf(mock, {"a": "budget = 1.00\nbudget_period = day"}, redis))
    # 1000 prompt tokens, 400 of them cached; 8 completion tokens, 5 of them reasoning:
    # 600 x 2.50 + 400 x 1.25 + 8 x 10.00 per 1M = 1500 + 500 + 80 micro-dollars.
    usage = {"x-mock-prompt-tokens": "1000", "x-mock-cached-tokens": "400",
             "x-mock-reasoning-tokens": "5"}
    r = s.chat(HELLO, headers=usage)
    assert r.status == 200
    assert r.json()["usage"]["completion_tokens_details"]["reasoning_tokens"] == 5
    # The admission reserved 9 estimated prompt tokens and 1000 output tokens (no max_tokens):
    # ceil(9 x 2.5 + 1000 x 10) = 10023 micro-dollars.
    assert r.headers["x-ratelimit-limit-budget"] == "1.000000"
    assert r.headers["x-ratelimit-remaining-budget"] == "0.989977"
    assert re.fullmatch(r"\d+m\d+(\.\d+)?s|\d+(\.\d+)?s", r.headers["x-ratelimit-reset-budget"])
    assert spent(s, "keys", "a") == 2080
    # the next one sees the first one's real cost and its own reservation
    r = s.chat(HELLO, headers=usage)
    assert r.headers["x-ratelimit-remaining-budget"] == "0.987897"
    # a stream reports usage in its last chunk; the Responses API in its own fields
    status, events = s.stream_events(headers=usage)
    assert status == 200 and events[-1] == "data: [DONE]"
    r = s.request("POST", "/v1/responses", {"model": "gpt-4o", "input": "hi"},
                  headers={**usage, "x-mock-completion-tokens": "20"})
    assert r.status == 200
    assert r.json()["usage"]["input_tokens_details"]["cached_tokens"] == 400
    # 1500 + 500 + 20 x 10 = 2200
    settle_wait(lambda: spent(s, "keys", "a") == 3 * 2080 + 2200)
    lines = access_lines(s, 4)
    assert len(lines) == 4
    assert all(" team=- " in l for l in lines)
    assert [re.search(r" cost_usd=(\S+) ", l).group(1) for l in lines] == \
        ["0.002080", "0.002080", "0.002080", "0.002200"]
    metrics = s.request("GET", "/metrics", key=None).body.decode()
    assert 'sluice_spend_usd_total{key="a",team="",model="gpt-4o"} 0.008440' in metrics
    assert "# TYPE sluice_spend_usd_total counter" in metrics


def test_a_budgeted_key_calls_only_priced_models(mock, start_sluice):
    """A `models = *` backend serves any name: a key whose budget refuses
    gpt-4o must not reach gpt-4o-2024-08-06 or o1 at $0 (issue #28, finding
    4). Unpriced models get 403 naming the missing price; [model NAME*]
    prices dated variants (the longest NAME wins); images need a priced
    model too."""
    s = start_sluice(conf(mock, {"a": "budget = 0.000001", "b": "rpm = 100"}) + """
[model gpt-4o-mini*]
input_price = 0.15
output_price = 0.60

[model gpt-4o*]
input_price = 5.00
output_price = 20.00
""")
    assert "[key a] has a budget and may call any model of a models = * backend" in s.log_text()
    for model in ("o1", "unlisted-model"):
        r = s.chat({"model": model, "messages": [{"role": "user", "content": "x"}]})
        assert r.status == 403 and r.error()["code"] == "model_not_allowed", r.body
        assert f"'{model}' has no input_price and output_price" in r.error()["message"]
    r = s.request("POST", "/v1/images/generations", {"prompt": "a cat", "n": 10})
    assert r.status == 403 and "names no model" in r.error()["message"]
    assert mock.stats()["requests"] == 0
    # Dated variants are priced by the prefix sections: refused by the budget, not free.
    for model in ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18"):
        r = s.chat({"model": model, "messages": [{"role": "user", "content": "x"}]})
        assert r.status == 429 and r.error()["code"] == "insufficient_quota", (model, r.body)
    # A key without a budget calls anything, as before.
    r = s.chat({"model": "o1", "messages": [{"role": "user", "content": "x"}]}, key=OTHER_KEY)
    assert r.status == 200


def test_longest_prefix_prices_a_variant(mock, start_sluice):
    s = start_sluice(conf(mock, {"a": "budget = 1.00"}) + """
[model gpt-4o-mini*]
input_price = 0
output_price = 1.00

[model gpt-4o*]
input_price = 0
output_price = 100.00
""")
    mini = {"model": "gpt-4o-mini-2024-07-18", "max_tokens": 100, "messages": [{"role": "user", "content": "x"}]}
    assert s.chat(mini, headers=FULL).status == 200
    settle_wait(lambda: spent(s, "keys", "a") == 100)  # 100 tokens at $1 per 1M, not $100
    big = {**mini, "model": "gpt-4o-2024-08-06"}
    assert s.chat(big, headers=FULL).status == 200
    settle_wait(lambda: spent(s, "keys", "a") == 100 + 10000)


def test_unpriced_models_allow_lets_them_cost_nothing(mock, start_sluice):
    s = start_sluice(conf(mock, {"a": "budget = 0.000001"}, server="unpriced_models = allow").replace(
        "[backend main]", "[backend other]\nurl = http://127.0.0.1:1/v1\nmodels = llama-3\n\n"
                          "[backend main]"))
    assert "model llama-3 has no price" in s.log_text()
    assert "[key a] has a budget and may call llama-3, which has no price: its calls cost nothing" in s.log_text()
    r = s.chat({"model": "unlisted-model", "messages": [{"role": "user", "content": "x"}]})
    assert r.status == 200  # costs 0: passes a budget of one micro-dollar, again and again
    assert s.chat({"model": "unlisted-model", "messages": [{"role": "user", "content": "x"}]}).status == 200
    assert " cost_usd=0.000000 " in s.log_text()
    assert spent(s, "keys", "a") == 0


def test_sluice_t_names_the_unpriced_models_a_budget_reaches(mock, tmp):
    import subprocess
    from harness import SLUICE
    text = conf(mock, {"a": "budget = 5\nmodels = gpt-4o, o3", "b": "models = o3",
                       "c": "budget = 1\nmodels = o3, o4"}).replace("{port}", "8080")
    path = tmp / "reach.conf"
    path.write_text(text.replace("[backend main]", "[backend main]\nmodels = gpt-4o, o3, o4"))
    out = subprocess.run([str(SLUICE), "-t", "-c", str(path)], capture_output=True, text=True)
    said = out.stdout + out.stderr
    assert out.returncode == 0, said
    # one line per unpriced model, however many keys reach it
    assert said.count("which has no price") == 2, said
    assert "[key a] and 1 other key with a budget may call o3, which has no price: its calls are refused" in said
    assert "[key c] has a budget and may call o4, which has no price" in said
    assert "may call gpt-4o," not in said and "[key b]" not in said


def test_require_prices_refuses_a_config_with_an_unpriced_model(mock, start_sluice, tmp):
    import subprocess
    from harness import SLUICE
    text = conf(mock, {"a": ""}, server="require_prices = on").replace("{port}", "8080")
    path = tmp / "strict.conf"
    path.write_text(text.replace("[backend main]", "[backend main]\nmodels = gpt-4o, o3"))
    out = subprocess.run([str(SLUICE), "-t", "-c", str(path)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "lists o3, which has no [model o3] with input_price and output_price" in out.stderr + out.stdout


# ---- exactness -------------------------------------------------------------------

@pytest.mark.parametrize("nodes_n", [1, 3, "cluster"])
def test_budget_exact_under_concurrency(mock, start_sluice, request, nodes_n):
    """$0.01 and requests of exactly $0.001 (max_tokens = 100): of 60 concurrent
    requests exactly 10 are admitted, on one node in-process or on three nodes
    sharing one Redis, and the spend after settlement is exactly the budget."""
    redis = request.getfixturevalue("redis" if nodes_n == 3 else "cluster") if nodes_n != 1 else None
    len_nodes = 1 if nodes_n == 1 else 3
    text = conf(mock, {"a": "budget = 0.01\nbudget_period = month"}, redis)
    nodes = [start_sluice(text) for _ in range(len_nodes)]
    headers = {**FULL, "x-mock-delay-ms": "100"}
    results = burst([lambda i=i: nodes[i % len_nodes].chat(MINI, headers=headers) for i in range(60)])
    statuses = [r.status for r in results]
    assert statuses.count(200) == 10 and statuses.count(429) == 50
    refused = next(r for r in results if r.status == 429)
    err = refused.error()
    assert err["code"] == "insufficient_quota" and refused.headers["x-should-retry"] == "false"
    assert "key a has spent $" in err["message"] and "of its $0.010000 this month (UTC)" in err["message"]
    assert "may cost up to $0.001000" in err["message"]
    assert "retry-after" not in refused.headers
    settle_wait(lambda: spent(nodes[0], "keys", "a") == 10000)
    assert costs_logged(nodes) == 10000
    assert mock.stats()["requests"] == 10
    assert all(" end=budget_exhausted " in l for n in nodes for l in n.log_text().splitlines()
               if " status=429 " in l)


@pytest.mark.parametrize("use_redis", [False, True])
def test_reconciled_spend_never_exceeds_the_budget(mock, start_sluice, use_redis, request):
    """Requests cost less than they reserve (max_tokens 100, 40 given): the
    reservation is replaced by the cost, so more fit than the reservation
    alone allows, and the budget is never exceeded."""
    redis = request.getfixturevalue("redis") if use_redis else None
    s = start_sluice(conf(mock, {"a": "budget = 0.002"}, redis))
    short = {"x-mock-completion-tokens": "40"}  # $0.0004 of the $0.001 reserved
    statuses = [s.chat(MINI, headers=short).status for _ in range(8)]
    # each one settles before the next: 0.0004 x n + 0.001 <= 0.002 holds for n <= 2.5
    assert statuses == [200, 200, 200, 429, 429, 429, 429, 429]
    assert spent(s, "keys", "a") == 1200
    assert costs_logged([s]) == 1200


# ---- teams -----------------------------------------------------------------------

TEAM = """
[team platform]
budget = 0.005
budget_period = week
"""


@pytest.mark.parametrize("use_redis", [False, True])
def test_team_budget_shared_by_two_keys(mock, start_sluice, use_redis, request):
    """Each key may spend $0.004, the team $0.005 in all: two keys on two nodes
    (one Redis), or on one node in-process, get exactly 5 requests through."""
    redis = request.getfixturevalue("redis") if use_redis else None
    keys = {"a": "team = platform\nbudget = 0.004", "b": "team = platform\nbudget = 0.004"}
    text = conf(mock, keys, redis, teams=TEAM)
    nodes = [start_sluice(text) for _ in range(2 if use_redis else 1)]
    calls = [lambda i=i: nodes[i % len(nodes)].chat(
        MINI, headers={**FULL, "x-mock-delay-ms": "50"}, key=CLIENT_KEY if i % 4 < 2 else OTHER_KEY)
        for i in range(40)]
    results = burst(calls)
    assert [r.status for r in results].count(200) == 5
    messages = {r.error()["message"] for r in results if r.status == 429}
    assert any("team platform (of key " in m and "of its $0.005000 this week (UTC, from Monday)" in m
               for m in messages)
    settle_wait(lambda: spent(nodes[0], "teams", "platform") == 5000)
    assert spent(nodes[-1], "keys", "a") + spent(nodes[-1], "keys", "b") == 5000
    assert spent(nodes[0], "keys", "a") <= 4000 and spent(nodes[0], "keys", "b") <= 4000
    for s in nodes:
        assert all(" team=platform " in l for l in s.log_text().splitlines() if " access " in l)
    view = admin(nodes[0], "/admin/keys/a").json()
    assert view["team"] == "platform" and view["spend"]["budget"] == 0.004


@pytest.mark.parametrize("use_redis", [False, True])
def test_team_rate_limit_counts_every_key(mock, start_sluice, use_redis, request):
    redis = request.getfixturevalue("redis") if use_redis else None
    keys = {"a": "team = platform\nrpm = 100", "b": "team = platform", "c": ""}
    s = start_sluice(conf(mock, keys, redis, teams="[team platform]\nrpm = 6\n"))
    statuses = burst([lambda i=i: s.chat(HELLO, key=CLIENT_KEY if i % 2 else OTHER_KEY).status
                      for i in range(16)])
    assert statuses.count(200) == 6
    r = s.chat(HELLO)
    assert r.status == 429 and r.error()["code"] == "rate_limit_exceeded"
    assert "Rate limit reached for team platform (of key a) on requests per minute: Limit 6" in \
        r.error()["message"]
    assert int(r.headers["retry-after"]) >= 1
    # a key outside the team is not held to it
    assert s.chat(HELLO, key=THIRD_KEY).status == 200
    metrics = s.request("GET", "/metrics", key=None).body.decode()
    assert 'sluice_rate_limited_total{key="a",dimension="team_requests"}' in metrics


# ---- periods -----------------------------------------------------------------------

def seconds_to_next(period):
    now = datetime.datetime.now(datetime.timezone.utc)
    midnight = (now + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        midnight += datetime.timedelta(days=(7 - midnight.weekday()) % 7)  # the next Monday
    return (midnight - now).total_seconds()


@pytest.mark.parametrize("period,use_redis", [("day", False), ("week", True)])
def test_budget_period_boundary(mock, start_sluice, period, use_redis, request):
    redis = request.getfixturevalue("redis") if use_redis else None
    # The test clock hook moves the budget clock to 1.5 s before the period ends.
    offset = int(seconds_to_next(period) - 1.5)
    s = start_sluice(conf(mock, {"a": f"budget = 0.002\nbudget_period = {period}"}, redis),
                     extra_env={"SLUICE_CLOCK_OFFSET_S": str(offset)})
    assert [s.chat(MINI, headers=FULL).status for _ in range(3)] == [200, 200, 429]
    before = admin(s, "/admin/budgets/keys/a").json()
    assert micro(before["spent"]) == 2000 and before["remaining"] == 0
    assert before["period"] == period and before["period_id"][0] == period[0]
    assert before["reset_ms"] <= 2600
    if period == "week":  # named by its Monday's day number (1970-01-01 was a Thursday)
        assert (int(before["period_id"][1:]) + 3) % 7 == 0
    time.sleep(max(before["reset_ms"], 0) / 1000 + 0.3)
    after = admin(s, "/admin/budgets/keys/a").json()
    assert micro(after["spent"]) == 0 and after["period_id"] != before["period_id"]
    assert s.chat(MINI, headers=FULL).status == 200  # a new period, a fresh budget


# ---- failures, aborts, shadow ---------------------------------------------------------

@pytest.mark.parametrize("use_redis", [False, True])
def test_failed_requests_cost_nothing(mock, start_sluice, use_redis, request):
    redis = request.getfixturevalue("redis") if use_redis else None
    s = start_sluice(conf(mock, {"a": "budget = 0.0015"}, redis, server="max_attempts = 1"))
    assert s.chat(MINI, headers={**FULL, "x-mock-status": "500"}).status == 500
    assert s.chat(MINI, headers={**FULL, "x-mock-close": "1"}).status == 502
    assert s.chat(MINI, headers={**FULL, "x-mock-status": "400"}).status == 400
    # nothing was spent: a full request still fits, then the budget holds no second one
    assert spent(s, "keys", "a") == 0
    assert [s.chat(MINI, headers=FULL).status for _ in range(2)] == [200, 429]
    assert spent(s, "keys", "a") == 1000


@pytest.mark.parametrize("use_redis", [False, True])
def test_client_abort_is_reconciled(mock, start_sluice, use_redis, request):
    """A client that leaves mid-stream: the request costs what was relayed (no
    usage came), never more than its reservation, and the budget gets the rest back."""
    redis = request.getfixturevalue("redis") if use_redis else None
    s = start_sluice(conf(mock, {"a": "budget = 0.01"}, redis))
    body = dict(MINI, stream=True)
    c, r = s.stream(headers={**FULL, "x-mock-chunk-delay-ms": "50"}, body=body)
    assert r.status == 200
    r.fp.readline()  # the first event's line, then the client leaves
    c.close()
    settle_wait(lambda: " status=499 " in s.log_text())
    logged = costs_logged([s])
    assert 0 < logged < 1000
    settle_wait(lambda: spent(s, "keys", "a") == logged)


def test_shadow_mode_counts_spend_but_never_refuses(mock, start_sluice):
    s = start_sluice(conf(mock, {"a": "budget = 0.0015\nmode = shadow"}))
    assert [s.chat(MINI, headers=FULL).status for _ in range(3)] == [200, 200, 200]
    assert spent(s, "keys", "a") == 3000  # over the budget: counted, not refused
    assert "shadow: key a would be refused on budget (limit 0.001500, used 0.001000, " \
           "requested 0.001000 USD)" in s.log_text()


# ---- admin API and gauges ---------------------------------------------------------------

def test_admin_budget_api(mock, start_sluice):
    s = start_sluice(conf(mock, {"a": "team = platform\nbudget = 2.50\nbudget_period = total",
                                 "b": ""}, teams=TEAM))
    assert s.chat(MINI, headers=FULL).status == 200
    k = admin(s, "/admin/budgets/keys/a").json()
    assert k == {"key": "a", "period": "total", "period_id": "total", "spent": 0.001,
                 "budget": 2.5, "remaining": 2.499, "reset_ms": None, "resets_at": None}
    t = admin(s, "/admin/budgets/teams/platform").json()
    assert t["team"] == "platform" and t["spent"] == 0.001 and t["budget"] == 0.005
    assert t["period"] == "week" and t["resets_at"].endswith("T00:00:00Z")
    assert admin(s, "/admin/budgets/keys/a/delta", {"usd": 1.25}).json()["spent"] == 1.251
    assert admin(s, "/admin/budgets/keys/a/delta", {"usd": -0.000001}).json()["spent"] == 1.250999
    assert admin(s, "/admin/budgets/keys/a/delta", {"usd": -100}).json()["spent"] == 0
    assert admin(s, "/admin/budgets/teams/platform/delta", {"usd": 0.004}).json()["remaining"] == 0
    assert s.chat(MINI, headers=FULL).status == 429  # the team's budget is spent
    assert admin(s, "/admin/budgets/teams/platform/reset", {}).json()["spent"] == 0
    assert s.chat(MINI, headers=FULL).status == 200
    view = admin(s, "/admin/keys/a").json()
    assert view["team"] == "platform"
    assert view["spend"]["spent"] == 0.001 and view["spend"]["budget"] == 2.5
    assert admin(s, "/admin/keys/b").json()["team"] is None
    bad = [("/admin/budgets/keys/a/delta", {"usd": "1"}, 400),
           ("/admin/budgets/keys/a/delta", {"usd": 0.0000001}, 400),
           ("/admin/budgets/keys/a/delta", {}, 400),
           ("/admin/budgets/keys/b/delta", {"usd": 1}, 400),  # b has no budget
           ("/admin/budgets/keys/nobody", None, 404),
           ("/admin/budgets/teams/nobody", None, 404),
           ("/admin/budgets/teams/platform/explode", {}, 404)]
    for path, body, status in bad:
        r = admin(s, path, body)
        assert r.status == status, (path, r.body)
        assert r.error()["message"]
    assert s.request("GET", "/admin/budgets/keys/a", key=CLIENT_KEY).status == 401


def test_budget_gauges(mock, start_sluice):
    s = start_sluice(conf(mock, {"a": "team = platform\nbudget = 0.01", "b": ""}, teams=TEAM))
    assert s.chat(MINI, headers=FULL).status == 200

    def gauges():
        text = s.request("GET", "/metrics", key=None).body.decode()
        return dict(re.findall(r'^sluice_budget_remaining_usd\{(.*)\} (\S+)$', text, re.M))
    end = time.time() + 8  # read every 5 s
    while len(gauges()) < 2 and time.time() < end:
        time.sleep(0.2)
    g = gauges()
    assert g == {'scope="key",name="a"': "0.009000", 'scope="team",name="platform"': "0.004000"}
