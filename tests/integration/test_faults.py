"""The fault catalogue (issue #29): each scripted upstream fault, what the
client receives, how many requests each upstream saw and when, and what the
access log says and the key was charged. Two backends serve gpt-4o ("a"
first, then "b"); gpt-4o-mini on "m" is gpt-4o's fallback. The mock injects
every fault (tests/mock/mock_upstream.c); docs/pool.md explains each rescue."""
import json
import time


from test_failover import last_access
from test_pool import pool_conf

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
STREAM = dict(CHAT, stream=True)


def catalogue(start_mock, start_sluice, a_faults=None, a_extra="", b_extra="", with_b=True):
    a, b, m = start_mock(), start_mock(), start_mock()
    if a_faults:
        a.configure(**a_faults)
    backends = [("a", a, f"priority = 1\nmodels = gpt-4o\nfirst_byte_timeout = 400ms\n"
                         f"stream_idle_timeout = 400ms\n{a_extra}")]
    if with_b:
        backends.append(("b", b, f"priority = 2\nmodels = gpt-4o\n{b_extra}"))
    backends.append(("m", m, "models = gpt-4o-mini"))
    conf = pool_conf(backends) + ("\n[model gpt-4o]\nfallbacks = gpt-4o-mini\ncontext_fallbacks = gpt-4o-mini\n"
                                  "input_price = 2.50\noutput_price = 10\n"
                                  "[model gpt-4o-mini]\ninput_price = 0.15\noutput_price = 0.60\n")
    return a, b, m, start_sluice(conf)


def ask(s, body=CHAT, headers=None):
    t = time.monotonic()
    if body.get("stream"):
        c, r = s.stream(headers, body)
        text = r.read().decode()
        c.close()
        events = [e for e in text.split("\n\n") if e.strip()]
        return r.status, events, time.monotonic() - t
    r = s.chat(body, headers=headers)
    return r.status, r, time.monotonic() - t


def seen(*mocks):
    return [x.stats()["requests"] for x in mocks]


def text_of(events):
    out = ""
    for e in events:
        if e.startswith("data: {") and '"choices"' in e:
            try:
                out += json.loads(e[6:])["choices"][0]["delta"].get("content") or ""
            except (ValueError, IndexError):
                pass
    return out


def test_429_with_a_short_retry_after_waits_on_the_requested_model(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"status": 429, "retry_after": "1", "fail_count": 1},
                           with_b=False)
    status, r, secs = ask(s)
    assert status == 200 and r.headers["x-sluice-model"] == "gpt-4o" and 1.0 <= secs < 2.5
    assert seen(a, m) == [2, 0]
    assert last_access(s, 1)["end"] == "responded"


def test_429_without_retry_after_falls_back(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"status": 429}, with_b=False)
    status, r, secs = ask(s)
    assert status == 200 and r.headers["x-sluice-model"] == "gpt-4o-mini" and secs < 1.0
    assert seen(a, m) == [1, 1]
    line = last_access(s, 1)
    # charged at the prices of the model that answered (fallback accounting)
    cost = (int(line["prompt_tokens"]) * 0.15 + int(line["completion_tokens"]) * 0.60) / 1e6
    assert abs(float(line["cost_usd"]) - cost) < 1e-6 and line["served_model"] == "gpt-4o-mini"


def test_500_once_is_sent_again_at_once(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"status": 500, "fail_count": 1}, with_b=False)
    status, r, secs = ask(s)
    assert status == 200 and r.headers["x-sluice-model"] == "gpt-4o" and secs < 1.0
    assert seen(a, m) == [2, 0]


def test_503_persistent_goes_to_the_next_backend_then_the_fallback(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"status": 503}, b_extra="")
    b.configure(status=503)
    status, r, secs = ask(s)
    # a, then b, then b's second chance: max_attempts (3) spent; the last answer is passed on
    assert status == 503 and seen(a, b, m) == [1, 2, 0]
    line = last_access(s, 1)
    assert line["attempts"] == "3" and line["end"] == "upstream_error"
    assert line["completion_tokens"] == "0" and line["cost_usd"] == "0.000000"


def test_a_reset_before_headers_is_sent_once_more(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"close": True, "fail_count": 1}, with_b=False)
    status, r, secs = ask(s)
    assert status == 200 and seen(a, m) == [2, 0]
    assert last_access(s, 1)["attempts"] == "2"


def test_no_response_costs_first_byte_timeout(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"hang": True})
    status, r, secs = ask(s)
    assert status == 200 and 0.35 <= secs < 1.5
    assert seen(a, b) == [1, 1]
    assert last_access(s, 1)["backend"] == "b"


def test_a_slow_first_token_fails_over_while_held(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"first_token_delay_ms": 3000},
                           a_extra="first_token_timeout = 300ms")
    status, events, secs = ask(s, STREAM)
    assert status == 200 and events[-1] == "data: [DONE]" and secs < 1.5
    assert text_of(events) == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7"
    assert seen(a, b) == [1, 1]


def test_a_stream_cut_ends_with_an_error_event_and_is_charged_for_what_it_relayed(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"drop_after": 3})
    status, events, secs = ask(s, STREAM)
    assert status == 200 and json.loads(events[-1][6:])["error"]["code"] == "upstream_failed"
    assert seen(a, b) == [1, 0]  # committed: nothing else may start it again
    line = last_access(s, 1)
    assert line["end"] == "stream_broken" and line["completion_tokens"] == "4"  # "tok0 tok1 tok2"


def test_a_stream_cut_continues_on_a_prefill_backend(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"drop_after": 3}, b_extra="prefill = yes")
    status, events, secs = ask(s, STREAM)
    assert status == 200 and events[-1] == "data: [DONE]"
    assert text_of(events) == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7"
    assert seen(a, b) == [1, 1] and last_access(s, 1)["end"] == "responded"


def test_a_stalled_stream_ends_after_stream_idle_timeout(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"stall_after": 3})
    status, events, secs = ask(s, STREAM)
    assert status == 200 and 0.35 <= secs < 2.0
    assert json.loads(events[-1][6:])["error"]["code"] == "upstream_timeout"
    assert seen(a, b) == [1, 0] and last_access(s, 1)["end"] == "stream_stalled"


def test_a_malformed_chunk_is_relayed_as_the_upstream_sent_it(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"malformed_after": 2})
    status, events, secs = ask(s, STREAM)
    assert status == 200 and events[-1] == "data: [DONE]"
    assert any(e.startswith('data: {"choices":[{"delta":{"content":"x"') for e in events)
    line = last_access(s, 1)
    assert line["end"] == "responded" and seen(a, b) == [1, 0]


def test_a_stream_without_done_ends_cleanly(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"no_done": True})
    status, events, secs = ask(s, STREAM)
    assert status == 200 and "data: [DONE]" not in events and not any('"error"' in e for e in events)
    assert text_of(events) == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7"
    assert last_access(s, 1)["end"] == "responded"


def test_context_length_moves_to_the_context_fallback(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"status": 400, "error_code": "context_length_exceeded"},
                           with_b=False)
    status, r, secs = ask(s)
    assert status == 200 and r.headers["x-sluice-model"] == "gpt-4o-mini"
    assert seen(a, m) == [1, 1]
    assert "reason=context_length_exceeded" in s.log_text()


def test_a_content_filter_400_is_the_clients_answer(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"status": 400, "error_code": "content_filter"})
    status, r, secs = ask(s)
    assert status == 400 and r.error()["code"] == "content_filter"
    assert seen(a, b, m) == [1, 0, 0]  # not retried, not a breaker failure
    assert last_access(s, 1)["outcome"] == "client_error"


def test_a_fallback_that_rejects_the_prefill_leaves_the_cut_error(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"drop_after": 3}, b_extra="prefill = yes")
    b.configure(status=400, error_code="invalid_request_error")
    status, events, secs = ask(s, STREAM)
    assert json.loads(events[-1][6:])["error"]["code"] == "upstream_failed"
    assert seen(a, b) == [1, 1] and last_access(s, 1)["end"] == "stream_broken"


def test_a_flapping_primary_opens_its_breaker_and_returns(start_mock, start_sluice):
    a, b, m, s = catalogue(start_mock, start_sluice, {"status": 500},
                           a_extra="breaker_failures = 2\nbreaker_trip = 1s")
    for _ in range(4):
        status, r, _ = ask(s)
        assert status == 200
    assert seen(a) == [2]  # two failures open gpt-4o's breaker on a: b takes the rest
    a.configure(status=200)
    time.sleep(1.1)
    status, r, _ = ask(s)  # the probe closes it again
    assert status == 200 and last_access(s, 5)["backend"] == "a"
    log = s.log_text()
    assert "breaker backend=a model=gpt-4o closed->open" in log
    assert "breaker backend=a model=gpt-4o half_open->closed" in log
