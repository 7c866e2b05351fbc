"""Rate limits as clients see them: exact under concurrency on one node and
on three nodes sharing Redis, sliding windows and Retry-After, input
reservation and correction, output recording (streamed or not), no double
counting, and what happens while Redis is down, slow or flushed."""
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import base_conf

# "abcdefgh" as the only user message: 3 + 2 + 3 = 8 estimated prompt tokens.
EIGHT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "abcdefgh"}]}


def limited_conf(mock, limits, redis=None, extra_server="", on_error="local", timeout="100ms"):
    conf = base_conf(mock.url, extra_server=extra_server, key_extra=limits)
    if redis:
        conf += f"\n[redis]\nurl = {redis.url}\ntimeout = {timeout}\non_error = {on_error}\n"
    return conf


def burst(nodes, n, body=EIGHT, headers=None):
    """n concurrent requests spread over the nodes; returns the statuses."""
    def one(i):
        return nodes[i % len(nodes)].chat(body, headers=headers).status
    with ThreadPoolExecutor(max_workers=min(n, 48)) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.parametrize("use_redis", [False, True])
def test_rpm_exact_under_concurrency(mock, start_sluice, tmp, use_redis, request):
    redis = request.getfixturevalue("redis") if use_redis else None
    s = start_sluice(limited_conf(mock, "rpm = 20", redis))
    statuses = burst([s], 60)
    assert statuses.count(200) == 20 and statuses.count(429) == 40
    assert mock.stats()["requests"] == 20


def test_three_nodes_share_one_redis_exactly(mock, shared_redis, start_sluice):
    redis = shared_redis
    mock.configure(prompt_tokens=8)  # usage equals the estimate: no correction frees tokens
    nodes = [start_sluice(limited_conf(mock, "rpm = 30\ninput_tpm = 1000", redis)) for _ in range(3)]
    statuses = burst(nodes, 90)
    assert statuses.count(200) == 30
    assert mock.stats()["requests"] == 30
    # input tokens, on a key of its own: 8 per request against 100
    nodes2 = [start_sluice(limited_conf(mock, "input_tpm = 100", redis).replace("team-a", "team-x"))
              for _ in range(3)]
    statuses = burst(nodes2, 45)
    assert statuses.count(200) == 12  # floor(100 / 8)


def test_input_tpm_exact_in_process(mock, start_sluice):
    mock.configure(prompt_tokens=8)
    s = start_sluice(limited_conf(mock, "input_tpm = 100"))
    statuses = burst([s], 40)
    assert statuses.count(200) == 12 and statuses.count(429) == 28


@pytest.mark.parametrize("use_redis", [False, True])
def test_429_shape_retry_after_and_sliding(mock, start_sluice, use_redis, request):
    redis = request.getfixturevalue("redis") if use_redis else None
    s = start_sluice(limited_conf(mock, "rpm = 3", redis), extra_env={"SLUICE_WINDOW_MS": "3000"})
    first = time.time()
    ok = [s.chat() for _ in range(3)]
    assert all(r.status == 200 for r in ok)
    assert ok[0].headers["x-ratelimit-limit-requests"] == "3"
    assert [r.headers["x-ratelimit-remaining-requests"] for r in ok] == ["2", "1", "0"]
    r = s.chat()
    assert r.status == 429
    err = r.error()
    assert err["code"] == "rate_limit_exceeded" and err["type"] == "requests"
    assert "Limit 3, Used 3, Requested 1" in err["message"]
    retry_ms = int(r.headers["retry-after-ms"])
    assert int(r.headers["retry-after"]) == -(-retry_ms // 1000)
    # Capacity frees when the first request's bucket leaves the 3 s window.
    elapsed_ms = (time.time() - first) * 1000
    assert 3000 - elapsed_ms - 150 <= retry_ms <= 3000 + 60
    time.sleep(max(retry_ms - 250, 0) / 1000)
    assert s.chat().status == 429  # not before
    time.sleep(0.3)
    assert s.chat().status == 200  # a client that waits Retry-After gets in


@pytest.mark.parametrize("use_redis", [False, True])
def test_retry_after_never_exceeds_the_window(mock, start_sluice, use_redis, request):
    """With the real 60 s window: SDKs that cap waits at 60 s (LangChain) must
    not be told 61. (A 3 s window above shows that waiting it is enough.)"""
    redis = request.getfixturevalue("redis") if use_redis else None
    s = start_sluice(limited_conf(mock, "rpm = 2", redis))
    first = time.monotonic()  # the window's first request starts after this
    assert [s.chat().status for _ in range(2)] == [200, 200]
    for _ in range(3):
        r = s.chat()
        assert r.status == 429
        waited_ms = (time.monotonic() - first) * 1000
        # buckets of 1 s (docs/limits.md): Retry-After may be up to 1 s short of 60 s
        assert 59_000 - waited_ms <= int(r.headers["retry-after-ms"]) <= 60_000
        assert int(r.headers["retry-after"]) <= 60


def test_prompt_larger_than_window_is_not_retryable(mock, start_sluice):
    s = start_sluice(limited_conf(mock, "input_tpm = 10"))
    r = s.chat({"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 200}]})
    assert r.status == 429
    assert r.headers["x-should-retry"] == "false"
    assert "retry-after" not in r.headers
    assert r.error()["type"] == "tokens"
    assert mock.stats()["requests"] == 0


@pytest.mark.parametrize("use_redis", [False, True])
def test_input_reservation_corrected_to_usage(mock, start_sluice, use_redis, request):
    redis = request.getfixturevalue("redis") if use_redis else None
    s = start_sluice(limited_conf(mock, "input_tpm = 100", redis))
    r = s.chat(EIGHT, headers={"x-mock-prompt-tokens": "2"})
    assert r.headers["x-ratelimit-remaining-tokens"] == "92"  # the estimate is reserved
    r = s.chat(EIGHT, headers={"x-mock-prompt-tokens": "30"})
    assert r.headers["x-ratelimit-remaining-tokens"] == "90"  # first corrected to 2, this one reserved 8
    r = s.chat(EIGHT)
    assert r.headers["x-ratelimit-remaining-tokens"] == "60"  # second corrected to 30: 2 + 30 + 8


@pytest.mark.parametrize("use_redis", [False, True])
def test_output_recorded_whole_and_streamed(mock, start_sluice, use_redis, request):
    redis = request.getfixturevalue("redis") if use_redis else None
    s = start_sluice(limited_conf(mock, "output_tpm = 20", redis))
    # 8 completion tokens each: admitted at 0, 8, 16 recorded; refused at 24.
    assert [s.chat().status for _ in range(4)] == [200, 200, 200, 429]
    r = s.chat()
    assert r.error()["type"] == "tokens" and "output tokens" in r.error()["message"]


def stream_chat(s, body, headers=None):
    status, events = s.stream_events(headers, body)
    return status, [e[6:] for e in events if e.startswith("data: ")]


def test_streaming_usage_counted_and_stripped_when_not_asked(mock, start_sluice):
    s = start_sluice(limited_conf(mock, "output_tpm = 20"))
    body = dict(EIGHT, stream=True)
    for _ in range(3):
        status, events = stream_chat(s, body)
        assert status == 200
        assert events[-1] == "[DONE]"
        assert not any('"usage":{' in e for e in events)  # the chunk sluice asked for is gone
    sent = json.loads(mock.last()["body"])
    assert sent["stream_options"] == {"include_usage": True}
    assert s.chat(body).status == 429  # 3 x 8 streamed tokens were counted


def test_streaming_usage_kept_when_asked_and_options_preserved(mock, start_sluice):
    s = start_sluice(limited_conf(mock, "output_tpm = 100"))
    body = dict(EIGHT, stream=True, stream_options={"include_usage": True})
    status, events = stream_chat(s, body)
    assert json.loads(events[-2])["usage"]["completion_tokens"] == 8
    assert json.loads(mock.last()["body"]) == body  # forwarded as sent
    body = dict(EIGHT, stream=True, stream_options={"include_usage": False, "x_extra": 1})
    status, events = stream_chat(s, body)
    assert not any('"usage":{' in e for e in events)
    assert json.loads(mock.last()["body"])["stream_options"] == {"include_usage": True, "x_extra": 1}


def test_stream_without_usage_counts_relayed_text(mock, start_sluice):
    # each stream relays "tok0 tok1 ... tok7" (39 characters): 10 tokens
    s = start_sluice(limited_conf(mock, "output_tpm = 30"))
    for _ in range(3):
        status, events = stream_chat(s, dict(EIGHT, stream=True), {"x-mock-no-usage": "1"})
        assert status == 200 and len(events) == 9
    assert s.chat().status == 429


def test_refused_request_consumes_nothing(mock, start_sluice):
    mock.configure(prompt_tokens=8)
    s = start_sluice(limited_conf(mock, "rpm = 2\ninput_tpm = 20"))
    assert s.chat(EIGHT).status == 200
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 60}]}  # 3+15+3 = 21 > 20
    assert s.chat(big).status == 429  # would exceed input; refused
    r = s.chat(EIGHT)
    assert r.status == 200  # the refusal took no request and no tokens
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert r.headers["x-ratelimit-remaining-tokens"] == "4"


def test_failed_upstream_releases_reservation(start_sluice):
    from harness import free_port
    s = start_sluice(base_conf(f"http://127.0.0.1:{free_port()}/v1", key_extra="rpm = 1\ninput_tpm = 8"))
    assert [s.chat(EIGHT).status for _ in range(3)] == [502, 502, 502]  # never 429


def test_redis_down_on_error_modes(mock, redis, start_sluice, tmp):
    deny = start_sluice(limited_conf(mock, "rpm = 100", redis, on_error="deny"))
    allow = start_sluice(limited_conf(mock, "rpm = 2", redis, on_error="allow").replace("team-a", "team-y"))
    local = start_sluice(limited_conf(mock, "rpm = 2", redis, on_error="local").replace("team-a", "team-z"))
    assert deny.chat().status == 200
    redis.stop()
    time.sleep(0.3)
    r = deny.chat()
    assert r.status == 503 and r.error()["code"] == "rate_limiter_unavailable" and r.headers["retry-after"] == "1"
    assert [allow.chat().status for _ in range(4)] == [200] * 4
    assert [local.chat().status for _ in range(3)] == [200, 200, 429]
    redis.start()  # same port: sluice reconnects by itself
    deadline = time.time() + 5
    while time.time() < deadline and deny.chat().status != 200:
        time.sleep(0.2)
    assert deny.chat().status == 200
    assert "unreachable" in deny.log_text() and "connected" in deny.log_text()
    assert deny.log_text().count("unreachable") == 1  # logged once per change


def commands(redis):
    """Calls per command since the server started (INFO commandstats)."""
    from harness import commandstats
    return {name: st["calls"] for name, st in commandstats(redis.cli("INFO", "commandstats")).items()}


def test_script_flush_and_restart_are_transparent(mock, redis, start_sluice):
    s = start_sluice(limited_conf(mock, "rpm = 5", redis))
    assert s.chat().status == 200
    assert commands(redis).get("fcall", 0) >= 1  # the library, loaded when it connected
    assert redis.cli("FUNCTION", "FLUSH") == "OK"
    assert s.chat().status == 200  # "Function not found" -> EVAL, no error for the client
    assert "sluice_" in redis.cli("FUNCTION", "LIST")  # and loaded again
    time.sleep(0.1)  # the held settlement, gone alone
    before = commands(redis)
    assert s.chat().status == 200
    time.sleep(0.1)
    after = commands(redis)  # by FCALL again: no EVAL
    assert after["fcall"] > before["fcall"] and after.get("eval", 0) == before.get("eval", 0)
    assert redis.cli("SCRIPT", "FLUSH") == "OK"  # the script (EVALSHA's) is not what runs
    assert s.chat().status == 200
    assert s.chat().status == 200
    assert s.chat().status == 429  # and the count went on in Redis
    assert "script error" not in s.log_text()


def test_a_request_costs_redis_one_call(mock, redis, start_sluice):
    """One client, one request at a time: each settlement rides with the
    key's next admission (one call per request, not two), and the last one
    goes alone within 20 ms. What Redis holds is then exactly the usage."""
    s = start_sluice(limited_conf(mock, "rpm = 1000\ninput_tpm = 100000\noutput_tpm = 100000", redis))
    usage = []

    def chat():
        r = s.chat()
        assert r.status == 200
        usage.append((r.json()["usage"]["prompt_tokens"], r.json()["usage"]["completion_tokens"]))
    chat()  # connected, the library loaded
    time.sleep(0.1)
    before = commands(redis)["fcall"]
    for _ in range(20):
        chat()
    # 20 admissions, the settlements with them (two calls per request before);
    # a settlement goes alone only when the next request is 20 ms late
    assert commands(redis)["fcall"] - before <= 25
    time.sleep(0.1)  # the last settlement, held at most 20 ms
    assert commands(redis)["fcall"] - before <= 26
    w = redis.windows("sluice:{team-a}:w")
    assert w["total"] == [21, sum(u[0] for u in usage), sum(u[1] for u in usage)]


def test_a_stopping_node_sends_its_held_settlements(mock, redis, start_sluice):
    """SIGTERM right after a request: the settlement waiting for the key's
    next call goes to Redis before the node exits."""
    s = start_sluice(limited_conf(mock, "rpm = 100\noutput_tpm = 100000", redis))
    r = s.chat()
    assert r.status == 200
    s.stop()
    assert redis.windows("sluice:{team-a}:w")["total"][2] == r.json()["usage"]["completion_tokens"] > 0


def test_a_redis_without_functions_gets_the_script(mock, redis, start_sluice):
    """An ACL user not allowed FUNCTION and FCALL (as a Redis before 7.0 has
    neither): the same limits, exactly, by EVALSHA."""
    redis.cli("ACL", "SETUSER", "old", "on", ">old-pass", "~*", "&*", "+@all", "-function", "-fcall")
    conf = limited_conf(mock, "rpm = 4", redis).replace("redis://", "redis://old:old-pass@")
    nodes = [start_sluice(conf) for _ in range(2)]
    statuses = burst(nodes, 10)
    assert statuses.count(200) == 4 and statuses.count(429) == 6
    assert mock.stats()["requests"] == 4
    used = commands(redis)
    assert used.get("evalsha", 0) >= 4 and used.get("fcall", 0) == 0
    assert all("runs by EVALSHA" in s.log_text() for s in nodes)
    assert not any("script error" in s.log_text() for s in nodes)


def test_slow_redis_does_not_block(mock, redis, start_sluice):
    s = start_sluice(limited_conf(mock, "rpm = 100", redis, on_error="local", timeout="100ms"))
    assert s.chat().status == 200
    import subprocess
    sleeper = subprocess.Popen(["redis-cli", "-p", str(redis.port), "DEBUG", "SLEEP", "1.5"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    start = time.time()
    r = s.chat()
    took = time.time() - start
    sleeper.wait()
    assert r.status == 200
    assert 0.09 < took < 0.6  # waited for the 100 ms call timeout, not Redis's 1.5 s
    assert "timed out" in s.log_text()


def test_redis_memory_per_key_is_bounded(mock, redis, start_sluice):
    s = start_sluice(limited_conf(mock, "rpm = 100000\ninput_tpm = 10000000\noutput_tpm = 10000000", redis),
                     extra_env={"SLUICE_WINDOW_MS": "600"})
    end = time.time() + 1.5
    n = 0
    while time.time() < end:
        assert s.chat().status == 200
        n += 1
    assert n > 50
    key = "sluice:{team-a}:w"  # the three windows in one string, of bounded size
    assert int(redis.cli("STRLEN", key)) == 96 + 62 * 24  # whatever the rate: 60 buckets + 2
    assert 0 < int(redis.cli("PTTL", key)) <= 700
    w = redis.windows(key)
    assert w["total"][0] == sum(v[0] for v in w["buckets"].values()) > 0, w
    names = redis.cli("KEYS", "*").split()
    assert sorted(n for n in names if not n.startswith("sluice:{rk}:")) == ["sluice:{team-a}:w"]
    # and the runtime keys' bookkeeping: the epoch, and when each key was last used
    assert sorted(n for n in names if n.startswith("sluice:{rk}:")) == \
        ["sluice:{rk}:epoch", "sluice:{rk}:used:team-a"]


def test_redis_outage_starts_local_windows_from_what_redis_reported(mock, redis, start_sluice):
    """rpm = 10: 6 admitted in Redis, then Redis dies. The node's local window
    starts from Redis's 6, so only 4 more pass in that window, not 10."""
    from test_operations import scrape, value
    s = start_sluice(limited_conf(mock, "rpm = 10\nquota = 100000", redis, on_error="local"))
    assert [s.chat(EIGHT).status for _ in range(6)] == [200] * 6
    assert value(scrape(s), "sluice_limiter_degraded_total") == 0
    redis.stop()
    time.sleep(0.3)
    statuses = [s.chat(EIGHT).status for _ in range(8)]
    assert statuses == [200] * 4 + [429] * 4
    r = s.chat(EIGHT)
    assert r.status == 429 and int(r.headers["retry-after"]) > 1  # when Redis's 6 have aged out
    assert value(scrape(s), "sluice_limiter_degraded_total") == 9
    assert s.request("GET", "/readyz", key=None).status == 200  # local: the node goes on serving
    assert s.request("GET", "/readyz", key=None).json()["redis"] == "down"


def test_redis_outage_quota_starts_from_what_redis_reported(mock, redis, start_sluice):
    mock.configure(prompt_tokens=8, completion_tokens=2)
    s = start_sluice(limited_conf(mock, "quota = 60", redis, on_error="local"))
    assert [s.chat(EIGHT).status for _ in range(4)] == [200] * 4  # 4 x 10 tokens in Redis
    time.sleep(0.2)  # the settlements reach Redis
    assert s.chat(EIGHT).status == 200  # 50: Redis reports it with this admission (+8 reserved)
    redis.stop()
    time.sleep(0.3)
    assert [s.chat(EIGHT).status for _ in range(3)] == [200, 429, 429]  # not another 60


def test_readyz_during_a_redis_outage_follows_on_error(mock, redis, start_sluice):
    allow = start_sluice(limited_conf(mock, "rpm = 100", redis, on_error="allow"))
    deny = start_sluice(limited_conf(mock, "rpm = 100", redis, on_error="deny").replace("team-a", "team-d"))
    redis.stop()
    time.sleep(0.3)
    allow.chat()
    deny.chat()  # each finds Redis down
    assert allow.request("GET", "/readyz", key=None).status == 200
    assert deny.request("GET", "/readyz", key=None).status == 503


@pytest.mark.parametrize("limiter", ["local", "redis"])
def test_usage_numbers_sluice_cannot_take_move_no_counter(limiter, mock, start_sluice, request):
    """An upstream reporting prompt_tokens 1e30 (or -5, 1.5, "12"): the
    estimate stays charged, no window or quota moves by it, the log says so
    once, and the access log shows no absurd number (issue #28, finding 7;
    before, the in-process input window went to -9.2e18 and let every
    prompt through)."""
    redis = request.getfixturevalue("redis") if limiter == "redis" else None
    extra = f"[redis]\nurl = {redis.url}\n" if redis else ""
    s = start_sluice(base_conf(mock.url, key_extra="input_tpm = 20000\nquota = 1000000", extra=extra))
    prompt = {"model": "gpt-4o", "messages": [{"role": "user", "content": "word " * 3000}]}
    for bad in ('{"prompt_tokens":1e30,"completion_tokens":1}', '{"prompt_tokens":-5}',
                '{"prompt_tokens":1.5}', '{"prompt_tokens":"12"}'):
        r = s.chat(prompt, headers={"x-mock-usage": bad})
        assert r.status == 200, r.body
    # four prompts of ~3,756 estimated tokens each stay charged as estimated: a fifth fits in
    # 20,000, a sixth does not (before: the window went negative and let every prompt through)
    statuses = [s.chat(prompt).status for _ in range(2)]
    assert statuses == [200, 429], statuses
    text = s.log_text()
    assert text.count("upstream usage not used: key=team-a") == 4
    assert "-9223372036854775808" not in text
