"""GET /admin/status and /admin/status.json: who may see them, what the JSON
says (breakers, attempts, live windows from either limiter), and the page
itself in headless Chromium: it renders, its numbers change under load, and
a backend's row turns red when its breaker opens."""
import base64
import json
import re
import shutil
import struct
import subprocess
import zlib

import pytest

from harness import CLIENT_KEY, base_conf, free_port

ADMIN_KEY = "sk-admin-status-0001"
RED = (247, 181, 181)  # tr.open td in src/status.html


def conf(mock, admin_port=None, admin_key=True, redis=None, key_extra="rpm = 100\ninput_tpm = 100000"):
    server = f"admin_listen = 127.0.0.1:{admin_port}\n" if admin_port else ""
    if admin_key:
        server += f"admin_key = {ADMIN_KEY}\n"
    extra = "[team platform]\nrpm = 1000\nbudget = 50\n[model gpt-4o]\ninput_price = 2.5\noutput_price = 10\n"
    if redis:
        extra += f"[redis]\nurl = {redis.url}\n"
    return base_conf(mock.url, extra_server=server,
                     extra_backend="breaker_failures = 2\nbreaker_trip = 30s",
                     key_extra=key_extra + "\nteam = platform\nquota = 1000000\nbudget = 5", extra=extra)


AS_ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def get(port, path, headers=None):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers=AS_ADMIN if headers is None else headers)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_who_may_see_it(mock, start_sluice):
    admin = free_port()
    s = start_sluice(conf(mock, admin))
    status, headers, body = get(admin, "/admin/status")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"<script>" in body and b"status.json" in body
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert not re.search(rb"(src|href)=\"https?://", body)  # no external assets
    assert get(admin, "/admin/status.json")[0] == 200
    assert get(admin, "/admin/status.json", {})[0] == 401  # the operator listener too
    assert get(s.port, "/admin/status")[0] == 404  # not on the API listener
    s.stop()
    # Without admin_key the page and its JSON are off, even on admin_listen:
    # they show key names and spend (issue #28, finding 10).
    s1 = start_sluice(conf(mock, admin, admin_key=False))
    for path in ("/admin/status", "/admin/status.json"):
        status, _, body = get(admin, path, {})
        assert status == 404 and b"admin_key" in body, (path, status, body)
    assert get(admin, "/metrics", {})[0] == 200  # the rest of the operator listener stays
    s1.stop()
    # The admin key is required everywhere, as Bearer or as a browser's Basic password.
    s2 = start_sluice(conf(mock))
    status, headers, _ = get(s2.port, "/admin/status", {})
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")
    assert get(s2.port, "/admin/status.json", {"Authorization": f"Bearer {ADMIN_KEY}"})[0] == 200
    assert get(s2.port, "/admin/status", basic("ops", ADMIN_KEY))[0] == 200
    assert get(s2.port, "/admin/status", basic("", ADMIN_KEY))[0] == 200
    assert get(s2.port, "/admin/status", basic("ops", ADMIN_KEY + "x"))[0] == 401
    assert get(s2.port, "/admin/status", basic("ops", CLIENT_KEY))[0] == 401
    assert get(s2.port, "/admin/status", {"Authorization": "Basic !!!"})[0] == 401
    assert get(s2.port, "/admin/status.json", {"Authorization": f"Bearer {CLIENT_KEY}"})[0] == 401
    s2.stop()
    # No admin_listen and no admin_key: the admin API is off.
    s3 = start_sluice(conf(mock, admin_key=False))
    assert get(s3.port, "/admin/status")[0] == 404


def test_operator_endpoints_answer_only_their_hosts(mock, start_sluice):
    """A web page whose DNS name was rebound to this node (Host: its own name)
    cannot read the operator endpoints: 421 unless the Host is an IP address
    or in admin_hosts (localhost by default) — issue #28, finding 10."""
    admin = free_port()
    s = start_sluice(conf(mock, admin))
    for path in ("/admin/status.json", "/metrics", "/readyz"):
        status, _, body = get(admin, path, {"Host": f"rebound.example:{admin}"})
        assert status == 421 and b"misdirected_request" in body, (path, status)
        assert get(admin, path, {**AS_ADMIN, "Host": f"localhost:{admin}"})[0] == 200
        assert get(admin, path, {**AS_ADMIN, "Host": f"127.0.0.1:{admin}"})[0] == 200
        assert get(admin, path, {**AS_ADMIN, "Host": f"[::1]:{admin}"})[0] == 200
    assert s.chat(headers={"Host": "rebound.example"}).status == 200  # the API is not affected
    s.stop()
    s2 = start_sluice(conf(mock, admin).replace("[server]\n", "[server]\nadmin_hosts = ops.internal\n"))
    assert get(admin, "/metrics", {"Host": "ops.internal"})[0] == 200
    assert get(admin, "/metrics", {"Host": "localhost"})[0] == 421
    s2.stop()


def status_json(port):
    status, _, body = get(port, "/admin/status.json")
    assert status == 200
    return json.loads(body)


@pytest.mark.parametrize("limiter", ["local", "redis"])
def test_json_shows_breakers_attempts_and_live_windows(limiter, mock, start_sluice, request):
    redis = request.getfixturevalue("redis") if limiter == "redis" else None
    admin = free_port()
    s = start_sluice(conf(mock, admin, redis=redis))
    for _ in range(5):
        assert s.chat().status == 200
    st = status_json(admin)
    assert st["node"]["limiter"] == ("redis" if redis else "in-process")
    assert st["node"]["redis"] == ("up" if redis else "not configured")
    (be,) = st["backends"]
    assert be["name"] == "main" and be["state"] == "closed" and be["attempts"] == 5 and be["failures"] == 0
    assert 0 < be["ttfb_p50_ms"] <= be["ttfb_p99_ms"]
    (k,) = st["keys"]
    assert k["name"] == "team-a" and k["team"] == "platform" and k["answered"] == 5
    assert k["requests"] == {"limit": 100, "used": 5}
    assert k["input_tokens"]["limit"] == 100000 and k["input_tokens"]["used"] > 0
    assert k["output_tokens"]["used"] == 0 or k["output_tokens"]["limit"] == 0
    assert k["quota"]["limit"] == 1000000 and k["quota"]["used"] > 0
    assert k["budget_usd"]["limit"] == 5 and k["budget_usd"]["used"] > 0
    (t,) = st["teams"]
    assert t["name"] == "platform" and t["requests"] == {"limit": 1000, "used": 5}
    assert be["models"] == []  # no model's breaker has opened
    # Two failures (a 500 and its second chance on the same backend) open the
    # model's breaker: the backend shows it, with its time left; the backend's
    # own breaker (its connection) stays closed.
    for _ in range(2):
        s.chat(headers={"x-mock-status": "500"})
    be = status_json(admin)["backends"][0]
    assert be["state"] == "closed"
    (mb,) = be["models"]
    assert mb["model"] == "gpt-4o" and mb["state"] == "open" and 25000 < mb["open_left_ms"] <= 30000
    assert be["attempts"] == 7 and be["failures"] == 2  # the second request found it open


def test_failures_are_what_the_breaker_counts(mock, start_sluice):
    """The status page's failures follow each outcome's breaker verdict
    (outcome.h): a client error passed through and a request the client left
    are attempts, not failures; an error status is one."""
    import socket
    import time
    admin = free_port()
    s = start_sluice(conf(mock, admin))
    assert s.chat(headers={"x-mock-status": "400"}).status == 400  # client_error: passed through
    c = socket.create_connection(("127.0.0.1", s.port))  # aborted: the client leaves first
    body = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
    c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
              + CLIENT_KEY.encode() + b"\r\nContent-Type: application/json\r\nx-mock-delay-ms: 2000"
              b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    time.sleep(0.3)
    c.close()
    deadline = time.time() + 5
    while status_json(admin)["backends"][0]["attempts"] < 2 and time.time() < deadline:
        time.sleep(0.05)
    be = status_json(admin)["backends"][0]
    assert be["attempts"] == 2 and be["failures"] == 0, be
    assert s.chat(headers={"x-mock-status": "503"}).status == 503  # error_status: a failure,
    be = status_json(admin)["backends"][0]
    assert be["attempts"] == 4 and be["failures"] == 2, be  # and its second chance another


def png_pixels(path):
    """(width, rows of RGB tuples) of an 8-bit RGB or RGBA PNG, decoded here (stdlib only)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    bpp = 3 if ctype == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, bpp)])
        prev = line
    return w, rows


def chromium(tmp, url, screenshot=None):
    exe = shutil.which("chromium")
    assert exe, "chromium is missing: scripts/bootstrap.sh installs Debian's chromium"
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp / 'chromium-profile'}", "--window-size=1200,520",
            "--virtual-time-budget=4000"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    r = subprocess.run(args + [url], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def answered(dom):
    m = re.search(r'data-key="team-a"><td>team-a</td><td>platform</td><td class="answered">([\d,]+)<', dom)
    assert m, dom[-3000:]
    return int(m.group(1).replace(",", ""))


def test_page_in_headless_chromium(tmp, mock, start_sluice):
    admin = free_port()
    s = start_sluice(conf(mock, admin))
    url = f"http://ops:{ADMIN_KEY}@127.0.0.1:{admin}/admin/status"  # Basic, as a browser sends it
    for _ in range(3):
        assert s.chat().status == 200
    dom = chromium(tmp, url)
    assert 'id="backends"' in dom and '<tr class="closed" data-backend="main">' in dom
    assert "in-process" in dom and answered(dom) == 3
    assert '<tr data-team="platform">' in dom
    shot = tmp / "closed.png"
    chromium(tmp, url, screenshot=shot)
    _, rows = png_pixels(shot)
    assert sum(row.count(RED) for row in rows) == 0
    # Under load the numbers move.
    conn = s.conn()
    for _ in range(40):
        assert s.chat(conn=conn).status == 200
    assert answered(chromium(tmp, url)) == 43
    # A breaker of the backend opens (the model's): the backend's row is red.
    for _ in range(2):
        s.chat(headers={"x-mock-status": "500"})
    dom = chromium(tmp, url)
    assert '<tr class="open" data-backend="main">' in dom
    shot = tmp / "open.png"
    chromium(tmp, url, screenshot=shot)
    w, rows = png_pixels(shot)
    red_rows = [y for y, row in enumerate(rows) if row.count(RED) > w // 4]
    assert len(red_rows) >= 10, "no red backend row in the screenshot"
