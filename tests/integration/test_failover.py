"""Upstream failures, in one place: failover on every fault where nothing
was sent, transparent retries on the next backend (counted once, never after
the first byte or a timeout, bounded by max_attempts), a rejected backend
credential treated as a broken backend, no silent duplicate of a request,
stalled and broken streams ended, what the client sees of each failure
(connect errors, timeouts, passed-through errors, disconnects, slow
readers), and a log that explains each. Faults come from the mock upstream
or from raw sockets in the test."""
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time

from harness import CLIENT_KEY, UPSTREAM_KEY, base_conf, free_port, rss_kb
from test_operations import scrape, value
from test_pool import counts, mocks, pool_conf


def access_lines(s, count=1):
    """The access log lines, once there are at least count: sluice writes a
    request's line just after its answer is on its way."""
    deadline = time.time() + 5
    while True:
        lines = [line for line in s.log_text().splitlines() if " access " in line]
        if len(lines) >= count or time.time() > deadline:
            return lines
        time.sleep(0.02)


def tokens(line):
    return dict(re.findall(r"(\w+)=(\S+)", line))


def last_access(s, count):
    """The tokens of the count-th access log line."""
    lines = access_lines(s, count)
    assert len(lines) == count, lines
    return tokens(lines[-1])


def in_front_of(b, name, url, extra=""):
    """A config with backend NAME at url (priority 1) in front of the mock b (priority 2)."""
    return pool_conf([("b", b, "priority = 2")]).replace(
        "[backend b]", f"[backend {name}]\nurl = {url}\napi_key = x\npriority = 1\n{extra}\n\n[backend b]")


class FullListener:
    """A listening socket whose accept queue is full: the kernel drops further
    SYNs, so a connection to it can only time out."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(0)
        self.port = self.srv.getsockname()[1]
        self.fillers = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(c)
        time.sleep(0.1)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self):
        for c in self.fillers:
            c.close()
        self.srv.close()


class SelfSignedTLS:
    """An HTTPS server with a self-signed certificate, which the system trust
    store does not know. Counts handshakes completed and requests read."""

    def __init__(self, tmp):
        cert, key = tmp / "self.pem", tmp / "self.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.handshakes = 0
        self.requests = 0
        threading.Thread(target=self.serve, daemon=True).start()

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}/v1"

    def serve(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(c, server_side=True) as t:
                    self.handshakes += 1
                    if t.recv(65536):
                        self.requests += 1
            except (ssl.SSLError, OSError):
                c.close()

    def close(self):
        self.srv.close()


# ---- nothing sent: always fail over -------------------------------------------

def test_connect_timeout_fails_over_to_the_next_backend(start_mock, start_sluice):
    dead = FullListener()
    b = start_mock()
    try:
        s = start_sluice(in_front_of(b, "dead", dead.url, "connect_timeout = 300ms"))
        started = time.time()
        r = s.chat()
        assert r.status == 200 and r.json()["object"] == "chat.completion"
        assert time.time() - started < 3
        assert b.stats()["requests"] == 1
        line = last_access(s, 1)
        assert line["attempts"] == "2" and line["backend"] == "b" and line["end"] == "responded"
        m = scrape(s)
        assert value(m, "sluice_upstream_attempts_total", backend="dead", outcome="connect_timeout") == 1
        assert value(m, "sluice_retries_total", backend="dead") == 1
    finally:
        dead.close()


def test_connect_timeout_alone_is_504_and_the_log_says_why(start_sluice):
    dead = FullListener()
    try:
        s = start_sluice(base_conf(dead.url, extra_backend="connect_timeout = 300ms"))
        r = s.chat()
        assert r.status == 504 and r.error()["code"] == "upstream_timeout"
        line = last_access(s, 1)
        assert line["status"] == "504" and line["backend"] == "main"
        assert line["end"] == "upstream_connect_timeout" and line["outcome"] == "connect_timeout"
    finally:
        dead.close()


def test_tls_verification_failure_fails_over(tmp, start_mock, start_sluice):
    tls = SelfSignedTLS(tmp)
    b = start_mock()
    try:
        s = start_sluice(in_front_of(b, "selfsigned", tls.url))
        r = s.chat()
        assert r.status == 200
        assert b.stats()["requests"] == 1
        assert tls.requests == 0  # the request never left: the certificate was refused first
        m = scrape(s)
        assert value(m, "sluice_upstream_attempts_total", backend="selfsigned", outcome="tls_failed") == 1
        assert last_access(s, 1)["attempts"] == "2"
        # The reason is in the log, curl's words included.
        assert re.search(r"attempt backend=selfsigned outcome=tls_failed .*certificate", s.log_text())
    finally:
        tls.close()


def test_tls_failure_alone_is_502(tmp, start_sluice):
    tls = SelfSignedTLS(tmp)
    try:
        s = start_sluice(base_conf(tls.url))
        r = s.chat()
        assert r.status == 502 and r.error()["code"] == "upstream_failed"
        assert last_access(s, 1)["end"] == "upstream_tls_failed"
        assert tls.requests == 0
    finally:
        tls.close()


# ---- a rejected credential is a broken backend ------------------------------------

def test_upstream_401_fails_over_and_opens_the_breaker(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    conf = pool_conf([("a", a, "priority = 1\nbreaker_failures = 1\nbreaker_trip = 60s"),
                      ("b", b, "priority = 2")])
    conf = conf.replace(f"url = {a.url}\napi_key = {UPSTREAM_KEY}", f"url = {a.url}\napi_key = revoked-key")
    s = start_sluice(conf)
    r = s.chat()
    assert r.status == 200 and r.json()["object"] == "chat.completion"
    assert [a.stats()["requests"], b.stats()["requests"]] == [1, 1]
    assert s.chat().status == 200
    assert [a.stats()["requests"], b.stats()["requests"]] == [1, 2]  # a's breaker is open
    m = scrape(s)
    assert value(m, "sluice_upstream_attempts_total", backend="a", outcome="auth_rejected") == 1
    assert value(m, "sluice_backend_state", backend="a") == 1
    assert re.search(r"breaker backend=a closed->open reason=auth_rejected open_ms=60000", s.log_text())


def test_upstream_auth_failure_with_nothing_else_is_sluices_own_502(start_mock, start_sluice):
    a = start_mock()
    s = start_sluice(base_conf(a.url).replace(f"api_key = {UPSTREAM_KEY}", "api_key = revoked-key"))
    r = s.chat()
    assert r.status == 502
    err = r.error()
    assert err["code"] == "upstream_auth_error" and err["type"] == "server_error"
    assert b"mock" not in r.body  # nothing of the upstream's answer reaches the client
    assert "www-authenticate" not in r.headers
    line = last_access(s, 1)
    assert line["end"] == "upstream_auth_error" and line["outcome"] == "auth_rejected"
    # 403 is the same: the backend's account may not do this.
    r = s.chat(headers={"x-mock-status": "403"})
    assert r.status == 502 and r.error()["code"] == "upstream_auth_error"


# ---- never a silent duplicate -------------------------------------------------------

def prime(s, mock):
    """One request, so sluice holds a kept-alive connection to the mock."""
    assert s.chat().status == 200
    mock.reset()


def test_request_read_then_closed_on_a_reused_connection_is_not_resent(start_mock, start_sluice):
    mock = start_mock()
    s = start_sluice(base_conf(mock.url, extra_backend="resend_unanswered = no"))
    prime(s, mock)
    r = s.chat(headers={"x-mock-close": "1"})
    assert r.status == 502 and r.error()["code"] == "upstream_failed"
    assert mock.stats()["requests"] == 1  # the upstream saw it exactly once
    line = last_access(s, 2)
    assert line["attempts"] == "1" and line["end"] == "upstream_no_answer"
    assert line["outcome"] == "no_answer"
    m = scrape(s)
    assert value(m, "sluice_upstream_attempts_total", backend="main", outcome="no_answer") == 1
    assert value(m, "sluice_retries_total", backend="main") == 0


def test_not_resent_to_another_backend_either(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    s = start_sluice(pool_conf([("a", a, "priority = 1\nresend_unanswered = no"), ("b", b, "priority = 2")]))
    prime(s, a)
    assert s.chat(headers={"x-mock-close": "1"}).status == 502
    assert [a.stats()["requests"], b.stats()["requests"]] == [1, 0]


def test_resend_unanswered_opt_in_counts_every_transmission(start_mock, start_sluice):
    mock = start_mock()
    s = start_sluice(base_conf(mock.url, extra_backend="resend_unanswered = yes"))
    prime(s, mock)
    mock.configure(close=1, fail_count=1)  # the next request is read and dropped, once
    r = s.chat()
    assert r.status == 200
    assert mock.stats()["requests"] == 2
    line = last_access(s, 2)
    assert line["attempts"] == "2" and line["end"] == "responded"
    m = scrape(s)
    assert value(m, "sluice_upstream_attempts_total", backend="main", outcome="no_answer") == 1
    assert value(m, "sluice_retries_total", backend="main") == 1


def test_resend_unanswered_goes_to_the_next_backend_on_a_fresh_connection(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    s = start_sluice(pool_conf([("a", a, "priority = 1\nresend_unanswered = yes"),
                                ("b", b, "priority = 2")]))
    r = s.chat(headers={"x-mock-close": "1"})  # a fresh connection to a: curl does not resend
    assert r.status == 502  # b got it too, and b also read it and closed
    assert [a.stats()["requests"], b.stats()["requests"]] == [1, 1]
    assert last_access(s, 1)["attempts"] == "2"


def test_idle_upstream_connections_are_retired_before_keepalive_timeout(start_mock, start_sluice):
    mock = start_mock()
    s = start_sluice(base_conf(mock.url, extra_backend="keepalive_timeout = 1s"))
    calls = [0]

    def upstream_connections():  # each stats call is a connection of its own: not counted
        calls[0] += 1
        return mock.stats()["connections"] - calls[0]

    before = upstream_connections()
    c = s.conn()
    for _ in range(3):
        assert s.chat(conn=c).status == 200
    assert upstream_connections() - before == 1  # kept alive while busy
    time.sleep(0.5)
    assert s.chat(conn=c).status == 200
    assert upstream_connections() - before == 1  # idle 0.5 s: reused
    time.sleep(1.2)
    assert s.chat(conn=c).status == 200
    assert upstream_connections() - before == 2  # idle past 1 s: a new one
    c.close()


# ---- a stalled stream ends ----------------------------------------------------------

def test_stalled_stream_ends_with_one_error_event(start_mock, start_sluice):
    mock = start_mock()
    conf = base_conf(mock.url, extra_backend="stream_idle_timeout = 500ms\nbreaker_failures = 1",
                     extra_server="admin_key = sk-admin-key-for-tests-0001",
                     key_extra="output_tpm = 1000")
    s = start_sluice(conf)
    started = time.time()
    status, events = s.stream_events({"x-mock-stall-after": "3", "x-mock-completion-tokens": "10"})
    assert status == 200  # and a clean chunked end
    assert 0.4 < time.time() - started < 3
    assert len(events) == 4
    err = json.loads(events[-1][len("data: "):])["error"]
    assert err["code"] == "upstream_timeout" and "stream_idle_timeout" in err["message"]
    time.sleep(0.2)
    assert mock.stats()["aborted"] == 1 and mock.stats()["inflight"] == 0  # connection closed
    line = last_access(s, 1)
    assert line["end"] == "stream_stalled" and line["outcome"] == "stream_stalled"
    m = scrape(s)
    assert value(m, "sluice_upstream_attempts_total", backend="main", outcome="stream_stalled") == 1
    assert value(m, "sluice_backend_model_state", backend="main", model="*") == 1  # counted for the breaker
    # What was relayed is settled, once: the text of 3 content events without a usage
    # chunk, "tok0 tok1 tok2" (14 characters), counted as a prompt's text is: 4.
    v = s.request("GET", "/admin/keys/team-a", key="sk-admin-key-for-tests-0001").json()
    assert v["output_tokens"]["used"] == 4
    assert line["completion_tokens"] == "4"  # the access log says the same


def test_slow_but_steady_stream_is_not_cut(start_mock, start_sluice):
    mock = start_mock()
    s = start_sluice(base_conf(mock.url, extra_backend="stream_idle_timeout = 500ms"))
    # 6 x 300 ms: longer than the idle timeout in all
    _, events = s.stream_events({"x-mock-chunk-delay-ms": "300", "x-mock-completion-tokens": "6"})
    assert events[-1] == "data: [DONE]" and not any('"error"' in e for e in events)


# ---- the breaker's transitions are logged once each ---------------------------------

def test_breaker_transitions_are_logged(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    s = start_sluice(pool_conf([("a", a, "breaker_failures = 2\nbreaker_window = 5s\nbreaker_trip = 500ms"),
                                ("b", b, "")], server="max_attempts = 1"))
    a.configure(status=500)
    c = s.conn()
    for _ in range(6):
        s.chat(conn=c)
    a.reset()
    time.sleep(0.6)
    for _ in range(4):
        assert s.chat(conn=c).status == 200
    c.close()
    log = s.log_text()
    assert len(re.findall(r"breaker backend=a model=\* closed->open reason=error_status open_ms=500\b", log)) == 1
    assert len(re.findall(r"breaker backend=a model=\* open->half_open\b", log)) == 1
    assert len(re.findall(r"breaker backend=a model=\* half_open->closed\b", log)) == 1
    assert "breaker backend=b" not in log
    # With max_attempts = 1 nothing was retried, and nothing is counted as a retry.
    m = scrape(s)
    assert value(m, "sluice_retries_total", backend="a") == 0
    assert value(m, "sluice_upstream_attempts_total", backend="a", outcome="error_status") == 2


def test_upstream_429s_are_labelled_rate_limited(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    s = start_sluice(pool_conf([("a", a, ""), ("b", b, "")]))
    a.configure(status=429, retry_after="20")
    b.configure(status=429, retry_after="9")
    assert s.chat().status == 429
    m = scrape(s)
    assert value(m, "sluice_upstream_attempts_total", backend="a", outcome="rate_limited") == 1
    assert value(m, "sluice_upstream_attempts_total", backend="b", outcome="rate_limited") == 1
    assert value(m, "sluice_retries_total", backend="a") + value(m, "sluice_retries_total", backend="b") == 1
    assert re.search(r"breaker backend=a model=\* closed->open reason=rate_limited open_ms=20000", s.log_text())
    assert last_access(s, 1)["end"] == "upstream_rate_limited"


# ---- retries on the next backend (moved from test_pool.py) ----


def test_retry_is_transparent_and_counted_once(start_mock, start_sluice):
    a, b = mocks(start_mock, 2)
    s = start_sluice(pool_conf([("a", a, ""), ("b", b, "")], key="rpm = 100"))
    a.configure(status=502, fail_count=100)
    body = '{"model":"gpt-4o",\n "messages":[{"role":"user","content":"same \\u00e9 bytes"}]}'
    for i in range(4):
        r = s.request("POST", "/v1/chat/completions", body.encode())
        assert r.status == 200 and r.json()["object"] == "chat.completion"
        assert r.headers["x-ratelimit-remaining-requests"] == str(100 - i - 1)  # once per request
    assert b.last()["body"] == body
    assert "attempts=2" in s.log_text()


def test_connect_error_is_retried(start_mock, start_sluice):
    from harness import free_port
    b = start_mock()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    conf = pool_conf([("b", b, "priority = 2")]).replace(
        "[backend b]", f"[backend dead]\nurl = {dead}\npriority = 1\n\n[backend b]")
    s = start_sluice(conf)
    assert [s.chat().status for _ in range(3)] == [200, 200, 200]
    assert b.stats()["requests"] == 3


def test_no_retry_after_first_byte(start_mock, start_sluice):
    a, b = mocks(start_mock, 2)
    s = start_sluice(pool_conf([("a", a, "priority = 1"), ("b", b, "priority = 2")]))
    _, events = s.stream_events({"x-mock-drop-after": "2"})
    assert len(events) == 3 and '"error"' in events[-1]
    assert b.stats()["requests"] == 0


def test_timeout_is_not_replayed(start_mock, start_sluice):
    a, b = mocks(start_mock, 2)
    s = start_sluice(pool_conf([("a", a, "priority = 1\ntimeout = 300ms"), ("b", b, "priority = 2")]))
    r = s.chat(headers={"x-mock-delay-ms": "2000"})
    assert r.status == 504
    assert b.stats()["requests"] == 0


def test_client_errors_do_not_count_and_are_not_retried(start_mock, start_sluice):
    a, b = mocks(start_mock, 2)
    s = start_sluice(pool_conf([("a", a, "priority = 1\nbreaker_failures = 1"),
                                ("b", b, "priority = 2")]))
    for status in ("400", "404", "413"):
        r = s.chat(headers={"x-mock-status": status})
        assert r.status == int(status)
    assert s.chat().status == 200
    assert counts([a, b]) == [4, 0]  # a was never opened, b never asked


def test_all_upstreams_429_gives_one_429_with_smallest_retry_after(start_mock, start_sluice):
    a, b, c = mocks(start_mock, 3)
    s = start_sluice(pool_conf([("a", a, ""), ("b", b, ""), ("c", c, "")]))
    a.configure(status=429, retry_after="20")
    b.configure(status=429, retry_after_ms="4500")
    c.configure(status=429, retry_after="9")
    r = s.chat()
    assert r.status == 429
    err = r.error()
    assert err["code"] == "upstream_rate_limited" and "upstream" in err["message"]
    assert r.headers["retry-after"] == "5" and r.headers["retry-after-ms"] == "4500"
    assert counts([a, b, c]) == [1, 1, 1]


def test_max_attempts_bounds_retries(start_mock, start_sluice):
    ms = mocks(start_mock, 4)
    s = start_sluice(pool_conf([(f"m{i}", m, "") for i, m in enumerate(ms)], server="max_attempts = 2"))
    for m in ms:
        m.configure(status=500)
    assert s.chat().status == 500
    assert sum(counts(ms)) == 2


# ---- upstream failures as the client sees them (was test_upstream_errors.py) ----

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
