"""What a client that gets it wrong sees: each auth failure, each class of bad
input and bad HTTP framing. Nothing of it may reach the upstream."""
import json
import re
import socket
import time

import pytest

from conftest import CLIENT_KEY, OTHER_KEY, base_conf

GOOD = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}


def assert_openai_error(r, status, code=None, param=None):
    assert r.status == status, r.body
    err = r.error()
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if code:
        assert err["code"] == code
    if param:
        assert err["param"] == param
    return err


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer sk-not-a-real-key-123"},
    {"Authorization": "Basic c2s6c2s="},
    {"Authorization": "Bearer "},
    {"api-key": "sk-not-a-real-key-123"},
    {"x-api-key": ""},
])
def test_auth_failures(sluice, mock, headers):
    r = sluice.request("POST", "/v1/chat/completions", GOOD, headers=headers, key=None)
    err = assert_openai_error(r, 401, "invalid_api_key")
    assert "sk-not-a-real" not in err["message"]
    assert mock.stats()["requests"] == 0


@pytest.mark.parametrize("header", ["api-key", "x-api-key"])
def test_alternative_key_headers(sluice, header):
    assert sluice.request("POST", "/v1/chat/completions", GOOD, headers={header: CLIENT_KEY}, key=None).status == 200


def test_model_not_allowed(sluice, mock):
    r = sluice.chat(key=OTHER_KEY)
    assert_openai_error(r, 403, "model_not_allowed", "model")
    assert mock.stats()["requests"] == 0
    assert sluice.chat({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                       key=OTHER_KEY).status == 200


@pytest.mark.parametrize("path,body,param", [
    ("/v1/chat/completions", "{not json", None),
    ("/v1/chat/completions", "[1,2]", None),
    ("/v1/chat/completions", "", None),
    ("/v1/chat/completions", '{"messages":[]}', "model"),
    ("/v1/chat/completions", '{"model":5,"messages":[]}', "model"),
    ("/v1/chat/completions", '{"model":"","messages":[]}', "model"),
    ("/v1/chat/completions", '{"model":"gpt-4o"}', "messages"),
    ("/v1/chat/completions", '{"model":"gpt-4o","messages":"hi"}', "messages"),
    ("/v1/chat/completions", '{"model":"gpt-4o","messages":[]}', "messages"),
    ("/v1/chat/completions", '{"model":"gpt-4o","messages":["hi"]}', "messages"),
    ("/v1/chat/completions", '{"model":"gpt-4o","messages":[{"role":"user","content":5}]}', "messages"),
    ("/v1/chat/completions", '{"model":"gpt-4o","stream":"yes","messages":[{"role":"user","content":"x"}]}', "stream"),
    ("/v1/chat/completions", '{"model":"gpt-4o","max_tokens":-1,"messages":[{"role":"user","content":"x"}]}', "max_tokens"),
    ("/v1/chat/completions", '{"model":"gpt-4o","max_tokens":1.5,"messages":[{"role":"user","content":"x"}]}', "max_tokens"),
    ("/v1/chat/completions", '{"model":"gpt-4o","stream_options":[],"messages":[{"role":"user","content":"x"}]}', "stream_options"),
    ("/v1/completions", '{"model":"gpt-4o"}', "prompt"),
    ("/v1/completions", '{"model":"gpt-4o","prompt":7}', "prompt"),
    ("/v1/embeddings", '{"model":"gpt-4o"}', "input"),
    ("/v1/embeddings", '{"model":"gpt-4o","input":{}}', "input"),
    ("/v1/responses", '{"model":"gpt-4o","input":3}', "input"),
])
def test_bad_bodies(sluice, mock, path, body, param):
    r = sluice.request("POST", path, body.encode())
    assert_openai_error(r, 400, "invalid_request_error", param)
    assert r.error()["type"] == "invalid_request_error"
    assert mock.stats()["requests"] == 0


def test_body_too_large(mock, start_sluice):
    s = start_sluice(base_conf(mock.url, extra_server="max_body_size = 1k"))
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 2000}]}
    assert_openai_error(s.chat(big), 413, "request_too_large")
    # chunked bodies are capped as they arrive
    body = json.dumps(big).encode()
    out = s.raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n\r\n" +
                b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 ")
    assert mock.stats()["requests"] == 0


def test_header_section_too_large(sluice, mock):
    out = sluice.raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 ")
    assert b"headers_too_large" in out
    assert mock.stats()["requests"] == 0


def framing(extra_headers, body=b'{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}'):
    return (b"POST /v1/chat/completions HTTP/1.1\r\n" + extra_headers +
            b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n\r\n" + body)


@pytest.mark.parametrize("name,request_bytes", [
    ("duplicate content-length", framing(b"Host: x\r\nContent-Length: 61\r\nContent-Length: 61\r\n")),
    ("space before colon", framing(b"Host: x\r\nContent-Length : 61\r\n")),
    ("unknown transfer-encoding", framing(b"Host: x\r\nTransfer-Encoding: gzip\r\n")),
    ("te and cl", framing(b"Host: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 61\r\n")),
    ("missing host", framing(b"Content-Length: 61\r\n")),
    ("nul in header", framing(b"Host: x\r\nX-A: a\x00b\r\nContent-Length: 61\r\n")),
    ("nul line", framing(b"Host: x\r\n\x00\r\nContent-Length: 61\r\n")),
    ("bare lf", framing(b"Host: x\nContent-Length: 61\r\n")),
    ("obs-fold", framing(b"Host: x\r\nX-A: a\r\n b\r\nContent-Length: 61\r\n")),
    ("bad chunk size", framing(b"Host: x\r\nTransfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n")),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
])
def test_bad_framing_gets_400_and_close(sluice, mock, name, request_bytes):
    out = sluice.raw(request_bytes + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    assert b"Connection: close" in out
    assert out.count(b"HTTP/1.1") == 1  # nothing after it was served: the connection was closed
    body = out.split(b"\r\n\r\n", 1)[1]
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert mock.stats()["requests"] == 0


def test_a_request_sees_only_its_own_headers(sluice, mock):
    """Requests on one connection, one after the other: the second carries no key
    and must not be served with the first one's (request structs are reused)."""
    body = json.dumps(GOOD).encode()
    pad = b"".join(b"X-Pad-%d: %d\r\n" % (i, i) for i in range(60))
    first = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + pad + b"Authorization: Bearer " +
             CLIENT_KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    # (without a body: a request with one and no key is answered before its body, then closed)
    second = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    last = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = sluice.raw(first + second + last)
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", out)]
    assert statuses == [200, 401, 200], out[:600]
    assert mock.stats()["requests"] == 1


def test_unsupported_version(sluice):
    assert sluice.raw(b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 505 ")


def test_slow_sender_deadlines(mock, start_sluice):
    s = start_sluice(base_conf(mock.url, extra_server="header_timeout = 1s\nbody_timeout = 1s\nkeepalive_timeout = 1s"))
    # Headers trickling in: one byte every 200 ms never finishes the head.
    sock = socket.create_connection(("127.0.0.1", s.port))
    start = time.time()
    sock.settimeout(0.2)
    out = b""
    for ch in b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n":
        try:
            sock.sendall(bytes([ch]))
            data = sock.recv(4096)
            if not data:
                break
            out += data
            break
        except socket.timeout:
            continue
        except OSError:
            break
    sock.settimeout(3)
    try:
        while (data := sock.recv(4096)):
            out += data
    except OSError:
        pass
    elapsed = time.time() - start
    sock.close()
    assert out.startswith(b"HTTP/1.1 408 "), out
    assert 0.9 < elapsed < 2.5
    # A body that never completes.
    start = time.time()
    out = s.raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n\r\n{\"model\"", 5)
    assert out.startswith(b"HTTP/1.1 408 ")
    assert 0.9 < time.time() - start < 2.5
    # An idle kept-alive connection is closed without a word.
    start = time.time()
    assert s.raw(b"", 5) == b""
    assert 0.9 < time.time() - start < 2.5
    assert mock.stats()["requests"] == 0
