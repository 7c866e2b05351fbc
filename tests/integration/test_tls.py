"""TLS on the client listener: HTTPS next to plain HTTP, TLS 1.2 and 1.3 only,
ALPN http/1.1, session resumption, certificates reread on SIGHUP without
dropping connections, client certificates (mTLS), and the strict front end,
deadlines and limits behaving the same over TLS. A test CA is made with the
openssl command for each test."""
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time

import pytest

from harness import CLIENT_KEY, ENV, SLUICE, base_conf, free_port, rss_kb, wait_port


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class Pki:
    """A CA, certificates it signs for localhost/127.0.0.1 and for clients,
    and a second CA nobody trusts."""

    def __init__(self, d):
        self.d = d
        d.mkdir(exist_ok=True)
        (d / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        for ca in ("ca", "other-ca"):
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "30", "-subj", f"/CN={ca}",
                    cwd=d)

    def cert(self, name, ca="ca", days=30, cn="localhost", san=None):
        ext = "ext"
        if san:  # other names than localhost and 127.0.0.1
            ext = f"{name}.ext"
            (self.d / ext).write_text(f"subjectAltName={san}\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=self.d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", str(days), "-extfile", ext,
                cwd=self.d)
        os.chmod(self.d / f"{name}.key", 0o600)
        return self.d / f"{name}.pem", self.d / f"{name}.key"

    def path(self, name):
        return str(self.d / name)


@pytest.fixture
def pki(tmp):
    return Pki(tmp / "pki")


def tls_conf(mock, pki, plain_port=None, server="", key_extra=""):
    cert, key = pki.cert("server") if not (pki.d / "server.pem").exists() else (
        pki.d / "server.pem", pki.d / "server.key")
    extra = f"listen = 127.0.0.1:{plain_port}\n" if plain_port else ""
    conf = base_conf(mock.url, extra_server=f"tls_cert = {cert}\ntls_key = file:{key}\n{extra}{server}",
                     key_extra=key_extra)
    return conf.replace("listen = 127.0.0.1:{port}", "listen = 127.0.0.1:{port} tls")


def client_ctx(pki, ca="ca.pem", cert=None, version=None, alpn=None):
    ctx = ssl.create_default_context(cafile=pki.path(ca))
    if cert:
        ctx.load_cert_chain(pki.path(cert + ".pem"), pki.path(cert + ".key"))
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def https(s, ctx, host="localhost", timeout=10):
    return http.client.HTTPSConnection(host, s.port, context=ctx, timeout=timeout)


def chat(conn, body=None, key=CLIENT_KEY):
    body = body or {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, dict(r.getheaders()), r.read()


GET_CLOSE = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def s_client(port, *args, stdin=GET_CLOSE):
    """openssl s_client sending stdin and reading until sluice closes."""
    r = subprocess.run(["openssl", "s_client", "-ign_eof", "-connect", f"127.0.0.1:{port}", *args],
                       input=stdin, capture_output=True, timeout=20)
    return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def test_https_next_to_plain_http(mock, pki, start_sluice):
    plain = free_port()
    s = start_sluice(tls_conf(mock, pki, plain_port=plain))
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        c = https(s, client_ctx(pki, version=version, alpn=["h2", "http/1.1"]))
        status, _, body = chat(c)
        assert status == 200 and json.loads(body)["object"] == "chat.completion"
        assert c.sock.version() == {ssl.TLSVersion.TLSv1_3: "TLSv1.3",
                                    ssl.TLSVersion.TLSv1_2: "TLSv1.2"}[version]
        assert c.sock.selected_alpn_protocol() == "http/1.1"
        status, _, _ = chat(c)  # keep-alive over the same TLS connection
        assert status == 200
        c.close()
    # A stream over TLS arrives whole.
    c = https(s, client_ctx(pki))
    c.request("POST", "/v1/chat/completions",
              body=json.dumps({"model": "gpt-4o", "stream": True,
                               "messages": [{"role": "user", "content": "x"}]}),
              headers={"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"})
    r = c.getresponse()
    text = r.read().decode()
    assert r.status == 200 and text.rstrip().endswith("data: [DONE]") and text.count("data: ") > 3
    c.close()
    # The plain listener still speaks plain HTTP.
    p = http.client.HTTPConnection("127.0.0.1", plain, timeout=10)
    status, _, _ = chat(p)
    assert status == 200
    # Plain HTTP sent to the TLS port is not served.
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        got = raw.recv(4096)
    except (ConnectionResetError, socket.timeout):
        got = b""
    assert b"200" not in got and b"healthz" not in got
    raw.close()
    assert "(tls)" in s.log_text()


def test_protocol_details_with_s_client(mock, pki, start_sluice):
    s = start_sluice(tls_conf(mock, pki))
    out = s_client(s.port, "-CAfile", pki.path("ca.pem"), "-alpn", "http/1.1", "-servername", "localhost")
    assert "ALPN protocol: http/1.1" in out and "Verify return code: 0 (ok)" in out
    assert "TLSv1.3" in out and "HTTP/1.1 200" in out
    for old in ("-tls1", "-tls1_1"):  # TLS 1.0 and 1.1 are refused
        out = s_client(s.port, old, "-CAfile", pki.path("ca.pem"))
        assert "alert protocol version" in out or "no protocols available" in out, out[-500:]
    # Session resumption, TLS 1.3 (ticket) and TLS 1.2 (session ID or ticket).
    for version in ("-tls1_3", "-tls1_2"):
        sess = pki.path(f"sess{version}.pem")
        first = s_client(s.port, version, "-CAfile", pki.path("ca.pem"), "-sess_out", sess)
        assert "New, TLSv1" in first
        again = s_client(s.port, version, "-CAfile", pki.path("ca.pem"), "-sess_in", sess)
        assert "Reused, TLSv1" in again, again[-800:]


def test_client_sees_expired_or_untrusted_certificates(mock, pki, start_sluice):
    pki.cert("server", days=-1)  # expired yesterday
    s = start_sluice(tls_conf(mock, pki))
    assert "tls_cert" in s.log_text() and "expired" in s.log_text()
    with pytest.raises(ssl.SSLCertVerificationError) as e:
        chat(https(s, client_ctx(pki)))
    assert "expired" in e.value.verify_message
    # Signed by a CA the client does not trust.
    s.stop()
    pki.cert("server", ca="other-ca")
    s2 = start_sluice(tls_conf(mock, pki))
    with pytest.raises(ssl.SSLCertVerificationError) as e:
        chat(https(s2, client_ctx(pki)))
    assert "unable to get local issuer" in e.value.verify_message
    status, _, _ = chat(https(s2, client_ctx(pki, ca="other-ca.pem")))
    assert status == 200


def test_mtls_requires_a_certificate_from_the_client_ca(mock, pki, start_sluice):
    pki.cert("client", cn="team-a")
    pki.cert("stranger", ca="other-ca", cn="stranger")
    s = start_sluice(tls_conf(mock, pki, server=f"tls_client_ca = {pki.path('ca.pem')}"))
    status, _, _ = chat(https(s, client_ctx(pki, cert="client")))
    assert status == 200
    for cert in (None, "stranger"):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            chat(https(s, client_ctx(pki, cert=cert)))
    out = s_client(s.port, "-CAfile", pki.path("ca.pem"))
    assert "certificate required" in out or "alert" in out, out[-500:]
    assert "HTTP/1.1 200" not in out
    assert s.proc.poll() is None


def peer_serial(conn):
    der = conn.sock.getpeercert(binary_form=True)
    return ssl.DER_cert_to_PEM_cert(der)


def test_sighup_rereads_certificates_without_dropping_connections(mock, pki, start_sluice):
    s = start_sluice(tls_conf(mock, pki))
    old = https(s, client_ctx(pki))
    status, _, _ = chat(old)
    assert status == 200
    first_cert = peer_serial(old)
    pki.cert("server")  # a new certificate and key in the same files
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while "reloaded" not in s.log_text() and time.time() < deadline:
        time.sleep(0.05)
    assert "reloaded" in s.log_text()
    status, _, _ = chat(old)  # the connection opened before goes on
    assert status == 200 and peer_serial(old) == first_cert
    new = https(s, client_ctx(pki))
    status, _, _ = chat(new)
    assert status == 200 and peer_serial(new) != first_cert
    # A broken key on reload keeps the running certificate.
    (pki.d / "server.key").write_text("not a key\n")
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while "reload of" not in s.log_text() and time.time() < deadline:
        time.sleep(0.05)
    assert "reload of" in s.log_text() and "tls_key" in s.log_text()
    third = https(s, client_ctx(pki))
    status, _, _ = chat(third)
    assert status == 200 and peer_serial(third) == peer_serial(new)


def test_strict_parser_deadlines_and_limits_over_tls(mock, pki, start_sluice):
    s = start_sluice(tls_conf(mock, pki, server="header_timeout = 1s", key_extra="rpm = 3"))
    ctx = client_ctx(pki)
    # Bad framing: 400 and the connection is closed.
    t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", s.port)), server_hostname="localhost")
    t.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    t.settimeout(5)
    got = b""
    while True:
        chunk = t.recv(4096)
        if not chunk:
            break
        got += chunk
    assert got.startswith(b"HTTP/1.1 400") and b"invalid_request_error" in got
    t.close()
    # Headers that never end: 408 after header_timeout, the handshake included.
    t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", s.port)), server_hostname="localhost")
    start = time.time()
    t.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    t.settimeout(5)
    got = t.recv(4096)
    assert got.startswith(b"HTTP/1.1 408") and time.time() - start < 3
    t.close()
    # A TCP client that never starts the handshake is closed at the same deadline.
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    start = time.time()
    assert raw.recv(10) == b"" and time.time() - start < 3
    raw.close()
    # A body of 3 MB arrives over many TLS records.
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "word " * 600000}]}
    status, _, _ = chat(https(s, ctx), body=big)
    assert status == 200
    assert json.loads(mock.last()["body"])["messages"][0]["content"] == "word " * 600000
    # The key's rpm = 3 holds over TLS as over plain HTTP (the big one was the first).
    c = https(s, ctx)
    codes = [chat(c)[0] for _ in range(3)]
    assert codes == [200, 200, 429]


def test_config_errors_are_reported(tmp, mock, pki):
    cert, key = pki.cert("server")
    other_cert, _ = pki.cert("other")

    def check(server):
        conf = tmp / "t.conf"
        conf.write_text(base_conf(mock.url, extra_server=server).replace(
            "listen = 127.0.0.1:{port}", f"listen = 127.0.0.1:{free_port()} tls"))
        r = subprocess.run([str(SLUICE), "-t", "-c", str(conf)], capture_output=True, text=True, env=ENV)
        return r.returncode, r.stdout + r.stderr

    rc, out = check(f"tls_cert = {cert}\ntls_key = {key}")
    assert rc == 0, out
    rc, out = check("")
    assert rc != 0 and "needs tls_cert and tls_key" in out
    rc, out = check(f"tls_cert = {other_cert}\ntls_key = {key}")
    assert rc != 0 and "does not belong" in out
    rc, out = check(f"tls_cert = {tmp}/missing.pem\ntls_key = {key}")
    assert rc != 0 and "cannot read" in out
    rc, out = check(f"tls_cert = {key}\ntls_key = {key}")
    assert rc != 0 and "tls_cert" in out
    os.chmod(key, 0o644)
    rc, out = check(f"tls_cert = {cert}\ntls_key = {key}")
    assert "readable by other users" in out


def https_backend_conf(mock, extra_backend):
    return base_conf(mock.url, extra_backend=extra_backend)


def test_https_backend_trust_and_client_certificate(tmp, pki, start_mock, start_sluice):
    upstream = pki.cert("upstream")
    ours = pki.cert("sluice-client", cn="sluice")
    m = start_mock(tls=upstream)
    # The test CA is not in the system's trust: refused unless ca_file names it.
    s = start_sluice(https_backend_conf(m, ""))
    r = s.chat()
    assert r.status == 502, r.body
    s2 = start_sluice(https_backend_conf(m, f"ca_file = {pki.path('ca.pem')}"))
    r = s2.chat()
    assert r.status == 200, r.body
    # ca_file replaces the system's trust: a certificate from another CA fails.
    s3 = start_sluice(https_backend_conf(m, f"ca_file = {pki.path('other-ca.pem')}"))
    assert s3.chat().status == 502
    # tls_verify = no: served, with a warning at load.
    s4 = start_sluice(https_backend_conf(m, "tls_verify = no"))
    assert s4.chat().status == 200
    assert "tls_verify = no" in s4.log_text()
    # Upstream mTLS: the mock asks for a client certificate from the test CA.
    m2 = start_mock(tls=upstream, client_ca=pki.path("ca.pem"), own_cert=ours)
    s5 = start_sluice(https_backend_conf(m2, f"ca_file = {pki.path('ca.pem')}"))
    assert s5.chat().status == 502  # no client certificate
    s6 = start_sluice(https_backend_conf(m2, f"ca_file = {pki.path('ca.pem')}\n"
                                              f"client_cert = {ours[0]}\nclient_key = {ours[1]}"))
    r = s6.chat()
    assert r.status == 200, r.body
    assert m2.stats()["requests"] >= 1
    # Both backends in one node: each transfer gets its own backend's settings.
    both = base_conf(m.url, extra_backend=f"ca_file = {pki.path('ca.pem')}\npriority = 1").replace(
        "[key team-a]", f"[backend mtls]\nurl = {m2.url}\napi_key = x\nca_file = {pki.path('ca.pem')}\n"
                        f"client_cert = {ours[0]}\nclient_key = {ours[1]}\npriority = 2\n\n[key team-a]")
    s7 = start_sluice(both)
    assert [s7.chat().status for _ in range(4)] == [200] * 4


def test_backend_tls_options_are_checked(tmp, mock, pki):
    cert, key = pki.cert("c")

    def check(extra):
        conf = tmp / "b.conf"
        conf.write_text(base_conf(mock.url, extra_backend=extra).replace("{port}", str(free_port())))
        r = subprocess.run([str(SLUICE), "-t", "-c", str(conf)], capture_output=True, text=True, env=ENV)
        return r.returncode, r.stdout + r.stderr

    rc, out = check(f"ca_file = {pki.path('ca.pem')}")
    assert rc != 0 and "are for https:// URLs" in out  # the mock's URL is http://
    rc, out = check("tls_verify = no")
    assert rc != 0 and "are for https:// URLs" in out
    rc, out = check(f"ca_file = {tmp}/nope.pem")
    assert rc != 0 and "cannot read" in out


def test_back_pressure_over_tls(mock, pki, start_sluice):
    """A TLS client that stops reading a 40 MB stream: sluice pauses the
    upstream instead of buffering it, then delivers every byte."""
    s = start_sluice(tls_conf(mock, pki))
    raw = socket.create_connection(("127.0.0.1", s.port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    t = client_ctx(pki).wrap_socket(raw, server_hostname="localhost")
    body = json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
    before = rss_kb(s.proc.pid)
    t.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + CLIENT_KEY.encode() +
              b"\r\nConnection: close\r\nx-mock-completion-tokens: 250000\r\nContent-Length: " +
              str(len(body)).encode() + b"\r\n\r\n" + body)
    time.sleep(1.5)  # the mock has written all it can; we read nothing
    grown_mb = (rss_kb(s.proc.pid) - before) / 1024
    assert grown_mb < 16, f"sluice buffered {grown_mb:.1f} MB for a TLS client that does not read"
    total, tail = 0, b""
    t.settimeout(30)
    while True:
        try:
            chunk = t.recv(1 << 20)
        except ssl.SSLZeroReturnError:
            break
        if not chunk:
            break
        total += len(chunk)
        tail = (tail + chunk)[-64:]
    t.close()
    assert total > 30_000_000 and b"data: [DONE]" in tail
