"""Failover on every fault where nothing was sent, a rejected backend
credential treated as a broken backend, no silent duplicate of a request,
stalled streams ended, and a log that explains each failure. Faults come
from the mock upstream or from raw sockets in the test."""
import json
import re
import socket
import ssl
import subprocess
import threading
import time

from conftest import UPSTREAM_KEY, base_conf
from test_operations import scrape, value
from test_pool import pool_conf


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
    s = start_sluice(base_conf(mock.url))
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
    s = start_sluice(pool_conf([("a", a, "priority = 1"), ("b", b, "priority = 2")]))
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
    assert value(m, "sluice_backend_state", backend="main") == 1  # counted for the breaker
    # What was relayed is settled, once: 3 content events without a usage chunk.
    v = s.request("GET", "/admin/keys/team-a", key="sk-admin-key-for-tests-0001").json()
    assert v["output_tokens"]["used"] == 3


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
    assert len(re.findall(r"breaker backend=a closed->open reason=error_status open_ms=500\b", log)) == 1
    assert len(re.findall(r"breaker backend=a open->half_open\b", log)) == 1
    assert len(re.findall(r"breaker backend=a half_open->closed\b", log)) == 1
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
    assert re.search(r"breaker backend=a closed->open reason=rate_limited open_ms=20000", s.log_text())
    assert last_access(s, 1)["end"] == "upstream_rate_limited"
