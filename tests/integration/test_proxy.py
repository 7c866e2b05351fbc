"""A client session through sluice to the mock: answers whole and streamed,
what reaches the upstream, models, Azure, keep-alive and the access log."""
import json
import socket
import threading
import time

from harness import CLIENT_KEY, OTHER_KEY, UPSTREAM_KEY, base_conf


def test_chat_completion_round_trip(sluice, mock):
    r = sluice.chat()
    assert r.status == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"].startswith("tok0")
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 8, "total_tokens": 10,
                             "prompt_tokens_details": {"cached_tokens": 0},
                             "completion_tokens_details": {"reasoning_tokens": 0}}
    assert r.headers["content-type"] == "application/json"
    assert mock.stats()["requests"] == 1


def test_completions_embeddings_responses(sluice):
    r = sluice.request("POST", "/v1/completions", {"model": "gpt-4o", "prompt": "say hi", "max_tokens": 3})
    assert r.status == 200 and r.json()["usage"]["completion_tokens"] == 3
    r = sluice.request("POST", "/v1/embeddings", {"model": "gpt-4o", "input": ["a b", "c"]})
    assert r.status == 200 and len(r.json()["data"]) == 2
    r = sluice.request("POST", "/v1/responses", {"model": "gpt-4o", "input": "one two three"})
    assert r.status == 200 and r.json()["usage"]["input_tokens"] == 3


def test_body_forwarded_byte_for_byte_and_credentials_swapped(sluice, mock):
    raw = '{"model": "gpt-4o",  "messages":[{"role":"user","content":"h\\u00e9llo \u2603"}], "user":"x"}'
    r = sluice.request("POST", "/v1/chat/completions", raw.encode(), key=None, headers={
        "OpenAI-Beta": "assistants=v2", "Connection": "keep-alive, X-Hop", "X-Hop": "secret-hop",
        "X-Api-Key": CLIENT_KEY, "Accept-Encoding": "gzip"})
    assert r.status == 200
    last = mock.last()
    assert last["body"] == raw
    assert last["target"] == "/v1/chat/completions"
    h = last["headers"]
    assert h["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert CLIENT_KEY not in json.dumps(last)
    assert "x-api-key" not in h and "api-key" not in h
    assert h["openai-beta"] == "assistants=v2"
    assert "x-hop" not in h
    assert "accept-encoding" not in h
    assert "expect" not in h


def test_query_string_forwarded(sluice, mock):
    assert sluice.request("POST", "/v1/chat/completions?foo=bar&x=1",
                          {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}).status == 200
    assert mock.last()["target"] == "/v1/chat/completions?foo=bar&x=1"


def read_events(resp):
    """Yields (seconds since start, data) for each SSE event as it arrives."""
    start = time.time()
    buf = b""
    while True:
        chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(1)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            data = b"\n".join(l[6:] for l in event.split(b"\n") if l.startswith(b"data: "))
            yield time.time() - start, data.decode()


def stream(sluice, body, headers=None):
    return sluice.stream(headers, body)


def test_streaming_is_relayed_chunk_by_chunk(sluice):
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    c, r = stream(sluice, body, {"x-mock-chunk-delay-ms": "150", "x-mock-completion-tokens": "6"})
    assert r.status == 200
    assert r.getheader("content-type").startswith("text/event-stream")
    assert r.getheader("transfer-encoding") == "chunked"
    events = list(read_events(r))
    c.close()
    assert events[-1][1] == "[DONE]"
    texts = [json.loads(d)["choices"][0]["delta"]["content"] for _, d in events[:-1]]
    assert "".join(texts) == "tok0 tok1 tok2 tok3 tok4 tok5"
    # The first event arrives long before the last: nothing waits for the whole response.
    assert events[0][0] < 0.5
    assert events[-1][0] - events[0][0] > 0.6


def test_streaming_usage_chunk_passes_when_asked(sluice, tmp):
    body = {"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "a b c"}]}
    c, r = stream(sluice, body, {"x-mock-completion-tokens": "4"})
    events = [d for _, d in read_events(r)]
    c.close()
    usage = json.loads(events[-2])["usage"]
    assert usage == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                     "prompt_tokens_details": {"cached_tokens": 0},
                     "completion_tokens_details": {"reasoning_tokens": 0}}
    time.sleep(0.1)
    assert "prompt_tokens=3 completion_tokens=4" in sluice.log_text()


def test_responses_api_streaming(sluice):
    c = sluice.conn()
    c.request("POST", "/v1/responses", body=json.dumps({"model": "gpt-4o", "input": "x y", "stream": True}),
              headers={"Authorization": f"Bearer {CLIENT_KEY}", "x-mock-completion-tokens": "2"})
    r = c.getresponse()
    events = [json.loads(d) for _, d in read_events(r)]
    c.close()
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["usage"]["output_tokens"] == 2


def test_models_listing_and_retrieval(mock, start_sluice):
    conf = base_conf(mock.url, extra_backend="models = gpt-4o, gpt-4o-mini, o3")
    s = start_sluice(conf)
    r = s.request("GET", "/v1/models")
    assert r.status == 200
    data = r.json()
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == ["gpt-4o", "gpt-4o-mini", "o3"]
    assert all(m["object"] == "model" for m in data["data"])
    r = s.request("GET", "/v1/models", key=OTHER_KEY)
    assert [m["id"] for m in r.json()["data"]] == ["gpt-4o-mini"]
    assert s.request("GET", "/v1/models/o3").json()["id"] == "o3"
    r = s.request("GET", "/v1/models/o3", key=OTHER_KEY)
    assert r.status == 404 and r.error()["code"] == "model_not_found"
    assert s.request("GET", "/v1/models", key=None).status == 401


def test_model_routing_only_to_backends_serving_it(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    conf = f"""
[server]
listen = 127.0.0.1:{{port}}
[backend a]
url = {a.url}
api_key = upstream-secret-credential
models = gpt-4o
[backend b]
url = {b.url}
api_key = upstream-secret-credential
models = o3, o4-mini
[key k]
key = {CLIENT_KEY}
"""
    s = start_sluice(conf)
    for _ in range(3):
        assert s.chat({"model": "o3", "messages": [{"role": "user", "content": "x"}]}).status == 200
    assert s.chat().status == 200
    assert a.stats()["requests"] == 1 and b.stats()["requests"] == 3
    r = s.chat({"model": "gpt-3.5", "messages": [{"role": "user", "content": "x"}]})
    assert r.status == 404 and r.error()["code"] == "model_not_found"
    assert a.stats()["requests"] + b.stats()["requests"] == 4


def test_azure_backend_paths_and_credential(start_mock, start_sluice):
    m = start_mock()
    conf = f"""
[server]
listen = 127.0.0.1:{{port}}
[backend az]
type = azure
url = http://127.0.0.1:{m.port}/
api_key = {UPSTREAM_KEY}
api_version = 2024-06-01
models = gpt-4o
[backend az-fixed]
type = azure
url = http://127.0.0.1:{m.port}
api_key = {UPSTREAM_KEY}
api_version = 2024-10-21
deployment = prod-4o
models = fixed-model
[key k]
key = {CLIENT_KEY}
"""
    s = start_sluice(conf)
    assert s.chat().status == 200
    last = m.last()
    assert last["target"] == "/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01"
    assert last["headers"]["api-key"] == UPSTREAM_KEY
    assert "authorization" not in last["headers"]
    r = s.request("POST", "/v1/embeddings?x=1", {"model": "fixed-model", "input": "a"})
    assert r.status == 200
    assert m.last()["target"] == "/openai/deployments/prod-4o/embeddings?api-version=2024-10-21&x=1"
    # the client's query sets neither api-version nor a credential (issue #28, finding 10)
    r = s.request("POST", "/v1/embeddings?api-version=2099-01-01&x=2&api%2Dkey=leak",
                  {"model": "fixed-model", "input": "a"})
    assert r.status == 200
    assert m.last()["target"] == "/openai/deployments/prod-4o/embeddings?api-version=2024-10-21&x=2"


def test_upstream_connections_are_reused(sluice, mock):
    before = mock.stats()["connections"]  # this call is a connection of its own
    c = sluice.conn()
    for _ in range(20):
        assert sluice.chat(conn=c).status == 200
    c.close()
    for _ in range(5):
        assert sluice.chat().status == 200
    st = mock.stats()
    assert st["requests"] == 25
    assert st["connections"] - before - 1 == 1  # sluice's one upstream connection


def test_access_log_line_and_no_secrets(sluice):
    sluice.chat()
    sluice.chat(key="sk-wrong-key-000000")
    time.sleep(0.1)
    text = sluice.log_text()
    line = [l for l in text.splitlines() if " access " in l][0]
    for part in ("key=team-a", "model=gpt-4o", "backend=main", "status=200", "duration_ms=",
                 "prompt_tokens=2", "completion_tokens=8"):
        assert part in line
    assert CLIENT_KEY not in text and UPSTREAM_KEY not in text and "sk-wrong-key" not in text


def test_keepalive_pipelining_and_http10(sluice):
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}).encode()
    one = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + CLIENT_KEY.encode() +
           b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    out = sluice.raw(one + one + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200 OK") == 3
    assert out.rstrip().endswith(b'{"status":"ok"}')
    out = sluice.raw(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.0 200 OK") and b"Connection: close" in out


def test_chunked_request_body_and_expect_continue(sluice, mock):
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x " * 600}]}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 100]), body[i:i + 100]) for i in range(0, len(body), 100))
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + CLIENT_KEY.encode() +
           b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks + b"0\r\n\r\n")
    out = sluice.raw(req)
    assert out.startswith(b"HTTP/1.1 200 OK")
    assert mock.last()["body"] == body.decode()
    s = socket.create_connection(("127.0.0.1", sluice.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + CLIENT_KEY.encode() +
              b"\r\nExpect: 100-continue\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(body)
    out = b""
    while (chunk := s.recv(65536)):
        out += chunk
    s.close()
    assert out.startswith(b"HTTP/1.1 200 OK")


def test_routes_health_404_405(sluice):
    assert sluice.request("GET", "/healthz", key=None).status == 200
    r = sluice.request("HEAD", "/healthz", key=None)
    assert r.status == 200 and r.body == b""
    r = sluice.request("GET", "/nope", key=None)
    assert r.status == 404 and r.error()["code"] == "unknown_url"
    # GET /v1/chat/completions is the SDK's chat.completions.list(): forwarded (issue #14)
    r = sluice.request("PUT", "/v1/chat/completions")
    assert r.status == 405 and r.headers["allow"] == "GET, POST, DELETE"
    r = sluice.request("DELETE", "/v1/models")
    assert r.status == 405


def test_two_workers(mock, start_sluice):
    s = start_sluice(base_conf(mock.url, extra_server="workers = 2"))
    for _ in range(20):
        assert s.chat().status == 200
    assert mock.stats()["requests"] == 20


def test_client_text_cannot_forge_log_lines(sluice):
    evil = "gpt-4o\n2026-01-01T00:00:00.000Z error forged line \u00fe\u0000"
    sluice.chat({"model": evil, "messages": [{"role": "user", "content": "x"}]})
    time.sleep(0.1)
    raw = sluice.log.read_bytes()
    assert b"\nforged" not in raw and b"\n2026-01-01" not in raw
    assert all(b == 10 or 32 <= b < 127 for b in raw), "non-printable bytes in the log"


def test_many_distinct_upstream_urls_each_go_where_they_should(sluice, mock):
    """Parsed upstream URLs are kept per worker in 64 slots; 150 distinct query
    strings (so slots are replaced, and some collide with the slot of a request
    still running upstream) must each reach the upstream exactly as sent."""
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    slow = {}

    def slow_call():
        slow["r"] = sluice.request("POST", "/v1/chat/completions?held=1", body,
                                   headers={"x-mock-delay-ms": "1500"})

    t = threading.Thread(target=slow_call)
    t.start()
    time.sleep(0.3)
    conn = sluice.conn()
    wrong = []
    for i in range(150):
        target = f"/v1/chat/completions?n={i}&pad={'x' * (i % 7)}"
        r = sluice.request("POST", target, body, conn=conn)
        got = mock.last()["target"]
        if r.status != 200 or got != target:
            wrong.append((target, r.status, got))
        if i % 50 == 0:  # a URL seen before takes its kept parse
            assert sluice.request("POST", "/v1/chat/completions?n=0&pad=", body, conn=conn).status == 200
            assert mock.last()["target"] == "/v1/chat/completions?n=0&pad="
    conn.close()
    t.join()
    assert wrong == []
    assert slow["r"].status == 200
