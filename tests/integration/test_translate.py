"""Translation between the dialects: a Messages API call served by an
OpenAI-compatible backend (the mock speaking chat completions) and a chat
completion served by an anthropic backend (the mock speaking the Messages
API), whole and streamed, tools, usage and errors; what cannot be
translated is refused by name, or goes to a backend of its own dialect."""
import json

from harness import CLIENT_KEY, MOCK_HEADERS, UPSTREAM_KEY
from test_failover import last_access
from test_messages import MESSAGE, messages, sse

TOOLS_A = [{"name": "get_weather", "description": "weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
TOOLS_O = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                              "parameters": {"type": "object"}}}]


def conf(claude_url=None, gpt_url=None, key_extra="", extra=""):
    """claude-sonnet-4-5 only on an anthropic backend, gpt-4o only on an
    OpenAI-type one; both, when both URLs are given, for 'shared'."""
    out = f"""
[server]
listen = 127.0.0.1:{{port}}
"""
    if claude_url:
        out += f"""
[backend claude]
type = anthropic
url = {claude_url}
api_key = {UPSTREAM_KEY}
models = claude-sonnet-4-5, shared
{MOCK_HEADERS}
"""
    if gpt_url:
        out += f"""
[backend gpt]
url = {gpt_url}
api_key = {UPSTREAM_KEY}
models = gpt-4o, shared
{MOCK_HEADERS}
"""
    return out + f"""
[key team-a]
key = {CLIENT_KEY}
{key_extra}
{extra}
"""


def chat_events(text):
    return [json.loads(e[6:]) if e[6:] != "[DONE]" else "[DONE]"
            for e in text.split("\n\n") if e.startswith("data: ")]


def test_a_message_served_by_an_openai_backend(start_sluice, start_mock):
    gpt = start_mock()
    s = start_sluice(conf(gpt_url=gpt.url, key_extra="input_tpm = 100000"))
    body = dict(MESSAGE, model="gpt-4o", stop_sequences=["END"], temperature=0.5,
                metadata={"user_id": "u-1"})
    r = messages(s, body, headers={"x-mock-cached-tokens": "2"})
    assert r.status == 200, r.body
    m = r.json()
    assert m["type"] == "message" and m["role"] == "assistant" and m["model"] == "gpt-4o"
    assert m["content"] == [{"type": "text", "text": "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7"}]
    assert m["stop_reason"] == "end_turn"
    assert m["usage"] == {"input_tokens": 4, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 2, "output_tokens": 8}
    sent = gpt.last()
    assert sent["target"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    up = json.loads(sent["body"])
    assert up["messages"] == [{"role": "system", "content": "You are terse."},
                              {"role": "user", "content": "hello there friend"}]
    assert (up["max_tokens"], up["stop"], up["temperature"], up["user"]) == (100, ["END"], 0.5, "u-1")
    a = last_access(s, 1)
    assert a["prompt_tokens"] == "6" and a["completion_tokens"] == "8" and a["backend"] == "gpt"
    # Claude Code's ?beta=true stays behind: the chat path has no such thing
    assert messages(s, body, path="/v1/messages?beta=true").status == 200
    assert gpt.last()["target"] == "/v1/chat/completions"


def test_a_streamed_message_from_an_openai_backend_is_anthropic_s_event_sequence(start_sluice, start_mock):
    gpt = start_mock()
    s = start_sluice(conf(gpt_url=gpt.url))
    c, r = s.stream(body=dict(MESSAGE, model="gpt-4o", stream=True), path="/v1/messages",
                    headers={"x-mock-completion-tokens": "3"})
    events = sse(r.read().decode())
    c.close()
    assert [e[0] for e in events] == ["message_start", "content_block_start", "content_block_delta",
                                      "content_block_delta", "content_block_delta", "content_block_stop",
                                      "message_delta", "message_stop"]
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "tok0 tok1 tok2"
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] == 3
    assert delta["usage"]["input_tokens"] == 6
    up = json.loads(gpt.last()["body"])
    assert up["stream"] is True and up["stream_options"] == {"include_usage": True}
    a = last_access(s, 1)
    assert a["prompt_tokens"] == "6" and a["completion_tokens"] == "3"


def test_tools_translate_both_ways_whole_and_streamed(start_sluice, start_mock):
    claude, gpt = start_mock(), start_mock()
    s = start_sluice(conf(claude.url, gpt.url))
    # a Messages caller, an OpenAI backend: tool_calls become tool_use
    r = messages(s, dict(MESSAGE, model="gpt-4o", tools=TOOLS_A, tool_choice={"type": "any"}))
    m = r.json()
    assert m["stop_reason"] == "tool_use"
    assert m["content"] == [{"type": "tool_use", "id": "call_mock", "name": "get_weather",
                             "input": {"city": "Paris"}}]
    up = json.loads(gpt.last()["body"])
    assert up["tools"] == TOOLS_O[:1] and up["tool_choice"] == "required" or \
        up["tools"][0]["function"]["name"] == "get_weather"
    assert up["tool_choice"] == "required"
    # its answer: the tool_result goes back as a tool message
    turn2 = dict(MESSAGE, model="gpt-4o", tools=TOOLS_A, messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": m["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_mock", "content": "sunny"}]}])
    r = messages(s, turn2)
    assert r.json()["stop_reason"] == "end_turn"
    up = json.loads(gpt.last()["body"])
    assert up["messages"][2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert up["messages"][3] == {"role": "tool", "tool_call_id": "call_mock", "content": "sunny"}
    c, r = s.stream(body=dict(MESSAGE, model="gpt-4o", tools=TOOLS_A, stream=True), path="/v1/messages")
    events = sse(r.read().decode())
    c.close()
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert starts == [{"type": "tool_use", "id": "call_mock", "name": "get_weather", "input": {}}]
    args = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert json.loads(args) == {"city": "Paris"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    # a chat caller, an anthropic backend: tool_use becomes tool_calls
    r = s.chat(body={"model": "claude-sonnet-4-5", "tools": TOOLS_O, "tool_choice": "auto",
                     "messages": [{"role": "user", "content": "weather?"}]})
    ch = r.json()["choices"][0]
    assert ch["finish_reason"] == "tool_calls"
    assert ch["message"]["tool_calls"] == [{"id": "toolu_mock", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city":"Paris"}'}}]
    up = json.loads(claude.last()["body"])
    assert up["tools"] == [{"name": "get_weather", "description": "weather", "input_schema": {"type": "object"}}]
    assert up["tool_choice"] == {"type": "auto"} and up["max_tokens"] == 4096
    c, r = s.stream(body={"model": "claude-sonnet-4-5", "tools": TOOLS_O, "stream": True,
                          "messages": [{"role": "user", "content": "weather?"}]})
    chunks = chat_events(r.read().decode())
    c.close()
    calls = [ch["choices"][0]["delta"]["tool_calls"][0] for ch in chunks
             if ch != "[DONE]" and ch["choices"] and "tool_calls" in ch["choices"][0]["delta"]]
    assert calls[0]["id"] == "toolu_mock" and calls[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Paris"}
    assert chunks[-1] == "[DONE]"


def test_a_chat_completion_served_by_an_anthropic_backend(start_sluice, start_mock):
    claude = start_mock()
    s = start_sluice(conf(claude_url=claude.url))
    r = s.chat(body={"model": "claude-sonnet-4-5", "max_completion_tokens": 5, "stop": "END",
                     "user": "u-2",
                     "messages": [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": [{"type": "text", "text": "hi there"},
                                                               {"type": "image_url", "image_url": {
                                                                   "url": "data:image/png;base64,iVBO"}}]}]},
               headers={"x-mock-cache-read-tokens": "2", "x-mock-prompt-tokens": "10"})
    assert r.status == 200, r.body
    c = r.json()
    assert c["object"] == "chat.completion" and c["model"] == "claude-sonnet-4-5"
    assert c["choices"][0]["message"]["content"] == "tok0 tok1 tok2 tok3 tok4"
    assert c["choices"][0]["finish_reason"] == "length"
    assert c["usage"]["prompt_tokens"] == 10 and c["usage"]["prompt_tokens_details"]["cached_tokens"] == 2
    assert c["usage"]["completion_tokens"] == 5 and c["usage"]["total_tokens"] == 15
    sent = claude.last()
    assert sent["target"] == "/v1/messages" and sent["headers"]["x-api-key"] == UPSTREAM_KEY
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    up = json.loads(sent["body"])
    assert up["system"] == "Be brief." and up["max_tokens"] == 5 and up["stop_sequences"] == ["END"]
    assert up["metadata"] == {"user_id": "u-2"}
    assert up["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "hi there"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}]}]
    # streamed, with and without the usage chunk
    for include in (True, False):
        body = {"model": "claude-sonnet-4-5", "stream": True, "max_tokens": 3,
                "messages": [{"role": "user", "content": "hi"}]}
        if include:
            body["stream_options"] = {"include_usage": True}
        conn, resp = s.stream(body=body)
        chunks = chat_events(resp.read().decode())
        conn.close()
        assert chunks[-1] == "[DONE]"
        text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks[:-1] if ch["choices"])
        assert text == "tok0 tok1 tok2"
        finishes = [ch["choices"][0]["finish_reason"] for ch in chunks[:-1] if ch["choices"]]
        assert finishes[-1] == "length"
        usage = [ch["usage"] for ch in chunks[:-1] if ch.get("usage")]
        # the mock counts the words of the translated body: "text" and "hi"
        assert usage == ([{"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5,
                           "prompt_tokens_details": {"cached_tokens": 0}}] if include else [])
    a = last_access(s, 3)
    assert a["prompt_tokens"] == "2" and a["completion_tokens"] == "3" and a["backend"] == "claude"


def test_what_cannot_be_translated_is_refused_by_name(start_sluice, start_mock):
    claude, gpt = start_mock(), start_mock()
    s = start_sluice(conf(claude.url, gpt.url))
    for body, field in [
        (dict(MESSAGE, model="gpt-4o", thinking={"type": "enabled", "budget_tokens": 1024}), "thinking"),
        (dict(MESSAGE, model="gpt-4o", tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools"),
        (dict(MESSAGE, model="gpt-4o", messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}]), "messages"),
        (dict(MESSAGE, model="gpt-4o", container="c1"), "container"),
    ]:
        r = messages(s, body)
        assert r.status == 400, (field, r.body)
        e = r.json()["error"]
        assert e["type"] == "invalid_request_error" and field in e["message"], (field, e)
    for body, param in [
        ({"n": 2}, "n"), ({"logprobs": True}, "logprobs"), ({"temperature": 1.5}, "temperature"),
        ({"response_format": {"type": "json_object"}}, "response_format"), ({"seed": 1}, "seed"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "late"}]}, "messages"),
    ]:
        b = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}
        b.update(body)
        r = s.chat(body=b)
        assert r.status == 400 and r.json()["error"]["param"] == param, (param, r.body)
    assert claude.stats()["requests"] == 0 and gpt.stats()["requests"] == 0
    # a model both dialects serve: what does not translate goes to its own dialect's backend
    r = messages(s, dict(MESSAGE, model="shared", thinking={"type": "enabled", "budget_tokens": 1024}))
    assert r.status == 200 and claude.stats()["requests"] == 1 and gpt.stats()["requests"] == 0
    r = s.chat(body={"model": "shared", "n": 2, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status == 200 and gpt.stats()["requests"] == 1 and claude.stats()["requests"] == 1


def test_an_upstream_error_reaches_the_client_in_its_dialect(start_sluice, start_mock):
    claude, gpt = start_mock(), start_mock()
    s = start_sluice(conf(claude.url, gpt.url))
    r = messages(s, dict(MESSAGE, model="gpt-4o"), headers={"x-mock-status": "400",
                                                          "x-mock-error-message": "bad thing"})
    assert r.status == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": "bad thing400"}}
    r = s.chat(body={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]},
               headers={"x-mock-status": "404", "x-mock-error-message": "no such"})
    assert r.status == 404
    e = r.json()["error"]
    assert e["message"] == "no such404" and e["type"] == "not_found_error"


def test_a_message_fails_over_from_an_anthropic_backend_to_an_openai_one(start_sluice, start_mock):
    claude, gpt = start_mock(), start_mock()
    cfg = conf(claude.url, gpt.url).replace("models = claude-sonnet-4-5, shared\n",
                                            "models = claude-sonnet-4-5, shared\npriority = 1\n"
                                            ).replace("models = gpt-4o, shared\n",
                                                      "models = gpt-4o, shared\npriority = 2\n")
    s = start_sluice(cfg)
    claude.configure(status=529)
    r = messages(s, dict(MESSAGE, model="shared"))
    assert r.status == 200 and r.json()["content"][0]["text"].startswith("tok0")
    assert claude.stats()["requests"] >= 1 and gpt.stats()["requests"] == 1
    assert gpt.last()["target"] == "/v1/chat/completions"
    a = last_access(s, 1)
    assert a["backend"] == "gpt" and int(a["attempts"]) >= 2
