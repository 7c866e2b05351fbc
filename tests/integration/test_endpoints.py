"""sluice's one table of /v1 endpoints (issue #28, finding 9): the calls it
reads usage from, the ones priced per request (request_price), free
management, and every other path, which a key counted in tokens or money may
call only when the operator lists it in passthrough_paths — charged
request_price there. Nothing costs money unaccounted."""
import json

import pytest

import test_budgets as budgets
from harness import CLIENT_KEY, OTHER_KEY
from test_budgets import THIRD_KEY, spent

PRICES = """
[model gpt-image-1]
request_price = 0.04

[model tts-1]
input_price = 15.00

[model claude-x]
request_price = 0.50
"""


def conf(mock, server="", a="budget = 1.00", b="rpm = 100", c="team = t"):
    """Key a has a budget, b only a request limit, c a team with token limits."""
    return budgets.conf(mock, {"a": a, "b": b, "c": c}, teams="[team t]\ninput_tpm = 100000",
                        server=server) + PRICES


CLAUDE = {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
BATCH = {"requests": [{"custom_id": "1", "params": CLAUDE}]}


def test_a_path_sluice_cannot_account_for_is_404_for_keys_counted_in_tokens_or_money(mock, start_sluice):
    """Anthropic's message batches (POST /v1/messages/batches) cost money an
    upstream reports later, if at all: a backend serving them would be used
    with no token counted. A key with a budget, or whose team has token
    limits, gets 404 naming the path, and nothing goes upstream; a key
    limited only in requests may."""
    s = start_sluice(conf(mock))
    for key in (CLIENT_KEY, THIRD_KEY):
        r = s.request("POST", "/v1/messages/batches?beta=true", BATCH, key=key)
        assert r.status == 404, r.body
        err = r.error()
        assert err["code"] == "unknown_url" and "POST /v1/messages/batches" in err["message"]
        assert "passthrough_paths" in err["message"]
    assert mock.stats()["requests"] == 0
    r = s.request("POST", "/v1/messages/batches?beta=true", BATCH, key=OTHER_KEY)
    assert r.status == 200 and r.json()["path"] == "/v1/messages/batches"
    # Creating a batch or a vector store costs money sluice cannot see; a GET
    # of an unknown path is refused too.
    for method, path, body in [("POST", "/v1/batches", {"input_file_id": "f", "endpoint": "/v1/chat/completions",
                                                        "completion_window": "24h"}),
                               ("POST", "/v1/vector_stores", {"name": "docs"}),
                               ("POST", "/v1/threads/t1/runs", {"assistant_id": "a"}),
                               ("GET", "/v1/realtime/sessions", None)]:
        r = s.request(method, path, json.dumps(body).encode() if body else None)
        assert r.status == 404 and path in r.error()["message"], (method, path, r.body)
    assert mock.stats()["requests"] == 1


def test_management_and_known_endpoints_stay_open(mock, start_sluice):
    """Reads and removals of stored resources, files, uploads and cancels are
    free; chat and the per-request endpoints are accounted."""
    s = start_sluice(conf(mock))
    resp = s.request("POST", "/v1/responses", {"model": "gpt-4o", "input": "hi"}).json()["id"]
    for method, path, body in [("GET", "/v1/batches?limit=2", None),
                               ("GET", f"/v1/responses/{resp}", None),
                               ("DELETE", f"/v1/responses/{resp}", None),
                               ("GET", "/v1/chat/completions", None),
                               ("POST", "/v1/uploads", {"purpose": "batch", "filename": "x.jsonl",
                                                        "bytes": 10, "mime_type": "text/jsonl"}),
                               ("GET", "/v1/models", None)]:
        r = s.request(method, path, json.dumps(body).encode() if body else None)
        assert r.status == 200, (method, path, r.body)
    # another key's (or nobody's) stored resources: free to ask about, and not found
    for method, path in [("GET", "/v1/vector_stores/vs_1/files"), ("POST", "/v1/batches/batch_1/cancel")]:
        r = s.request(method, path)
        assert r.status == 404 and r.error()["code"] == "not_found", (method, path, r.body)
    assert s.chat().status == 200
    assert spent(s, "keys", "a") > 0  # the calls' tokens; the rest cost nothing


@pytest.mark.parametrize("use_redis", [False, True])
def test_per_request_endpoints_are_charged_request_price(mock, start_sluice, use_redis, request):
    """Three images at $0.04 cost $0.12; 1,000 characters of speech at $15
    per 1M characters cost $0.015; a failed call costs nothing. The budget
    reserves the price at admission, so a fourth call past it is refused."""
    redis = f"\n[redis]\nurl = {request.getfixturevalue('redis').url}\n" if use_redis else ""
    s = start_sluice(conf(mock, a="budget = 0.20") + redis)
    r = s.request("POST", "/v1/images/generations", {"model": "gpt-image-1", "prompt": "a cat", "n": 3})
    assert r.status == 200, r.body
    assert spent(s, "keys", "a") == 120000
    r = s.request("POST", "/v1/audio/speech", {"model": "tts-1", "voice": "alloy", "input": "é" * 1000})
    assert r.status == 200, r.body
    assert spent(s, "keys", "a") == 120000 + 15000
    r = s.request("POST", "/v1/images/generations", {"model": "gpt-image-1", "prompt": "a dog"},
                  headers={"x-mock-status": "500", "x-mock-fail-count": "9"})
    assert r.status >= 500
    assert spent(s, "keys", "a") == 135000  # failed: nothing charged
    r = s.request("POST", "/v1/images/generations", {"model": "gpt-image-1", "prompt": "a cow", "n": 2})
    assert r.status == 429 and r.error()["code"] == "insufficient_quota"  # $0.08 > $0.065 left
    assert s.request("POST", "/v1/images/generations", {"model": "gpt-image-1", "prompt": "a cow"}).status == 200
    assert spent(s, "keys", "a") == 175000


def test_image_edits_count_the_n_of_their_form(mock, start_sluice):
    from test_api_paths import upload
    s = start_sluice(conf(mock))
    png = b"\x89PNG\r\n\x1a\n" + bytes(100)
    r, _, _ = upload(s, "/v1/images/edits", {"model": "gpt-image-1", "prompt": "hat", "n": "3"},
                     {"image": ("a.png", png, "image/png")})
    assert r.status == 200, r.body
    assert spent(s, "keys", "a") == 120000
    r, _, _ = upload(s, "/v1/images/edits", {"model": "gpt-image-1", "prompt": "hat", "n": "x"},
                     {"image": ("a.png", png, "image/png")})
    assert r.status == 400 and r.error()["param"] == "n"


def test_passthrough_paths_are_charged_request_price(mock, start_sluice):
    s = start_sluice(conf(mock, server="passthrough_paths = /v1/messages/batches", a="budget = 1.00"))
    for _ in range(2):
        r = s.request("POST", "/v1/messages/batches?beta=true", dict(BATCH, model="claude-x"))
        assert r.status == 200, r.body
    assert spent(s, "keys", "a") == 1000000  # two calls at $0.50
    r = s.request("POST", "/v1/messages/batches", dict(BATCH, model="claude-x"))
    assert r.status == 429 and r.error()["code"] == "insufficient_quota"
    assert mock.stats()["requests"] == 2
    # Only the listed path (and below it): others are still refused.
    assert s.request("POST", "/v1/messages/batches_x", BATCH, key=THIRD_KEY).status == 404
    assert s.request("POST", "/v1/messages/batches/b1/cancel", BATCH, key=THIRD_KEY).status == 200


def test_passthrough_paths_must_name_v1_paths(tmp):
    import subprocess
    from harness import SLUICE
    for bad, why in [("*", "name the /v1 paths"), ("/v2/x", "not a /v1 path"), ("/v1/", "not a /v1 path")]:
        conf = tmp / "p.conf"
        conf.write_text(f"[server]\nlisten = 127.0.0.1:9\npassthrough_paths = {bad}\n"
                        f"[backend b]\nurl = http://127.0.0.1:9\n[key k]\nkey = {CLIENT_KEY}\n")
        r = subprocess.run([str(SLUICE), "-t", "-c", str(conf)], capture_output=True, text=True)
        assert r.returncode == 1 and why in r.stdout + r.stderr, (bad, r.stdout + r.stderr)


def test_refusals_before_admission_are_in_the_access_and_usage_logs(mock, start_sluice, tmp):
    """A 401, an unknown endpoint and an unpriced model leave an access line
    (end=refused) and a usage record, with the request id: an operator sees
    who probed what, not only a counter."""
    usage = tmp / "usage.jsonl"
    s = start_sluice(conf(mock, server=f"usage_log = {usage}"))
    assert s.chat(key="sk-not-a-key", headers={"X-Request-Id": "probe-1"}).status == 401
    assert s.request("POST", "/v1/messages/batches", BATCH, headers={"X-Request-Id": "probe-2"}).status == 404
    r = s.chat({"model": "o1", "messages": [{"role": "user", "content": "x"}]},
               headers={"X-Request-Id": "probe-3"})
    assert r.status == 403
    lines = [l for l in s.log_text().splitlines() if " access " in l]
    assert len(lines) == 3, lines
    assert " key=- " in lines[0] and " status=401 end=refused " in lines[0] and "request_id=probe-1" in lines[0]
    assert " key=a " in lines[1] and " status=404 end=refused " in lines[1] and "path=/v1/messages/batches" in lines[1]
    assert " key=a " in lines[2] and " status=403 end=refused " in lines[2] and "request_id=probe-3" in lines[2]
    assert "sk-not-a-key" not in s.log_text()
    s.stop()
    records = [json.loads(l) for l in usage.read_text().splitlines()]
    assert [(r["status"], r["end"], r["request_id"]) for r in records] == [
        (401, "refused", "probe-1"), (404, "refused", "probe-2"), (403, "refused", "probe-3")]
