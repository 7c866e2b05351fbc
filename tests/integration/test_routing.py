"""Models clients call: [model] names sent upstream under another name,
fallback chains when a model's backends are exhausted or its context is too
small, and what the response, the log and the metrics say answered."""
import json
import re

from harness import CLIENT_KEY
from test_failover import access_lines
from test_pool import pool_conf

CHAT = {"messages": [{"role": "user", "content": "hello there"}]}


def chat(s, model, **kw):
    return s.chat(dict(CHAT, model=model), **kw)


def last_model(mock):
    return json.loads(mock.last()["body"])["model"]


def test_alias_is_sent_under_its_upstream_name(start_mock, start_sluice):
    m = start_mock()
    s = start_sluice(pool_conf([("a", m, "models = gpt-4o-mini")], key="models = fast, gpt-4o-mini")
                     + "\n[model fast]\nupstream = gpt-4o-mini\n")
    r = chat(s, "fast")
    assert r.status == 200
    assert last_model(m) == "gpt-4o-mini"  # the body's model, rewritten
    assert r.headers["x-sluice-model"] == "gpt-4o-mini"
    # every other byte of the body as the client sent it
    body = json.loads(m.last()["body"])
    assert body["messages"] == CHAT["messages"]
    # the upstream name itself is callable too
    assert chat(s, "gpt-4o-mini").headers["x-sluice-model"] == "gpt-4o-mini"
    lines = access_lines(s, 2)
    assert " model=fast served_model=gpt-4o-mini " in lines[0]
    assert " model=gpt-4o-mini served_model=gpt-4o-mini " in lines[1]
    metrics = s.request("GET", "/metrics", key=None).body.decode()
    assert 'sluice_requests_total{key="k",model="fast",served_model="gpt-4o-mini",backend="a",code="200"} 1' \
        in metrics
    ids = [d["id"] for d in s.request("GET", "/v1/models").json()["data"]]
    assert "fast" in ids and "gpt-4o-mini" in ids
    # a streamed request is renamed as well, with sluice's usage request merged in
    status, events = s.stream_events(body=dict(CHAT, model="fast", stream=True))
    assert status == 200
    sent = json.loads(m.last()["body"])
    assert sent["model"] == "gpt-4o-mini" and sent["stream_options"] == {"include_usage": True}


def routed(start_mock, start_sluice, model_extra, key="", server=""):
    """Backend a serves gpt-4o, backend b gpt-4o-mini and gpt-4.1."""
    a, b = start_mock(), start_mock()
    conf = pool_conf([("a", a, "models = gpt-4o"), ("b", b, "models = gpt-4o-mini, gpt-4.1")],
                     key=key, server=server)
    conf += "\n[model gpt-4o]\n" + model_extra + "\n"
    conf += "\n[model gpt-4o-mini]\ninput_price = 0\noutput_price = 1.00\n"
    return a, b, start_sluice(conf)


def test_fallback_when_every_backend_answers_429(start_mock, start_sluice):
    a, b, s = routed(start_mock, start_sluice,
                     "fallbacks = gpt-4o-mini\ninput_price = 0\noutput_price = 100.00")
    a.configure(status=429)
    r = chat(s, "gpt-4o")
    assert r.status == 200 and r.headers["x-sluice-model"] == "gpt-4o-mini"
    assert a.stats()["requests"] == 1 and last_model(b) == "gpt-4o-mini"
    line = access_lines(s)[0]
    assert " model=gpt-4o served_model=gpt-4o-mini " in line and " attempts=2 " in line
    # priced as the model that answered: 8 completion tokens at $1.00 per 1M
    assert " cost_usd=0.000008 " in line
    assert "fallback key=k from=gpt-4o to=gpt-4o-mini reason=exhausted" in s.log_text()


def test_fallback_when_every_breaker_is_open(start_mock, start_sluice):
    a, b, s = routed(start_mock, start_sluice, "fallbacks = gpt-4o-mini")
    a.configure(status=500)
    assert chat(s, "gpt-4o").headers["x-sluice-model"] == "gpt-4o-mini"
    # breaker_failures = 3 by default: after three failures a is open and not tried at all
    chat(s, "gpt-4o")
    chat(s, "gpt-4o")
    before = a.stats()["requests"]
    r = chat(s, "gpt-4o")
    assert r.status == 200 and r.headers["x-sluice-model"] == "gpt-4o-mini"
    assert a.stats()["requests"] == before and " attempts=1 " in access_lines(s, 4)[-1]


def test_context_fallback_on_context_length_exceeded(start_mock, start_sluice):
    a, b, s = routed(start_mock, start_sluice, "context_fallbacks = gpt-4.1\nfallbacks = gpt-4o-mini")
    a.configure(status=400, error_code="context_length_exceeded")
    r = chat(s, "gpt-4o")
    assert r.status == 200 and r.headers["x-sluice-model"] == "gpt-4.1"
    assert last_model(b) == "gpt-4.1"
    assert "reason=context_length_exceeded" in s.log_text()
    # any other 400 is the client's: passed through, no fallback
    a.configure(status=400)
    before = b.stats()["requests"]
    r = chat(s, "gpt-4o")
    assert r.status == 400 and r.error()["code"] == "mock_error"
    assert r.headers["x-sluice-model"] == "gpt-4o" and b.stats()["requests"] == before
    # the code decides, not the message: a 400 invalid_value that mentions context_length_exceeded
    # in its text is the client's too (issue #28, finding 10)
    a.configure(status=400)
    r = s.chat({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]},
               headers={"x-mock-error-code": "invalid_value",
                        "x-mock-error-message": "not context_length_exceeded but "})
    assert r.status == 400 and r.error()["code"] == "invalid_value"
    assert b.stats()["requests"] == before


def test_no_fallback_after_the_first_byte(start_mock, start_sluice):
    a, b, s = routed(start_mock, start_sluice, "fallbacks = gpt-4o-mini")
    status, events = s.stream_events(headers={"x-mock-drop-after": "3"},
                                     body=dict(CHAT, model="gpt-4o", stream=True))
    assert status == 200
    assert any('"error"' in e for e in events)  # the stream broke: one error event, no other model
    assert b.stats()["requests"] == 0


def test_fallbacks_respect_the_key_and_max_attempts(start_mock, start_sluice):
    # the key may not call the fallback: it is skipped
    a, b, s = routed(start_mock, start_sluice, "fallbacks = gpt-4o-mini", key="models = gpt-4o")
    a.configure(status=429)
    r = chat(s, "gpt-4o")
    assert r.status == 429 and b.stats()["requests"] == 0
    # max_attempts counts every model's attempts together
    a2, b2, s2 = routed(start_mock, start_sluice, "fallbacks = gpt-4o-mini", server="max_attempts = 1")
    a2.configure(status=429)
    assert chat(s2, "gpt-4o").status == 429 and b2.stats()["requests"] == 0


def test_model_with_fallbacks_only(start_mock, start_sluice):
    """A [model] no backend lists itself answers through its fallbacks."""
    a, b, s = routed(start_mock, start_sluice, "")
    s.stop()
    conf = pool_conf([("b", b, "models = gpt-4o-mini")]) + "\n[model smart]\nfallbacks = gpt-4o-mini\n"
    s = start_sluice(conf)
    r = chat(s, "smart")
    assert r.status == 200 and r.headers["x-sluice-model"] == "gpt-4o-mini"
    assert last_model(b) == "gpt-4o-mini"


def test_routing_config_errors(start_mock, tmp):
    import subprocess
    from harness import SLUICE
    m = start_mock()
    cases = [("[model fast]\nupstream = nowhere\n", "upstream nowhere must be a model name a backend lists"),
             ("[model gpt-4o]\nfallbacks = nowhere\n", "fallbacks names nowhere, which no backend serves"),
             ("[model gpt-4o]\ncontext_fallbacks = *\n", "context_fallbacks cannot be *")]
    for extra, want in cases:
        path = tmp / "bad.conf"
        path.write_text(pool_conf([("a", m, "models = gpt-4o")]).replace("{port}", "8080") + extra)
        out = subprocess.run([str(SLUICE), "-t", "-c", str(path)], capture_output=True, text=True)
        assert out.returncode == 1 and want in out.stdout + out.stderr, out.stdout + out.stderr
