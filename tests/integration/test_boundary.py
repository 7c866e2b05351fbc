"""The boundary, in one place: nothing a client sends reaches past /v1 of a
backend, nothing an upstream says leaks back, no anonymous client holds
memory, and a client that gets it wrong (each auth failure, each class of
bad input and bad HTTP framing) gets a clear error while nothing of it
reaches the upstream. The paths are checked against a real nginx upstream
that logs the URI it resolved."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from harness import CLIENT_KEY, MOCK_HEADERS, OTHER_KEY, UPSTREAM_KEY, base_conf, free_port, rss_kb, wait_port

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = '{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}'


class Nginx:
    """nginx on a free port answering every request with a chat completion and
    logging the URI it resolved ($uri: decoded, dot segments removed)."""

    def __init__(self, tmp):
        self.port = free_port()
        self.dir = tmp / f"nginx-{self.port}"
        for d in ("", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / d).mkdir(exist_ok=True)
        self.log = self.dir / "uri.log"
        conf = self.dir / "nginx.conf"
        conf.write_text(f"""
worker_processes 1;
daemon off;
pid "{self.dir}/nginx.pid";
error_log "{self.dir}/error.log" warn;
events {{ worker_connections 64; }}
http {{
  log_format uri '$uri';
  access_log "{self.log}" uri;
  client_body_temp_path "{self.dir}/body";
  proxy_temp_path "{self.dir}/proxy";
  fastcgi_temp_path "{self.dir}/fastcgi";
  uwsgi_temp_path "{self.dir}/uwsgi";
  scgi_temp_path "{self.dir}/scgi";
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      default_type application/json;
      return 200 '{ANSWER}';
    }}
  }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-p", str(self.dir), "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)

    def uris(self):
        time.sleep(0.1)  # nginx writes the line after the response
        return self.log.read_text().split() if self.log.exists() else []

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def nginx_conf(nginx, backend_extra="", base="/base/v1"):
    return f"""
[server]
listen = 127.0.0.1:{{port}}

[backend behind-nginx]
url = http://127.0.0.1:{nginx.port}{base}
api_key = {UPSTREAM_KEY}
{backend_extra}

[key k]
key = {CLIENT_KEY}
"""


def raw_post(s, target, body=CHAT):
    data = json.dumps(body).encode()
    head = (f"POST {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n")
    out = s.raw(head.encode() + data)
    return int(out.split(b" ", 2)[1]), out


CLIMBING_PATHS = [
    "/v1/..%2fadmin/x", "/v1/%2e%2e%2fadmin/x", "/v1/%2E%2E%2Fadmin/x", "/v1/chat/..%2F..%2Fadmin",
    "/v1/%252e%252e%252fadmin/x", "/v1/%5c..%5cadmin", "/v1/..%5Cadmin", "/v1/chat;/../../admin",
    "/v1/chat%3b/..%2f..%2fadmin", "/v1/.%2e/admin", "/v1//admin", "/v1/./chat/completions",
    "/v1/chat/completions/", "/v1/chat/%00completions", "/v1/chat%2fcompletions%3f", "/v1/%",
    "/v1/%zz", "/v1/chat/completions%23x", "/v1/a%20b",
]


def test_paths_that_climb_out_are_refused_before_any_upstream_contact(tmp, start_sluice):
    nginx = Nginx(tmp)
    try:
        s = start_sluice(nginx_conf(nginx))
        for target in CLIMBING_PATHS:
            status, out = raw_post(s, target)
            assert status == 400, (target, out[:300])
            if b"{" in out:
                assert json.loads(out[out.index(b"{"):])["error"]["type"] == "invalid_request_error"
        assert nginx.uris() == []  # not one reached the upstream
        assert raw_post(s, "/v1/chat/completions")[0] == 200
        assert raw_post(s, "/v1/chat%2Fcompletions")[0] == 200  # decoded, it is plain
        assert nginx.uris() == ["/base/v1/chat/completions"] * 2
    finally:
        nginx.stop()


def test_model_names_never_climb_out_of_an_azure_url(tmp, start_sluice):
    nginx = Nginx(tmp)
    try:
        s = start_sluice(nginx_conf(nginx, "type = azure\napi_version = 2024-06-01", base="/base"))
        for model in ["..", ".", "../../admin", "a/b", "gpt-4o%2f..", "x?y", "x#y", "a b", "tab\there",
                      "ctl\u0001", "..%2f", "%2e%2e"]:
            r = s.chat({"model": model, "messages": [{"role": "user", "content": "hi"}]})
            assert r.status == 400, model
            assert r.error()["param"] == "model"
        assert nginx.uris() == []
        assert s.chat(dict(CHAT, model="gpt-4o-2024-08-06")).status == 200
        assert s.chat(dict(CHAT, model="ft:gpt-4o:acme:x:1")).status == 200
        assert nginx.uris() == ["/base/openai/deployments/gpt-4o-2024-08-06/chat/completions",
                                "/base/openai/deployments/ft:gpt-4o:acme:x:1/chat/completions"]
    finally:
        nginx.stop()


def test_model_names_with_slashes_are_fine_where_they_stay_in_the_body(mock, start_sluice):
    from harness import base_conf
    s = start_sluice(base_conf(mock.url))
    assert s.chat(dict(CHAT, model="meta-llama/Llama-3-8B")).status == 200
    assert mock.last()["body"].count("meta-llama/Llama-3-8B") == 1


# ---- memory before authentication ----------------------------------------------------

def upload(port, body, key=None, results=None):
    """POST a body over a raw socket, as fast as the gateway takes it; records the status."""
    import socket as _socket
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n" + (f"Authorization: Bearer {key}\r\n" if key else "") +
            "\r\n").encode()
    status = None
    try:
        with _socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head)
            try:
                sock.sendall(body)
            except OSError:
                pass  # answered and closed before the body was in
            out = b""
            while b"\r\n" not in out:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                out += chunk
            status = int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.1 ") else None
    except OSError:
        pass
    if results is not None:
        results.append(status)


def flood(s, n, body, key=None):
    """n uploads at once; the peak RSS growth of sluice meanwhile, the statuses,
    and whether a normal client was served while it went on."""
    import threading
    before = rss_kb(s.proc.pid) / 1024
    results, peak = [], [0.0]
    threads = [threading.Thread(target=upload, args=(s.port, body, key, results)) for _ in range(n)]
    for t in threads:
        t.start()
    served = []
    while any(t.is_alive() for t in threads):
        peak[0] = max(peak[0], rss_kb(s.proc.pid) / 1024 - before)
        if not served:
            served.append(s.chat(CHAT).status)
        time.sleep(0.02)
    for t in threads:
        t.join()
    return peak[0], results, served


FOUR_MB = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 4_000_000}]}).encode()


def test_unauthenticated_uploads_hold_no_memory(mock, start_sluice):
    from harness import base_conf
    s = start_sluice(base_conf(mock.url))
    grown, statuses, served = flood(s, 200, FOUR_MB)
    assert grown < 50, f"sluice grew by {grown:.0f} MB for 200 anonymous 4 MB uploads"
    assert statuses.count(401) >= 190, statuses  # answered before their bodies (a few may be reset)
    assert set(statuses) <= {401, None}
    assert served == [200]
    assert mock.stats()["requests"] == 1  # only the normal client's


def test_authenticated_uploads_stay_within_max_buffered(mock, start_sluice):
    from harness import base_conf
    s = start_sluice(base_conf(mock.url, extra_server="max_buffered = 64m\nmax_buffered_per_key = 64m"))
    grown, statuses, served = flood(s, 200, FOUR_MB, key=CLIENT_KEY)
    assert grown < 64 + 50, f"sluice grew by {grown:.0f} MB with max_buffered = 64m"
    assert statuses.count(200) >= 14 and statuses.count(503) > 0, statuses
    assert set(statuses) <= {200, 503}
    assert served == [200]  # the last eighth of max_buffered is kept for small requests


def test_503_for_a_body_past_max_buffered_says_when_to_retry(mock, start_sluice):
    from harness import base_conf
    s = start_sluice(base_conf(mock.url, extra_server="max_buffered = 1m\nmax_body_size = 4m"))
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 1_000_000}]})
    r = s.chat(json.loads(body))
    assert r.status == 503 and r.error()["code"] == "overloaded"
    assert r.headers["retry-after"] == "1"
    assert s.chat(CHAT).status == 200  # a small body still fits
    assert mock.stats()["requests"] == 1


def test_one_keys_bodies_leave_max_buffered_to_the_others(mock, start_sluice):
    """Key A's twenty 100 KB bodies being read (slow clients, or a queue)
    hold at most max_buffered_per_key (max_buffered / 4 = 512 KiB here): the
    sixth gets 503 naming it, and key B's 600 KB call still fits in
    max_buffered. Before the per-key share A held all 2 MB and B got 503
    (issue #28, finding 8). A's share comes back when its requests end."""
    s = start_sluice(base_conf(mock.url, extra_server="max_buffered = 2m"))
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100000\r\nAuthorization: Bearer {CLIENT_KEY}\r\n\r\n").encode()
    held, refused = [], []
    try:
        for _ in range(20):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            c.sendall(head + b'{"model":"gpt-4o","messages":[')  # the rest never comes
            c.settimeout(0.3)
            try:
                refused.append(c.recv(65536))
                c.close()
            except socket.timeout:
                held.append(c)
        # each holds its buffer (100,001 bytes or a little more): 4 or 5 fit in 512 KiB
        assert 4 <= len(held) <= 5, (len(held), refused[:1])
        assert all(r.startswith(b"HTTP/1.1 503 ") and b"max_buffered_per_key" in r and
                   b"Retry-After: 1" in r for r in refused), refused[:1]
        big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 600_000}]}
        r = s.chat(big, key=OTHER_KEY)
        assert r.status == 200, r.body[:200]
    finally:
        for c in held:
            c.close()
    deadline = time.time() + 5
    while time.time() < deadline and s.chat({**big, "model": "gpt-4o"}).status != 200:
        time.sleep(0.05)
    assert s.chat({**big, "model": "gpt-4o"}).status == 200  # A's share is free again
    assert mock.stats()["requests"] >= 3


def test_max_connections_leaves_the_rest_in_the_backlog(mock, start_sluice):
    import socket as _socket
    from harness import base_conf
    s = start_sluice(base_conf(mock.url, extra_server="max_connections = 20"))
    held = [_socket.create_connection(("127.0.0.1", s.port)) for _ in range(20)]
    time.sleep(0.2)
    extra = _socket.create_connection(("127.0.0.1", s.port))  # the kernel completes the handshake
    extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    extra.settimeout(0.5)
    try:
        early = extra.recv(100)
    except _socket.timeout:
        early = None
    assert early is None  # not accepted while 20 are held
    held.pop().close()
    extra.settimeout(5)
    assert extra.recv(100).startswith(b"HTTP/1.1 200 ")  # accepted once one left
    extra.close()
    for c in held:
        c.close()


def test_the_listen_backlog_is_what_sluice_asks_for(mock, start_sluice):
    """A burst of new clients waits in the kernel's accept queue, not in SYN
    retries: the listening socket keeps the backlog sluice asked for (4096,
    or the kernel's somaxconn if lower) — libevent must not listen() again
    with its own default of 128 (issue #28, finding 5)."""
    import shutil
    from harness import base_conf
    assert shutil.which("ss"), "ss is missing: scripts/bootstrap.sh --tests installs iproute2"
    s = start_sluice(base_conf(mock.url, extra_server="max_connections = 50"))
    with open("/proc/sys/net/core/somaxconn") as f:
        want = min(4096, int(f.read()))
    out = subprocess.run(["ss", "-ltnH", f"sport = :{s.port}"], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out and out[0] == "LISTEN", out
    assert int(out[2]) == want, out  # Send-Q of a listening socket: its backlog


# ---- one reading of the body decides (issue #28, finding 1) ----------------------------

def test_a_body_that_parsers_read_differently_is_refused(mock, start_sluice):
    """A key allowed only gpt-4o-mini cannot reach gpt-4o by naming the model
    twice (a parser that keeps the last reads gpt-4o), by escaping a member's
    name, or by a NUL that ends the string for sluice but not for the
    upstream; a count given twice cannot reserve the smaller one. Each is 400,
    and nothing reaches the upstream."""
    from harness import OTHER_KEY, base_conf
    s = start_sluice(base_conf(mock.url))
    msgs = '[{"role":"user","content":"hi"}]'
    bodies = {
        "model twice": '{"model":"gpt-4o-mini","messages":%s,"model":"gpt-4o"}' % msgs,
        "escaped name": '{"model":"gpt-4o-mini","mod\\u0065l":"gpt-4o","messages":%s}' % msgs,
        "NUL in model": '{"model":"gpt-4o-mini\\u0000x","messages":%s}' % msgs,
        "count twice": '{"model":"gpt-4o-mini","max_tokens":1,"messages":%s,"max_tokens":100000}'
                       % msgs,
        "nested twice": '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a",'
                        '"content":"b"}]}',
        "control in model": '{"model":"gpt-4o-mini\\r\\nx","messages":%s}' % msgs,
    }
    for what, body in bodies.items():
        r = s.request("POST", "/v1/chat/completions", body, key=OTHER_KEY)
        assert r.status == 400, (what, r.status, r.body)
        assert r.error()["type"] == "invalid_request_error", what
    r = s.request("POST", "/v1/embeddings", '{"model":"gpt-4o-mini","input":"x","input":"y"}',
                  key=OTHER_KEY)
    assert r.status == 400 and "'input' twice" in r.error()["message"]
    assert mock.stats()["requests"] == 0
    # the same names in different objects, and the body as sent: fine
    ok = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"},{"role":"user",' \
         '"content":"b"}]}'
    assert s.request("POST", "/v1/chat/completions", ok, key=OTHER_KEY).status == 200
    assert mock.last()["body"] == ok


# ---- exactly one credential ------------------------------------------------------------

def test_more_than_one_credential_is_400(mock, start_sluice):
    from harness import base_conf
    s = start_sluice(base_conf(mock.url))
    for extra in ({"api-key": CLIENT_KEY}, {"x-api-key": CLIENT_KEY}, {"api-key": "sk-other"}):
        r = s.chat(CHAT, headers=extra)  # Authorization: Bearer as well
        assert r.status == 400 and r.error()["code"] == "invalid_request_error", extra
        assert "exactly one" in r.error()["message"]
    data = json.dumps(CHAT).encode()
    status, _ = raw_post(s, "/v1/chat/completions")
    assert status == 200
    out = s.raw(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\n"
                f"Authorization: Bearer {CLIENT_KEY}\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    assert out.startswith(b"HTTP/1.1 400 ")
    assert mock.stats()["requests"] == 1


# ---- what goes upstream, what comes back -------------------------------------------------

def test_client_headers_go_upstream_by_an_allow_list(mock, start_sluice):
    from harness import base_conf
    conf = base_conf(mock.url, extra_backend="organization = org-operator\nproject = proj_operator")
    s = start_sluice(conf.replace(MOCK_HEADERS, MOCK_HEADERS + ", X-Team"))
    sent = {
        # the allow-list
        "OpenAI-Beta": "assistants=v2", "User-Agent": "OpenAI/Python 1.54.0", "X-Stainless-Lang": "python",
        "Idempotency-Key": "idem-1", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "vendor=x", "X-Request-Id": "req-1",  # valid: kept (sluice sends it)
        # the backend's forward_headers
        "X-Team": "platform",
        # never
        "Cookie": "session=abc", "OpenAI-Organization": "org-client", "OpenAI-Project": "proj_client",
        "Forwarded": "for=10.1.2.3", "X-Forwarded-For": "10.1.2.3", "X-Forwarded-Host": "evil",
        "X-Real-IP": "10.1.2.3",
        # not listed anywhere
        "X-Custom": "dropped", "X-Internal-Route": "dropped",
    }
    assert s.chat(CHAT, headers=sent).status == 200
    h = mock.last()["headers"]
    for name in ("openai-beta", "user-agent", "x-stainless-lang", "idempotency-key", "traceparent",
                 "tracestate", "x-request-id", "x-team"):
        assert h.get(name) == sent[next(k for k in sent if k.lower() == name)], name
    for name in ("cookie", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip", "x-custom",
                 "x-internal-route"):
        assert name not in h, name
    assert h["openai-organization"] == "org-operator" and h["openai-project"] == "proj_operator"


def test_request_ids_are_the_clients_when_plain_else_sluices(mock, start_sluice):
    # X-Request-Id: kept when it is 1-128 of [A-Za-z0-9._:-], and then it goes
    # upstream too; else sluice makes one. The id comes back to the client
    # (sluice's own errors included) and goes into the access log. The
    # upstream's own id comes back as x-upstream-request-id.
    from harness import base_conf
    s = start_sluice(base_conf(mock.url, extra_server="access_log_format = json"))
    r = s.chat(CHAT, headers={"X-Request-Id": "req-1.a_b:c"})
    assert r.status == 200 and r.headers["x-request-id"] == "req-1.a_b:c"
    assert mock.last()["headers"]["x-request-id"] == "req-1.a_b:c"
    assert r.headers["x-upstream-request-id"] == "req-mock"
    made = []
    for bad in ("abc<script>", "x" * 129, "two words", "a/b"):
        r = s.chat(CHAT, headers={"X-Request-Id": bad})
        rid = r.headers["x-request-id"]
        assert r.status == 200 and re.fullmatch(r"[0-9a-f]{32}", rid), (bad, rid)
        assert "x-request-id" not in mock.last()["headers"]  # neither the bad one nor sluice's
        made.append(rid)
    r = s.chat(CHAT)  # none sent
    made.append(r.headers["x-request-id"])
    assert len(set(made)) == len(made)
    r = s.chat(CHAT, key="sk-wrong", headers={"X-Request-Id": "req-401"})
    assert r.status == 401 and r.headers["x-request-id"] == "req-401"
    assert re.fullmatch(r"[0-9a-f]{32}", s.request("GET", "/healthz").headers["x-request-id"])
    deadline = time.time() + 5
    ids = []
    while len(ids) < 7 and time.time() < deadline:
        ids = [json.loads(line)["request_id"] for line in s.log_text().splitlines()
               if line.startswith("{")]
        time.sleep(0.05)
    assert ids == ["req-1.a_b:c"] + made + ["req-401"]  # the refusal has its line too
    assert "<script>" not in s.log_text()


def test_forward_headers_cannot_open_the_never_list(tmp):
    from harness import SLUICE
    for name in ("cookie", "openai-organization", "x-forwarded-for", "authorization", "Forwarded"):
        conf = tmp / "bad.conf"
        conf.write_text(f"[backend a]\nurl = http://127.0.0.1:1/v1\nforward_headers = x-ok, {name}\n"
                        "[key k]\nkey = sk-aaaaaaaaaaaaaaaaaaaa\n")
        r = subprocess.run([str(SLUICE), "-t", "-c", str(conf)], capture_output=True, text=True)
        assert r.returncode == 1 and "never forwarded" in r.stdout + r.stderr, name


def test_the_backend_credential_never_comes_back(mock, start_sluice):
    from harness import base_conf
    s = start_sluice(base_conf(mock.url))
    r = s.chat(CHAT, headers={"x-mock-status": "500", "x-mock-echo": "1"})
    assert r.status == 500  # the upstream's own answer, passed through...
    assert UPSTREAM_KEY.encode() not in r.body  # ...without the key it echoed
    assert "*" * len(UPSTREAM_KEY) in r.error()["message"]
    assert UPSTREAM_KEY not in r.headers["x-echo-credential"]
    status, events = s.stream_events({"x-mock-echo": "1", "x-mock-completion-tokens": "3"},
                                     dict(CHAT, stream=True))
    assert status == 200 and events[-1] == "data: [DONE]"
    assert not any(UPSTREAM_KEY in e for e in events)
    assert '"echo":"Bearer ' + "*" * len(UPSTREAM_KEY) in events[0]
    assert "credential came back" in s.log_text()


def test_upstream_cookies_stay_with_the_gateway(mock, start_sluice):
    from harness import base_conf
    s = start_sluice(base_conf(mock.url))
    direct = http.client.HTTPConnection("127.0.0.1", mock.port, timeout=10)
    direct.request("POST", "/v1/chat/completions", body=json.dumps(CHAT),
                   headers={"Authorization": f"Bearer {UPSTREAM_KEY}"})
    assert direct.getresponse().getheader("set-cookie")  # the upstream does set one
    direct.close()
    r = s.chat(CHAT)
    assert r.status == 200 and "set-cookie" not in r.headers
    assert r.headers["x-upstream-request-id"] == "req-mock"  # other headers pass (this one renamed)


def test_raw_invalid_utf8_is_400_and_neither_counted_nor_forwarded(mock, start_sluice):
    from harness import base_conf
    s = start_sluice(base_conf(mock.url, key_extra="rpm = 10"))
    for bad in (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"caf\xe9"):
        body = b'{"model":"gpt-4o","messages":[{"role":"user","content":"' + bad + b'"}]}'
        r = s.request("POST", "/v1/chat/completions", body)
        assert r.status == 400, bad
        assert r.error()["type"] == "invalid_request_error" and "UTF-8" in r.error()["message"]
    body = '{"model":"gpt-4o","messages":[{"role":"user","content":"caf\u00e9 \u2603"}]}'.encode()
    r = s.request("POST", "/v1/chat/completions", body)
    assert r.status == 200
    assert r.headers["x-ratelimit-remaining-requests"] == "9"  # the refused ones took nothing
    assert mock.stats()["requests"] == 1


# ---- operator endpoints ---------------------------------------------------------------

ADMIN_KEY = "sk-admin-key-for-tests-0001"
METRICS_KEY = "sk-metrics-scraper-key-01"


def get(port, path, key=None, method="GET", body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def test_admin_listen_takes_the_operator_endpoints_off_the_api_listener(mock, start_sluice):
    from harness import base_conf
    admin_port = free_port()
    s = start_sluice(base_conf(mock.url, extra_server=f"admin_listen = 127.0.0.1:{admin_port}\n"
                                                      f"admin_key = {ADMIN_KEY}\nmetrics_key = {METRICS_KEY}"))
    wait_port(admin_port, s.proc)
    api = s.port
    for path in ("/metrics", "/readyz", "/admin/keys/team-a", "/admin/quota/team-a"):
        assert get(api, path, ADMIN_KEY)[0] == 404, path
    assert get(api, "/healthz")[0] == 200
    assert s.chat(CHAT).status == 200
    # The operator listener: its endpoints, and nothing of the API.
    assert get(admin_port, "/healthz")[0] == 200
    assert get(admin_port, "/readyz")[0] == 200
    assert get(admin_port, "/admin/keys/team-a", ADMIN_KEY)[0] == 200
    assert get(admin_port, "/metrics")[0] == 401
    assert get(admin_port, "/metrics", "sk-wrong-metrics-key-000")[0] == 401
    status, text = get(admin_port, "/metrics", METRICS_KEY)
    assert status == 200 and b"sluice_requests_total" in text
    assert get(admin_port, "/v1/chat/completions", CLIENT_KEY, "POST", CHAT)[0] == 404
    assert get(admin_port, "/v1/models", CLIENT_KEY)[0] == 404
    assert mock.stats()["requests"] == 1


def test_metrics_key_without_admin_listen(mock, start_sluice):
    from harness import base_conf
    s = start_sluice(base_conf(mock.url, extra_server=f"metrics_key = {METRICS_KEY}"))
    assert get(s.port, "/metrics")[0] == 401
    assert get(s.port, "/metrics", CLIENT_KEY)[0] == 401  # a client key is not the metrics key
    assert get(s.port, "/metrics", METRICS_KEY)[0] == 200
    assert get(s.port, "/readyz")[0] == 200


# ---- secrets at rest -------------------------------------------------------------------

def check_config(conf):
    from harness import SLUICE
    r = subprocess.run([str(SLUICE), "-t", "-c", str(conf)], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def test_loose_permissions_are_reported_with_file_and_line(tmp):
    secret = tmp / "upstream.key"
    secret.write_text(UPSTREAM_KEY + "\n")
    conf = tmp / "loose.conf"
    conf.write_text(f"[server]\nlisten = 127.0.0.1:9\n\n[backend a]\nurl = http://127.0.0.1:1/v1\n"
                    f"api_key = {UPSTREAM_KEY}\n\n[backend b]\nurl = http://127.0.0.1:2/v1\n"
                    f"api_key = file:{secret}\n\n[key k]\nkey = sha256:{'ab' * 32}\n")
    os.chmod(secret, 0o644)
    os.chmod(conf, 0o666)
    rc, out = check_config(conf)
    assert rc == 0  # warnings by default
    assert f"{conf}: the configuration file is writable by other users (mode 0666)" in out
    assert f"{conf}:6: api_key holds a plain secret and the file is readable by other users" in out
    assert f"{conf}:10: {secret} holds a secret and is readable by other users (mode 0644)" in out
    conf.write_text(conf.read_text().replace("[server]\n", "[server]\nstrict_permissions = on\n"))
    rc, out = check_config(conf)
    assert rc == 1 and "(strict_permissions)" in out
    os.chmod(secret, 0o600)
    os.chmod(conf, 0o600)
    rc, out = check_config(conf)
    assert rc == 0 and "other users" not in out


def test_env_secrets_leave_the_environment_and_survive_a_reload(mock, start_sluice):
    from harness import base_conf
    conf = base_conf(mock.url).replace(f"api_key = {UPSTREAM_KEY}", "api_key = env:SLUICE_TEST_UPSTREAM_KEY")
    s = start_sluice(conf, extra_env={"SLUICE_TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    assert s.chat(CHAT).status == 200  # the mock checks the key
    if os.geteuid() == 0:
        with open(f"/proc/{s.proc.pid}/environ", "rb") as f:
            environ = f.read()
        assert UPSTREAM_KEY.encode() not in environ
    else:  # only root may read a process that is not dumpable, even of the same user
        try:
            open(f"/proc/{s.proc.pid}/environ", "rb").close()
            raise AssertionError("another process of the same user read sluice's environment")
        except PermissionError:
            pass
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "reloaded" not in s.log_text() and time.time() < deadline:
        time.sleep(0.05)
    assert "reloaded" in s.log_text()
    assert s.chat(CHAT).status == 200


def test_the_process_is_not_dumpable(tmp, mock):
    """Another process of the same user cannot read sluice's memory or
    environment (/proc/PID/environ, like /proc/PID/mem, needs it dumpable)."""
    import shutil
    import tempfile
    from harness import ENV, SLUICE, base_conf
    as_other = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    # The other user must reach the binary and the config: a clone under
    # /root (mode 0700) is out of its reach, so both go to a folder it can read.
    d = tempfile.mkdtemp(prefix="sluice-nodump-")
    try:
        os.chmod(d, 0o755)
        binary = os.path.join(d, "sluice")
        shutil.copy2(SLUICE, binary)
        port = free_port()
        conf = os.path.join(d, "sluice.conf")
        with open(conf, "w") as f:
            f.write(base_conf(mock.url).replace("{port}", str(port)))
        os.chmod(conf, 0o644)
        log = open(tmp / "nodump.log", "w")
        proc = subprocess.Popen(as_other + [binary, "-c", conf], stderr=log, stdout=subprocess.DEVNULL, env=ENV)
        control = subprocess.Popen(as_other + ["sleep", "30"])
        try:
            wait_port(port, proc)
            read = lambda pid: subprocess.run(as_other + ["cat", f"/proc/{pid}/environ"], capture_output=True)
            assert read(control.pid).returncode == 0  # an ordinary process of that user: readable
            r = read(proc.pid)
            assert r.returncode != 0 and b"Permission denied" in r.stderr
        finally:
            control.kill()
            control.wait(10)
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    finally:
        shutil.rmtree(d)


# ---- what a client that gets it wrong sees (was test_client_errors.py) ----

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
