"""Anthropic's Messages API through sluice: /v1/messages (plain and streamed)
and /v1/messages/count_tokens served by type = anthropic backends with
x-api-key and anthropic-version, the same keys, limits and budgets as chat
completions, usage with the prompt cache counted and priced, and sluice's
own refusals in Anthropic's error shape and headers. The mock upstream
speaks the Messages API."""
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import CLIENT_KEY, MOCK_HEADERS, OTHER_KEY, UPSTREAM_KEY
from test_failover import last_access

MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 100,
           "system": "You are terse.",
           "messages": [{"role": "user", "content": "hello there friend"}]}


def conf(claude_url, openai_url=None, key_extra="", extra="", backend_extra=""):
    openai = f"""
[backend gpt]
url = {openai_url}
api_key = {UPSTREAM_KEY}
models = gpt-4o
{MOCK_HEADERS}
""" if openai_url else ""
    return f"""
[server]
listen = 127.0.0.1:{{port}}

[backend claude]
type = anthropic
url = {claude_url}
api_key = {UPSTREAM_KEY}
models = claude-sonnet-4-5, claude-opus-4
{MOCK_HEADERS}
{backend_extra}
{openai}
[key team-a]
key = {CLIENT_KEY}
{key_extra}

[key team-b]
key = {OTHER_KEY}
models = gpt-4o
{extra}
"""


def two_claudes(a, b):
    """Two anthropic backends: the mock a first (priority 1), then b."""
    return conf(a.url, backend_extra="priority = 1") + f"""
[backend claude-2]
type = anthropic
url = {b.url}
api_key = {UPSTREAM_KEY}
models = claude-sonnet-4-5, claude-opus-4
priority = 2
"""


def messages(s, body=None, headers=None, key=CLIENT_KEY, path="/v1/messages"):
    """A Messages API call as Anthropic's SDKs make it: the key in x-api-key."""
    h = {"anthropic-version": "2023-06-01"}
    if key:
        h["x-api-key"] = key
    h.update(headers or {})
    return s.request("POST", path, body if body is not None else MESSAGE, headers=h, key=None)


def sse(text):
    """(event, data) pairs of an SSE body."""
    out = []
    for block in text.split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if name or data:
            out.append((name, data))
    return out


def test_a_message_goes_to_an_anthropic_backend_with_its_own_credential(start_sluice, start_mock):
    claude, gpt = start_mock(), start_mock()
    s = start_sluice(conf(claude.url, gpt.url, key_extra="rpm = 100\ninput_tpm = 10000\noutput_tpm = 5000"))
    r = messages(s, headers={"anthropic-beta": "prompt-caching-2024-07-31"})
    assert r.status == 200, r.body
    body = r.json()
    assert body["type"] == "message" and body["content"][0]["text"].startswith("tok0")
    assert body["usage"]["input_tokens"] == 6 and body["stop_reason"] == "end_turn"
    sent = claude.last()
    assert sent["target"] == "/v1/messages"
    h = sent["headers"]
    assert h["x-api-key"] == UPSTREAM_KEY and "authorization" not in h  # the backend's, never the client's
    assert h["anthropic-version"] == "2023-06-01" and h["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert CLIENT_KEY not in json.dumps(sent)
    assert gpt.stats()["requests"] == 0
    # Anthropic's rate-limit headers, the key's own; not the upstream account's
    hd = r.headers
    assert hd["anthropic-ratelimit-requests-limit"] == "100"
    assert hd["anthropic-ratelimit-requests-remaining"] == "99"
    assert hd["anthropic-ratelimit-input-tokens-limit"] == "10000"
    assert hd["anthropic-ratelimit-output-tokens-limit"] == "5000"
    assert hd["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert "x-ratelimit-limit-requests" not in hd
    assert hd["x-sluice-model"] == "claude-sonnet-4-5"
    a = last_access(s, 1)
    assert a["prompt_tokens"] == "6" and a["completion_tokens"] == "8" and a["backend"] == "claude"
    # without the client's anthropic-version, the backend is sent one
    r = s.request("POST", "/v1/messages", MESSAGE)  # Authorization: Bearer works too
    assert r.status == 200 and claude.last()["headers"]["anthropic-version"] == "2023-06-01"
    # chat completions never go to the anthropic backend
    assert s.chat().status == 200 and gpt.stats()["requests"] == 1 and claude.stats()["requests"] == 2


def test_a_streamed_message_is_relayed_event_by_event_and_counted(start_sluice, mock):
    s = start_sluice(conf(mock.url))
    body = dict(MESSAGE, stream=True)
    c, r = s.stream(body=body, path="/v1/messages",
                    headers={"x-mock-cache-write-tokens": "2", "x-mock-cache-read-tokens": "3",
                             "x-mock-completion-tokens": "5"})
    assert r.status == 200 and r.getheader("content-type").startswith("text/event-stream")
    events = sse(r.read().decode())
    c.close()
    names = [e[0] for e in events]
    assert names == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 5 + [
        "content_block_stop", "message_delta", "message_stop"]
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "tok0 tok1 tok2 tok3 tok4"
    # input from message_start with the cache's parts, output from message_delta
    a = last_access(s, 1)
    assert a["prompt_tokens"] == "6" and a["completion_tokens"] == "5" and a["end"] == "responded"


def test_the_prompt_cache_is_counted_and_priced(start_sluice, mock, tmp):
    usage_log = tmp / "usage.jsonl"
    s = start_sluice(conf(mock.url, key_extra="budget = 10\n", extra=f"""
[model claude-sonnet-4-5]
input_price = 3.00
cached_input_price = 0.30
cache_write_price = 3.75
output_price = 15.00
""").replace("[server]\n", f"[server]\nusage_log = {usage_log}\n"))
    body = dict(MESSAGE, messages=[{"role": "user", "content": " ".join(["word"] * 1000)}])
    r = messages(s, body, headers={"x-mock-cache-write-tokens": "300", "x-mock-cache-read-tokens": "200",
                                   "x-mock-completion-tokens": "10"})
    assert r.status == 200
    u = r.json()["usage"]
    assert (u["input_tokens"], u["cache_creation_input_tokens"], u["cache_read_input_tokens"]) == (503, 300, 200)
    a = last_access(s, 1)
    assert a["prompt_tokens"] == "1003"
    # 503 at $3, 300 at $3.75, 200 at $0.30, 10 at $15 per 1M
    want = (503 * 3.0 + 300 * 3.75 + 200 * 0.30 + 10 * 15.0) / 1e6
    assert abs(float(a["cost_usd"]) - want) < 2e-6, a
    deadline = time.time() + 5
    while time.time() < deadline and not usage_log.exists():
        time.sleep(0.05)
    time.sleep(0.2)
    rec = json.loads(usage_log.read_text().splitlines()[-1])
    assert rec["input_tokens"] == 1003 and rec["cached_tokens"] == 200
    assert rec["cache_write_tokens"] == 300
    # streamed: the same numbers from message_start and message_delta
    c, r = s.stream(body=dict(body, stream=True), path="/v1/messages",
                    headers={"x-mock-cache-write-tokens": "300", "x-mock-cache-read-tokens": "200",
                             "x-mock-completion-tokens": "10"})
    r.read()
    c.close()
    a = last_access(s, 2)
    assert a["prompt_tokens"] == "1003" and a["completion_tokens"] == "10"
    assert abs(float(a["cost_usd"]) - want) < 2e-6, a


def test_sluice_refuses_an_anthropic_caller_in_anthropic_s_shape(start_sluice, mock):
    s = start_sluice(conf(mock.url, key_extra="rpm = 1\nmodels = claude-sonnet-4-5\nmax_prompt_tokens = 50")
                     .replace("[server]\n", "[server]\nmax_body_size = 64k\n"))

    def check(r, status, etype):
        assert r.status == status, (r.status, r.body)
        b = r.json()
        assert b["type"] == "error" and b["error"]["type"] == etype and b["error"]["message"], b
        assert "param" not in b["error"]
        return r.headers

    check(messages(s, key=None), 401, "authentication_error")
    check(messages(s, key="sk-wrong"), 401, "authentication_error")
    check(messages(s, dict(MESSAGE, model="claude-opus-4")), 403, "permission_error")
    check(s.request("POST", "/v1/messages", "{not json", headers={"x-api-key": CLIENT_KEY}, key=None), 400,
          "invalid_request_error")
    r = messages(s, {k: v for k, v in MESSAGE.items() if k != "max_tokens"})
    check(r, 400, "invalid_request_error")
    assert "max_tokens" in r.json()["error"]["message"]
    check(messages(s, dict(MESSAGE, messages=[{"role": "system", "content": "x"}])), 400,
          "invalid_request_error")
    # one credential only; a body or a prompt too large
    check(messages(s, headers={"Authorization": f"Bearer {CLIENT_KEY}"}), 400, "invalid_request_error")
    check(messages(s, dict(MESSAGE, system="x" * 70000)), 413, "request_too_large")
    h = check(messages(s, dict(MESSAGE, system="word " * 100)), 413, "request_too_large")
    assert h["x-should-retry"] == "false"
    assert mock.stats()["requests"] == 0
    assert messages(s).status == 200
    h = check(messages(s), 429, "rate_limit_error")
    assert int(h["retry-after"]) >= 1 and int(h["retry-after-ms"]) > 0
    # an OpenAI caller of the same sluice keeps OpenAI's shape
    r = s.chat(key="sk-wrong")
    assert r.status == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_no_backend_is_529_overloaded_for_anthropic_callers(start_sluice, mock, start_mock):
    s = start_sluice(conf(mock.url, backend_extra="breaker_failures = 1\nbreaker_trip = 60s\nmax_retry_wait = 0"))
    mock.configure(status=529, retry_after="1")
    r = messages(s)
    assert r.status == 529, r.body  # the upstream's own overloaded answer, passed through
    assert r.json()["error"]["type"] == "overloaded_error"
    r = messages(s)  # the breaker is open: sluice's own 503 becomes Anthropic's 529
    assert r.status == 529 and r.json() == {"type": "error", "error": {
        "type": "overloaded_error", "message": r.json()["error"]["message"]}}
    assert last_access(s, 2)["status"] == "529"


def test_a_failing_anthropic_backend_fails_over_to_the_next(start_sluice, start_mock):
    a, b = start_mock(), start_mock()
    s = start_sluice(two_claudes(a, b))
    a.configure(status=500)
    r = messages(s)
    assert r.status == 200 and r.json()["type"] == "message"
    assert a.stats()["requests"] >= 1 and b.stats()["requests"] == 1
    assert b.last()["headers"]["x-api-key"] == UPSTREAM_KEY


def test_a_cut_stream_ends_with_an_anthropic_error_event(start_sluice, mock):
    s = start_sluice(conf(mock.url))
    c, r = s.stream(body=dict(MESSAGE, stream=True), path="/v1/messages",
                    headers={"x-mock-drop-after": "5"})
    assert r.status == 200
    events = sse(r.read().decode())
    c.close()
    assert events[-1][0] == "error" and events[-1][1]["type"] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in [e[0] for e in events]


def test_count_tokens_is_forwarded_and_charges_no_tokens(start_sluice, mock):
    s = start_sluice(conf(mock.url, key_extra="input_tpm = 50\nrpm = 10"))
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": " ".join(["w"] * 200)}]}
    for _ in range(3):  # 200 words each: far past input_tpm if it were charged
        r = messages(s, body, path="/v1/messages/count_tokens")
        assert r.status == 200 and r.json() == {"input_tokens": 200}, r.body
    assert mock.last()["target"] == "/v1/messages/count_tokens"
    h = r.headers
    assert h["anthropic-ratelimit-input-tokens-remaining"] == "50"
    assert h["anthropic-ratelimit-requests-remaining"] == "7"


def test_what_does_not_translate_goes_only_to_its_own_dialect(start_sluice, start_mock):
    claude, gpt = start_mock(), start_mock()
    s = start_sluice(conf(claude.url, gpt.url))
    r = messages(s, {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
                 path="/v1/messages/count_tokens")
    assert r.status == 404 and r.json()["error"]["type"] == "not_found_error"
    assert "only /v1/messages translates" in r.json()["error"]["message"]
    r = s.request("POST", "/v1/embeddings", {"model": "claude-sonnet-4-5", "input": "x"})
    assert r.status == 404 and r.json()["error"]["code"] == "model_not_found"
    assert "only /v1/chat/completions translates" in r.json()["error"]["message"]
    assert claude.stats()["requests"] == 0 and gpt.stats()["requests"] == 0


def test_tools_come_back_as_tool_use(start_sluice, mock):
    s = start_sluice(conf(mock.url))
    tools = [{"name": "get_weather", "description": "weather",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    r = messages(s, dict(MESSAGE, tools=tools))
    body = r.json()
    assert r.status == 200 and body["stop_reason"] == "tool_use"
    assert body["content"][0] == {"type": "tool_use", "id": "toolu_mock", "name": "get_weather",
                                  "input": {"city": "Paris"}}
    c, r = s.stream(body=dict(MESSAGE, tools=tools, stream=True), path="/v1/messages")
    events = sse(r.read().decode())
    c.close()
    deltas = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
    assert json.loads("".join(deltas)) == {"city": "Paris"}
    a = last_access(s, 2)
    assert a["completion_tokens"] == "12"


@pytest.mark.parametrize("use_redis", [False, True])
def test_limits_are_exact_for_messages_across_nodes(start_sluice, start_mock, use_redis, request):
    """Messages calls and chat completions of one key, native and translated,
    concurrently over three nodes sharing Redis (one node in process): the
    key's rpm and input_tpm admit exactly what they allow."""
    claude, gpt = start_mock(), start_mock()
    for m in (claude, gpt):
        m.configure(prompt_tokens=8)  # usage equals the estimate: no correction frees tokens
    redis = request.getfixturevalue("redis") if use_redis else None
    cfg = conf(claude.url, gpt.url, key_extra="rpm = 30")
    if redis:
        cfg += f"\n[redis]\nurl = {redis.url}\ntimeout = 1s\n"
    nodes = [start_sluice(cfg) for _ in range(3 if redis else 1)]
    # "abcdefgh": 3 + 2 + 3 = 8 estimated tokens, on either dialect
    calls = [("/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 5,
                               "messages": [{"role": "user", "content": "abcdefgh"}]}),
             ("/v1/messages", {"model": "gpt-4o", "max_tokens": 5,
                               "messages": [{"role": "user", "content": "abcdefgh"}]}),
             ("/v1/chat/completions", {"model": "claude-sonnet-4-5",
                                       "messages": [{"role": "user", "content": "abcdefgh"}]})]

    def one(i):
        path, body = calls[i % 3]
        return messages(nodes[i % len(nodes)], body, path=path).status

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(one, range(90)))
    assert statuses.count(200) == 30 and statuses.count(429) == 60
    assert claude.stats()["requests"] + gpt.stats()["requests"] == 30
    # input tokens on a key of its own: 8 per request against 100
    cfg2 = cfg.replace("[key team-a]", "[key team-x]").replace("rpm = 30", "input_tpm = 100")
    nodes2 = [start_sluice(cfg2) for _ in range(len(nodes))]

    def two(i):
        path, body = calls[i % 3]
        return messages(nodes2[i % len(nodes2)], body, path=path).status

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(two, range(45)))
    assert statuses.count(200) == 12  # floor(100 / 8)


def test_an_anthropic_upstream_s_own_remaining_marks_it_full_until_its_reset(start_sluice, start_mock):
    a, b = start_mock(), start_mock()
    s = start_sluice(two_claudes(a, b))
    t_reset = int(time.time()) + 2
    reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_reset))
    a.configure(header=f"anthropic-ratelimit-requests-remaining: 0\r\nanthropic-ratelimit-requests-reset: {reset}")
    assert messages(s).status == 200  # a answers, and says it has nothing left until reset
    for _ in range(4):
        assert messages(s).status == 200
    assert a.stats()["requests"] == 1 and b.stats()["requests"] == 4
    a.configure()
    time.sleep(max(0.0, t_reset + 0.3 - time.time()))
    assert messages(s).status == 200
    assert a.stats()["requests"] == 2
    assert "breaker" not in s.log_text()


def test_the_anthropic_sdk_s_model_list_is_in_its_shape(start_sluice, mock):
    s = start_sluice(conf(mock.url, key_extra="models = claude-sonnet-4-5"))
    r = s.request("GET", "/v1/models", headers={"anthropic-version": "2023-06-01", "x-api-key": CLIENT_KEY}, key=None)
    assert r.status == 200, r.body
    assert r.json() == {"data": [{"type": "model", "id": "claude-sonnet-4-5", "display_name": "claude-sonnet-4-5",
                                  "created_at": "1970-01-01T00:00:00Z"}],
                        "has_more": False, "first_id": "claude-sonnet-4-5", "last_id": "claude-sonnet-4-5"}
    r = s.request("GET", "/v1/models/claude-opus-4", headers={"anthropic-version": "2023-06-01"})
    assert r.status == 404 and r.json()["error"]["type"] == "not_found_error"
    r = s.request("GET", "/v1/models")  # an OpenAI caller: OpenAI's list
    assert r.json()["object"] == "list" and r.json()["data"][0]["object"] == "model"
