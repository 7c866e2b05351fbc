"""Failover that rescues what can be rescued (docs/pool.md, "The order of
rescue"): a silent upstream costs first_byte_timeout per attempt, not the
whole timeout; the backend that failed gets its second chance (at once after
a 500/502/503 or an unanswered stateless request, after a short Retry-After)
before a fallback model is tried; stateless requests whose connection broke
before any response byte are sent once more by default, stateful ones never.
Each case asserts what the client gets, what each upstream saw and when, and
what the log and the metrics say."""
import json
import time

from harness import base_conf
from test_failover import access_lines, last_access, tokens
from test_operations import scrape, value
from test_pool import pool_conf

CHAT = {"messages": [{"role": "user", "content": "hello there"}]}


def chat(s, model="gpt-4o", headers=None, **body):
    return s.chat(dict(CHAT, model=model, **body), headers=headers)


def timed(fn):
    t = time.monotonic()
    r = fn()
    return r, time.monotonic() - t


def leave_after(s, seconds, lines):
    """A chat request whose client gives up after seconds; returns once the
    access log has that many lines."""
    c = s.conn(timeout=seconds)
    try:
        s.chat(conn=c)
    except OSError:
        pass
    c.close()
    deadline = time.time() + 5
    while time.time() < deadline and len(access_lines(s, lines)) < lines:
        time.sleep(0.05)


# ---- first_byte_timeout ----------------------------------------------------------

def test_a_silent_upstream_costs_first_byte_timeout_then_the_next_backend_answers(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    a.configure(hang=True)  # reads the request, never answers
    s = start_sluice(pool_conf([("a", a, "priority = 1\nfirst_byte_timeout = 300ms"),
                                ("b", b, "priority = 2")]))
    r, secs = timed(lambda: chat(s))
    assert r.status == 200
    assert 0.28 <= secs < 1.5, secs  # not timeout's 10 minutes
    assert [a.stats()["requests"], b.stats()["requests"]] == [1, 1]
    line = last_access(s, 1)
    assert line["attempts"] == "2" and line["backend"] == "b" and line["end"] == "responded"
    m = scrape(s)
    assert value(m, "sluice_upstream_attempts_total", backend="a", outcome="first_byte_timeout") == 1
    assert value(m, "sluice_retries_total", backend="a") == 1
    assert 'outcome=first_byte_timeout' in s.log_text() and "within first_byte_timeout" in s.log_text()


def test_silent_upstreams_end_the_call_within_max_attempts_first_byte_timeouts(start_mock, start_sluice):
    ms = [start_mock() for _ in range(3)]
    for m in ms:
        m.configure(hang=True)
    s = start_sluice(pool_conf([(n, m, "first_byte_timeout = 300ms") for n, m in zip("abc", ms)]))
    r, secs = timed(lambda: chat(s))
    assert r.status == 504 and r.error()["code"] == "upstream_timeout"
    assert 0.85 <= secs < 0.9 + 1.0, secs  # three attempts of 300 ms (timers in whole ms), plus slack
    assert [m.stats()["requests"] for m in ms] == [1, 1, 1]
    line = last_access(s, 1)
    assert line["end"] == "upstream_first_byte_timeout" and line["attempts"] == "3"
    assert line["outcome"] == "first_byte_timeout"


def test_first_byte_timeout_ends_at_the_head_a_slow_stream_goes_on(start_mock, start_sluice):
    mock = start_mock()
    s = start_sluice(base_conf(mock.url, extra_backend="first_byte_timeout = 300ms"))
    # the head comes at once, then a chunk every 150 ms: 8 chunks, over a second
    status, events = s.stream_events(headers={"x-mock-chunk-delay-ms": "150"})
    assert status == 200 and events[-1] == "data: [DONE]"
    assert not any('"error"' in e for e in events)
    assert mock.stats()["requests"] == 1
    assert last_access(s, 1)["end"] == "responded"


def test_a_head_later_than_first_byte_timeout_fails_over_a_whole_answer_too(start_mock, start_sluice):
    """A non-streamed answer's head comes with the whole answer: a generation
    longer than first_byte_timeout is cut and sent on (docs/pool.md)."""
    a, b = start_mock(), start_mock()
    a.configure(delay_ms=800)
    s = start_sluice(pool_conf([("a", a, "priority = 1\nfirst_byte_timeout = 300ms"),
                                ("b", b, "priority = 2")]))
    r, secs = timed(lambda: chat(s))
    assert r.status == 200 and secs < 0.8
    assert last_access(s, 1)["backend"] == "b"


# ---- the backend's second chance before a fallback model ---------------------------

def two_models(a, b, extra_a="", server=""):
    """gpt-4o on a, its fallback gpt-4o-mini on b."""
    return pool_conf([("a", a, f"models = gpt-4o\n{extra_a}"), ("b", b, "models = gpt-4o-mini")],
                     server=server) + "\n[model gpt-4o]\nfallbacks = gpt-4o-mini\n"


def test_a_500_is_sent_to_the_same_backend_once_more_before_the_fallback(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    a.configure(status=500, fail_count=1)
    s = start_sluice(two_models(a, b))
    r = chat(s)
    assert r.status == 200 and r.headers["x-sluice-model"] == "gpt-4o"  # no downgrade
    assert [a.stats()["requests"], b.stats()["requests"]] == [2, 0]
    line = last_access(s, 1)
    assert line["attempts"] == "2" and line["served_model"] == "gpt-4o"
    assert "fallback" not in s.log_text()


def test_a_500_twice_goes_to_the_fallback(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    a.configure(status=500)
    s = start_sluice(two_models(a, b))
    r = chat(s)
    assert r.status == 200 and r.headers["x-sluice-model"] == "gpt-4o-mini"
    assert [a.stats()["requests"], b.stats()["requests"]] == [2, 1]  # one second chance, no more
    assert "fallback key=k from=gpt-4o to=gpt-4o-mini reason=exhausted" in s.log_text()


def test_a_short_retry_after_is_waited_out_on_the_requested_model(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    a.configure(status=429, retry_after="1", fail_count=1)
    s = start_sluice(two_models(a, b))
    r, secs = timed(lambda: chat(s))
    assert r.status == 200 and r.headers["x-sluice-model"] == "gpt-4o"
    assert 1.0 <= secs < 2.5, secs
    assert [a.stats()["requests"], b.stats()["requests"]] == [2, 0]
    assert "retry key=k backend=a model=gpt-4o after_ms=1000" in s.log_text()
    assert last_access(s, 1)["attempts"] == "2"


def test_a_retry_after_beyond_max_retry_wait_falls_back_at_once(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    a.configure(status=429, retry_after="3", fail_count=1)
    s = start_sluice(two_models(a, b, "max_retry_wait = 2s"))
    r, secs = timed(lambda: chat(s))
    assert r.status == 200 and r.headers["x-sluice-model"] == "gpt-4o-mini" and secs < 1.0
    assert [a.stats()["requests"], b.stats()["requests"]] == [1, 1]


def test_the_clients_own_timeout_forbids_the_wait(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    a.configure(status=429, retry_after="2", fail_count=1)
    s = start_sluice(two_models(a, b))
    # the OpenAI SDKs send their timeout: a 2 s wait would outlast it
    r, secs = timed(lambda: chat(s, headers={"x-stainless-timeout": "1.5"}))
    assert r.status == 200 and r.headers["x-sluice-model"] == "gpt-4o-mini" and secs < 1.0


def test_another_backend_of_the_model_comes_before_the_wait(start_mock, start_sluice):
    a, a2 = start_mock(), start_mock()
    a.configure(status=429, retry_after="2")
    s = start_sluice(pool_conf([("a", a, "priority = 1"), ("a2", a2, "priority = 2")]))
    r, secs = timed(lambda: chat(s))
    assert r.status == 200 and secs < 1.0
    assert [a.stats()["requests"], a2.stats()["requests"]] == [1, 1]


def test_the_client_leaving_during_the_wait_ends_the_request(start_mock, start_sluice):
    a = start_mock()
    a.configure(status=429, retry_after="3")
    s = start_sluice(base_conf(a.url))
    leave_after(s, 0.5, 1)
    line = last_access(s, 1)
    assert line["end"] == "client_closed" and line["status"] == "499"
    time.sleep(3.2)  # the wait's end finds nothing to do
    assert a.stats()["requests"] == 1
    assert value(scrape(s), "sluice_inflight_requests") == 0


# ---- resend_unanswered = stateless (the default) ------------------------------------

def test_an_unanswered_chat_request_is_sent_once_more_by_default(start_mock, start_sluice):
    mock = start_mock()
    s = start_sluice(base_conf(mock.url))
    mock.configure(close=True, fail_count=1)  # read, then the connection closes: no byte back
    r = chat(s)
    assert r.status == 200
    assert mock.stats()["requests"] == 2
    line = last_access(s, 1)
    assert line["attempts"] == "2" and line["end"] == "responded"
    m = scrape(s)
    assert value(m, "sluice_upstream_attempts_total", backend="main", outcome="no_answer") == 1
    assert value(m, "sluice_retries_total", backend="main") == 1


def test_an_unanswered_request_is_sent_once_more_only_once(start_mock, start_sluice):
    mock = start_mock()
    s = start_sluice(base_conf(mock.url))
    mock.configure(close=True, fail_count=2)
    r = chat(s)
    assert r.status == 502 and r.error()["code"] == "upstream_failed"
    assert mock.stats()["requests"] == 2
    assert last_access(s, 1)["end"] == "upstream_no_answer"


def test_stateful_requests_are_never_resent(start_mock, start_sluice):
    mock = start_mock()
    s = start_sluice(base_conf(mock.url, extra_backend="breaker_failures = 10"))
    for body, path in [({"model": "gpt-4o", "input": "hi"}, "/v1/responses"),  # stored by default
                       (dict(CHAT, model="gpt-4o", store=True), "/v1/chat/completions")]:
        mock.reset()
        mock.configure(close=True, fail_count=1)
        r = s.request("POST", path, body)
        assert r.status == 502, path
        assert mock.stats()["requests"] == 1, path
    # a response that is not stored is stateless: sent once more
    mock.reset()
    mock.configure(close=True, fail_count=1)
    r = s.request("POST", "/v1/responses", {"model": "gpt-4o", "input": "hi", "store": False})
    assert r.status == 200 and mock.stats()["requests"] == 2


# ---- breakers per (backend, model) ---------------------------------------------------

def test_one_models_outage_leaves_the_backends_other_models_served(start_mock, start_sluice):
    """One provider (models = *): gpt-4o answers 503 for a while. Its breaker
    on the backend opens; gpt-4o-mini (its fallback) on the same backend goes
    on, so every request is answered, by the fallback."""
    mock = start_mock()
    mock.configure(status=503, fail_model="gpt-4o")
    s = start_sluice(pool_conf([("one", mock, "breaker_failures = 2\nbreaker_trip = 30s")])
                     + "\n[model gpt-4o]\nfallbacks = gpt-4o-mini\n")
    served = [chat(s).headers.get("x-sluice-model") for _ in range(15)]
    assert served == ["gpt-4o-mini"] * 15  # was 2 of 15 answered with one breaker per backend
    log = s.log_text()
    assert "breaker backend=one model=gpt-4o closed->open reason=error_status open_ms=30000" in log
    assert "breaker backend=one closed->open" not in log  # the backend's own breaker: closed
    assert "model=gpt-4o-mini closed->open" not in log
    # gpt-4o was tried twice (a 503 and its second chance), then its breaker kept it out
    assert mock.stats()["requests"] == 2 + 15
    m = scrape(s)
    assert value(m, "sluice_backend_model_state", backend="one", model="gpt-4o") == 1
    assert value(m, "sluice_backend_state", backend="one") == 0
    assert value(m, "sluice_requests_total", key="k", model="gpt-4o", served_model="gpt-4o-mini",
                 backend="one", code="200") == 15


def test_a_connection_failure_counts_for_every_model_of_the_backend(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    s = start_sluice(pool_conf([("a", a, "priority = 1\nbreaker_failures = 1\nbreaker_trip = 30s"),
                                ("b", b, "priority = 2")]) + "\n[model gpt-4o]\n[model gpt-4o-mini]\n")
    a.stop()
    assert chat(s, "gpt-4o").status == 200  # a refused the connection: b answered
    assert chat(s, "gpt-4o-mini").status == 200  # and a is skipped for the other model too
    assert last_access(s, 2)["attempts"] == "1"
    assert "breaker backend=a closed->open reason=connect_failed" in s.log_text()


# ---- a cut stream is charged for what it relayed, and everything says so ----------------

def test_a_cut_stream_is_counted_from_its_relayed_text_everywhere_alike(tmp, start_mock, start_sluice):
    from test_usage_log import records
    mock = start_mock()
    log = tmp / "usage.jsonl"
    s = start_sluice(base_conf(mock.url, extra_server=f"usage_log = {log}\nadmin_key = sk-admin-rescue-000001",
                               key_extra="output_tpm = 1000",
                               extra="[model gpt-4o]\ninput_price = 2.50\noutput_price = 10\n"))
    # the upstream sends 4 chunks (a role chunk, then " tok0" .. " tok2"), then the connection drops
    status, events = s.stream_events(headers={"x-mock-drop-after": "3", "x-mock-completion-tokens": "10"})
    assert status == 200 and '"code":"upstream_failed"' in events[-1]
    relayed = "".join(json.loads(e[len("data: "):])["choices"][0]["delta"].get("content", "")
                      for e in events[:-1])
    want = (len(relayed) + 3) // 4  # counted as a prompt's text is
    assert want > 0
    line = last_access(s, 1)
    assert line["end"] == "stream_broken"
    assert int(line["completion_tokens"]) == want  # was 0 while the limiter charged the estimate
    prompt = int(line["prompt_tokens"])
    assert prompt > 0
    (rec,) = records(log, 1)
    assert rec["output_tokens"] == want and rec["input_tokens"] == prompt
    assert abs(rec["cost_usd"] - (prompt * 2.5 + want * 10) / 1e6) < 1e-6
    m = scrape(s)
    assert value(m, "sluice_tokens_total", key="team-a", model="gpt-4o", direction="output") == want
    assert value(m, "sluice_tokens_total", key="team-a", model="gpt-4o", direction="input") == prompt
    view = s.request("GET", "/admin/keys/team-a", key="sk-admin-rescue-000001").json()
    assert view["output_tokens"]["used"] == want, view  # the limiter's window


# ---- deadlines and dialects real clients see ---------------------------------------------

def test_a_broken_responses_stream_ends_with_the_responses_error_event(start_mock, start_sluice):
    mock = start_mock()
    s = start_sluice(base_conf(mock.url))
    c, r = s.stream(headers={"x-mock-drop-after": "4"}, path="/v1/responses",
                    body={"model": "gpt-4o", "input": "hi", "stream": True})
    text = r.read().decode()
    c.close()
    events = [e for e in text.split("\n\n") if e.strip()]
    assert len(events) == 5  # created, item added, part added, one delta, then sluice's error
    last = events[-1].split("\n")
    assert last[0] == "event: error" and last[1].startswith("data: ")
    err = json.loads(last[1][len("data: "):])
    nested = {"type": "server_error", "code": "upstream_failed", "message": err["message"], "param": None}
    assert err == {"type": "error", "code": "upstream_failed", "message": err["message"], "param": None,
                   "sequence_number": 4,  # the next one after 0..3
                   "error": nested}  # as OpenAI's streams send it, beside the documented members
    assert not text.startswith("data: {\"error\"") and "\ndata: {\"error\"" not in text  # not chat's shape
    # a chat stream keeps chat's shape
    status, events = s.stream_events({"x-mock-drop-after": "2"})
    assert json.loads(events[-1][len("data: "):])["error"]["code"] == "upstream_failed"


def test_the_mock_answers_a_responses_request_with_tools_with_a_function_call(start_mock, start_sluice):
    mock = start_mock()
    s = start_sluice(base_conf(mock.url))
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    r = s.request("POST", "/v1/responses", {"model": "gpt-4o", "input": "weather?", "tools": tools})
    (item,) = r.json()["output"]
    assert item["type"] == "function_call" and item["name"] == "get_weather"
    assert json.loads(item["arguments"]) == {"city": "Paris"}
    # the tool's answer: a message, no further call
    answer = [{"type": "function_call_output", "call_id": item["call_id"], "output": "sunny"}]
    r = s.request("POST", "/v1/responses", {"model": "gpt-4o", "input": answer, "tools": tools})
    assert r.json()["output"][0]["type"] == "message"
    c, resp = s.stream(body={"model": "gpt-4o", "input": "weather?", "tools": tools, "stream": True},
                       path="/v1/responses")
    types = [json.loads(e.split("data: ", 1)[1])["type"] for e in resp.read().decode().split("\n\n") if e.strip()]
    c.close()
    assert types == ["response.created", "response.output_item.added",
                     "response.function_call_arguments.delta", "response.function_call_arguments.done",
                     "response.output_item.done", "response.completed"]


def queued_conf(mock, extra=""):
    return base_conf(mock.url, key_extra=f"rpm = 1\nqueue_timeout = 5s\n{extra}")


def test_a_wait_that_would_end_at_the_clients_timeout_is_refused_at_once(start_mock, start_sluice):
    mock = start_mock()
    s = start_sluice(queued_conf(mock), extra_env={"SLUICE_WINDOW_MS": "3000"})
    assert chat(s).status == 200
    time.sleep(1.0)
    # room comes in about 2.0 s; the client gives up at 2.1 s, and its timer started first:
    # an answer at 2.0 s would not reach it. sluice refuses at once, so the client sees why.
    r, secs = timed(lambda: chat(s, headers={"x-stainless-timeout": "2.1"}))
    assert r.status == 429 and secs < 0.5, secs
    assert r.error()["code"] == "rate_limit_exceeded"
    # with time to spare, it waits and is answered
    time.sleep(2.2)
    assert chat(s).status == 200
    r, secs = timed(lambda: chat(s, headers={"x-stainless-timeout": "6"}))
    assert r.status == 200 and 2.0 < secs < 4.0, secs


def test_a_request_that_waited_logs_its_wait_when_refused_or_gone(start_mock, start_sluice):
    mock = start_mock()
    s = start_sluice(base_conf(mock.url, key_extra="rpm = 1\nqueue_timeout = 2s"),
                     extra_env={"SLUICE_WINDOW_MS": "1500"})
    assert chat(s).status == 200
    import threading
    results = {}
    b = threading.Thread(target=lambda: results.setdefault("b", chat(s).status))
    b.start()
    time.sleep(0.1)
    c, secs = timed(lambda: chat(s))  # behind b: b takes the room at 1.5 s, c's patience ends first
    b.join()
    assert results["b"] == 200 and c.status == 429
    lines = [tokens(l) for l in access_lines(s, 3)]
    refused = next(l for l in lines if l["status"] == "429")
    assert refused["end"] == "rate_limited" and int(refused["queued_ms"]) >= 1000, refused
    # a client that leaves while it waits
    leave_after(s, 0.4, 4)
    gone = tokens(access_lines(s, 4)[-1])
    assert gone["end"] == "client_closed" and int(gone["queued_ms"]) >= 300, gone



# ---- first_token_timeout: the head held back until the first output ------------------------

def stream_timed(s, headers=None, body=None):
    """A chat stream: (status, events, seconds to the response head, seconds in all)."""
    t = time.monotonic()
    c, r = s.stream(headers, body)
    head = time.monotonic() - t
    text = r.read().decode()
    c.close()
    return r.status, [e for e in text.split("\n\n") if e.strip()], head, time.monotonic() - t


def contents(events):
    return "".join(json.loads(e[len("data: "):])["choices"][0]["delta"].get("content") or ""
                   for e in events if e != "data: [DONE]" and json.loads(e[len("data: "):])["choices"])


def test_a_slow_first_token_fails_over_before_the_client_sees_a_byte(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    a.configure(first_token_delay_ms=3000)  # the head and a role chunk at once, the first token late
    s = start_sluice(pool_conf([("a", a, "priority = 1\nfirst_token_timeout = 300ms"),
                                ("b", b, "priority = 2\nfirst_token_timeout = 300ms")]))
    status, events, head, total = stream_timed(s)
    assert status == 200 and events[-1] == "data: [DONE]"
    assert 0.28 <= head < 1.5 and total < 1.5, (head, total)  # the head came with b's first token
    assert contents(events) == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7"  # b's answer only, once
    roles = [e for e in events if '"role":"assistant"' in e]
    assert len(roles) == 1  # a's held role chunk never reached the client
    time.sleep(0.2)
    assert a.stats()["aborted"] == 1 and b.stats()["requests"] == 1
    line = last_access(s, 1)
    assert line["backend"] == "b" and line["attempts"] == "2" and line["end"] == "responded"
    assert int(line["completion_tokens"]) == 8  # only b's answer is charged
    m = scrape(s)
    assert value(m, "sluice_upstream_attempts_total", backend="a", outcome="first_token_timeout") == 1
    assert value(m, "sluice_upstream_ttft_seconds_count", backend="b") == 1
    assert value(m, "sluice_upstream_ttft_seconds_count", backend="a") == 0


def test_without_first_token_timeout_the_head_goes_at_once_and_ttft_is_measured(start_mock, start_sluice):
    mock = start_mock()
    s = start_sluice(base_conf(mock.url))
    status, events, head, total = stream_timed(s, {"x-mock-first-token-delay-ms": "600"})
    assert status == 200 and head < 0.3 and total >= 0.6, (head, total)
    assert contents(events) == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7"
    m = scrape(s)
    assert value(m, "sluice_upstream_ttft_seconds_count", backend="main") == 1
    assert value(m, "sluice_upstream_ttft_seconds_sum", backend="main") >= 0.6


def test_a_held_stream_is_relayed_unchanged(start_mock, start_sluice):
    mock = start_mock()
    plain = start_sluice(base_conf(mock.url))
    held = start_sluice(base_conf(mock.url, extra_backend="first_token_timeout = 2s"))
    body = {"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "x"}]}
    a = stream_timed(plain, body=body)[1]
    b = stream_timed(held, body=body)[1]
    assert a == b and b[-1] == "data: [DONE]"  # the mock's chunks carry no time: byte for byte
    # tool calls are output too, and a stream with no output at all is relayed whole at its end
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    status, events, _, _ = stream_timed(held, body=dict(body, tools=tools))
    assert status == 200 and '"tool_calls"' in events[0]
    status, events, _, _ = stream_timed(held, {"x-mock-completion-tokens": "0"})
    assert status == 200 and events[-1] == "data: [DONE]"
    # plain requests are not held
    assert held.chat().status == 200


def test_a_slow_first_token_with_nothing_else_is_a_504(start_mock, start_sluice):
    mock = start_mock()
    s = start_sluice(base_conf(mock.url, extra_backend="first_token_timeout = 300ms"))
    t = time.monotonic()
    c, r = s.stream({"x-mock-first-token-delay-ms": "3000"})
    body = r.read()
    c.close()
    assert r.status == 504 and json.loads(body)["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - t < 1.5
    line = last_access(s, 1)
    assert line["end"] == "upstream_first_token_timeout" and line["outcome"] == "first_token_timeout"


# ---- continuation of a cut stream (prefill = yes) ------------------------------------------

def test_a_cut_stream_continues_on_a_prefill_backend_and_the_client_gets_one_answer(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    a.configure(drop_after=4)  # four chunks, "tok0 tok1 tok2 tok3", then the connection drops
    s = start_sluice(pool_conf([("a", a, "priority = 1"), ("b", b, "priority = 2\nprefill = yes")]))
    status, events, _, _ = stream_timed(s)
    assert status == 200 and events[-1] == "data: [DONE]"
    assert not any('"error"' in e for e in events)
    assert contents(events) == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7"  # one whole answer
    sent = json.loads(b.last()["body"])
    assert sent["messages"][-1] == {"role": "assistant", "content": "tok0 tok1 tok2 tok3"}
    assert sent["continue_final_message"] is True and sent["add_generation_prompt"] is False
    assert [a.stats()["requests"], b.stats()["requests"]] == [1, 1]
    log = s.log_text()
    assert "continue key=k backend=b model=gpt-4o after_tokens=5 reason=stream_broken" in log
    line = last_access(s, 1)
    assert line["end"] == "responded" and line["attempts"] == "2" and line["backend"] == "b"
    # charged: the cut attempt's prompt and relayed text (5), and the continuation's own usage (4)
    assert int(line["completion_tokens"]) == 5 + 4
    m = scrape(s)
    assert value(m, "sluice_upstream_attempts_total", backend="a", outcome="stream_broken") == 1
    assert value(m, "sluice_tokens_total", key="k", model="gpt-4o", direction="output") == 9


def test_a_refused_continuation_leaves_the_cut_streams_own_error(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    a.configure(drop_after=3)
    b.configure(status=400)  # this server will not continue an assistant message
    s = start_sluice(pool_conf([("a", a, "priority = 1"), ("b", b, "priority = 2\nprefill = yes")]))
    status, events, _, _ = stream_timed(s)
    assert status == 200
    err = json.loads(events[-1][len("data: "):])["error"]
    assert err["code"] == "upstream_failed"  # the cut's error, not b's 400
    assert contents(events[:-1]) == "tok0 tok1 tok2"
    assert b.stats()["requests"] == 1
    assert last_access(s, 1)["end"] == "stream_broken"


def test_without_a_prefill_backend_a_cut_stream_ends_as_today(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    a.configure(drop_after=3)
    s = start_sluice(pool_conf([("a", a, "priority = 1"), ("b", b, "priority = 2")]))
    status, events, _, _ = stream_timed(s)
    assert json.loads(events[-1][len("data: "):])["error"]["code"] == "upstream_failed"
    assert b.stats()["requests"] == 0
