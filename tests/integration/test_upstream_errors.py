"""Upstream failures as the client sees them: connect errors, timeouts,
passed-through errors, broken streams, client disconnects, slow readers."""
import json
import os
import re
import socket
import threading
import time

from conftest import CLIENT_KEY, base_conf, free_port


def test_connect_failure_is_502(start_sluice):
    s = start_sluice(base_conf(f"http://127.0.0.1:{free_port()}/v1"))
    r = s.chat()
    assert r.status == 502
    err = r.error()
    assert err["code"] == "upstream_failed" and err["type"] == "server_error"


def test_upstream_timeout_is_504(mock, start_sluice):
    s = start_sluice(base_conf(mock.url, extra_backend="timeout = 500ms"))
    start = time.time()
    r = s.chat(headers={"x-mock-delay-ms": "3000"})
    assert r.status == 504 and r.error()["code"] == "upstream_timeout"
    assert 0.4 < time.time() - start < 2.0


def test_request_timeout_is_504(mock, start_sluice):
    s = start_sluice(base_conf(mock.url, extra_server="request_timeout = 700ms"))
    start = time.time()
    r = s.chat(headers={"x-mock-hang": "1"})
    assert r.status == 504
    assert 0.6 < time.time() - start < 2.0
    time.sleep(0.2)
    assert mock.stats()["aborted"] == 1  # the upstream transfer was dropped too


def test_upstream_errors_pass_through_unchanged(sluice):
    """With a single backend nothing can be retried: the upstream's answer is the client's."""
    r = sluice.chat(headers={"x-mock-status": "400"})
    assert r.status == 400
    assert r.json()["error"]["message"] == "mock upstream error 400"
    r = sluice.chat(headers={"x-mock-status": "500"})
    assert r.status == 500
    r = sluice.chat(headers={"x-mock-status": "429", "x-mock-retry-after": "7"})
    assert r.status == 429 and r.headers["retry-after"] == "7"
    assert r.json()["error"]["message"] == "mock upstream error 429"


def test_broken_stream_ends_with_one_error_event(sluice):
    # read to a clean chunked end: no protocol error for the client
    status, events = sluice.stream_events({"x-mock-drop-after": "3", "x-mock-completion-tokens": "10"})
    assert status == 200
    body = "\n\n".join(events)
    assert len(events) == 4
    err = json.loads(events[-1][len("data: "):])["error"]
    assert err["code"] == "upstream_failed"
    assert "[DONE]" not in body


def test_client_disconnect_aborts_upstream(sluice, mock):
    # Streaming: read one event, then hang up.
    s = socket.create_connection(("127.0.0.1", sluice.port))
    body = json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + CLIENT_KEY.encode() +
              b"\r\nx-mock-chunk-delay-ms: 200\r\nx-mock-completion-tokens: 50\r\nContent-Length: " +
              str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while b"data: " not in got:  # the head may come in a packet of its own
        chunk = s.recv(65536)
        assert chunk, "closed before the first event"
        got += chunk
    s.close()
    # Non-streaming: the upstream never answers; the client gives up.
    s = socket.create_connection(("127.0.0.1", sluice.port))
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + CLIENT_KEY.encode() +
              b"\r\nx-mock-hang: 1\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    time.sleep(0.3)
    s.close()
    deadline = time.time() + 3
    while time.time() < deadline and mock.stats()["aborted"] < 2:
        time.sleep(0.05)
    st = mock.stats()
    assert st["aborted"] == 2 and st["inflight"] == 0
    time.sleep(0.1)
    assert sluice.log_text().count("status=499") == 2


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_slow_reader_back_pressure(sluice, mock):
    """A client that stops reading a 40 MB stream: sluice pauses the upstream
    instead of buffering it, then delivers every byte when the client reads."""
    tokens = 250_000
    s = socket.create_connection(("127.0.0.1", sluice.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    body = json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
    before = rss_kb(sluice.proc.pid)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + CLIENT_KEY.encode() +
              b"\r\nConnection: close\r\nx-mock-completion-tokens: " + str(tokens).encode() +
              b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    time.sleep(1.5)  # the mock has written everything it can; we read nothing
    grown_mb = (rss_kb(sluice.proc.pid) - before) / 1024
    assert grown_mb < 16, f"sluice buffered {grown_mb:.1f} MB for a client that does not read"
    total = 0
    tail = b""
    s.settimeout(30)
    while (chunk := s.recv(1 << 20)):
        total += len(chunk)
        tail = (tail + chunk)[-64:]
    s.close()
    assert total > 30_000_000
    assert b"data: [DONE]" in tail


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_upstream_connections_closed_by_the_upstream(start_mock, start_sluice):
    """Kept-alive upstream connections stay registered while idle. When the
    upstream closes them, sluice neither spins on them nor uses them again:
    the next request gets a fresh connection."""
    mock = start_mock()
    s = start_sluice(base_conf(mock.url))
    for _ in range(4):
        assert s.chat({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).status == 200
    port = mock.port
    mock.stop()  # closes the idle connections sluice keeps
    time.sleep(0.3)
    before = cpu_seconds(s.proc.pid)
    time.sleep(1.0)
    assert cpu_seconds(s.proc.pid) - before < 0.2  # no busy loop on the closed sockets
    mock = start_mock(port=port)
    for _ in range(3):
        assert s.chat({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).status == 200
    assert mock.stats()["requests"] == 3


def test_proxy_environment_variables_apply_to_upstream_calls(mock, start_sluice):
    """As for any libcurl program: with http_proxy set, upstream calls go through that
    proxy (absolute-form request line); with the backend's host in no_proxy they go direct."""
    seen = []
    srv = socket.create_server(("127.0.0.1", 0))
    proxy = f"http://127.0.0.1:{srv.getsockname()[1]}"

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
                while len(body) < length:
                    body += c.recv(65536)
                seen.append(head.split(b"\r\n")[0].decode())
                payload = json.dumps({"id": "via-proxy", "object": "chat.completion", "choices": [],
                                      "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).encode()
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))

    threading.Thread(target=serve, daemon=True).start()
    try:
        s = start_sluice(base_conf(mock.url), extra_env={"http_proxy": proxy})
        r = s.chat()
        assert r.status == 200 and r.json()["id"] == "via-proxy"
        assert seen == [f"POST {mock.url}/chat/completions HTTP/1.1"]
        d = start_sluice(base_conf(mock.url), extra_env={"http_proxy": proxy, "no_proxy": "127.0.0.1"})
        r = d.chat()
        assert r.status == 200 and r.json()["id"] != "via-proxy"
        assert len(seen) == 1
    finally:
        srv.close()
