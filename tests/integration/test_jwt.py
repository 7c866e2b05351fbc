"""JWT sign-in (issue #32): bearer tokens signed by an identity provider's
keys ([auth] jwks: a file, or an https URL served here with rotation), made
at test time with OpenSSL (`openssl genpkey`) and signed here; every kind of
bad token gets 401 with its reason, the user and team come from the token,
and the key profile's per-user limits hold for each person."""
import base64
import http.server
import json
import signal
import ssl
import subprocess
import threading
import time

import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from harness import CLIENT_KEY, MOCK_HEADERS, UPSTREAM_KEY
from test_failover import last_access
from test_tls import Pki

ISSUER = "https://idp.example.test/"
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def num(n):
    return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class Key:
    """A private key made by `openssl genpkey`, its JWK, and tokens it signs."""

    def __init__(self, d, kind, kid):
        self.kind, self.kid = kind, kid
        path = d / f"{kid}.pem"
        args = {"RS256": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                "ES256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                "EdDSA": ["-algorithm", "ED25519"]}[kind]
        subprocess.run(["openssl", "genpkey", *args, "-out", str(path)], check=True,
                       capture_output=True)
        self.key = serialization.load_pem_private_key(path.read_bytes(), None)

    def jwk(self):
        pub = self.key.public_key()
        if self.kind == "RS256":
            n = pub.public_numbers()
            return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256", "n": num(n.n),
                    "e": num(n.e)}
        if self.kind == "ES256":
            n = pub.public_numbers()
            return {"kty": "EC", "kid": self.kid, "crv": "P-256",
                    "x": b64(n.x.to_bytes(32, "big")), "y": b64(n.y.to_bytes(32, "big"))}
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "kid": self.kid, "crv": "Ed25519", "x": b64(raw)}

    def sign(self, claims, header=None):
        """claims: a dict, or the payload's bytes as they are."""
        head = {"alg": self.kind, "typ": "JWT", "kid": self.kid, **(header or {})}
        payload = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
        signing = f"{b64(json.dumps(head).encode())}.{b64(payload)}".encode()
        if self.kind == "RS256":
            sig = self.key.sign(signing, padding.PKCS1v15(), hashes.SHA256())
        elif self.kind == "ES256":
            r, s = decode_dss_signature(self.key.sign(signing, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            sig = self.key.sign(signing)
        return f"{signing.decode()}.{b64(sig)}"


def claims(sub="ann@example.com", **over):
    now = int(time.time())
    c = {"iss": ISSUER, "aud": ["sluice", "other"], "sub": sub, "iat": now, "nbf": now - 5,
         "exp": now + 600, "groups": ["eng", "platform"]}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def conf(mock, jwks, extra_auth="", key_extra="", redis=None):
    red = f"[redis]\nurl = {redis.url}\n" if redis else ""
    return f"""
[server]
listen = 127.0.0.1:{{port}}
access_log = on
admin_key = sk-admin-key-for-tests-0001
{red}
[backend main]
url = {mock.url}
api_key = {UPSTREAM_KEY}
{MOCK_HEADERS}

[team platform]
rpm = 1000

[key employees]
key = {CLIENT_KEY}
{key_extra}

[auth]
jwks = {jwks}
issuer = {ISSUER}
audience = sluice
leeway = 30s
user_claim = sub
team_claim = groups
key_profile = employees
{extra_auth}
"""


@pytest.fixture
def keys(tmp):
    d = tmp / "idp"
    d.mkdir()
    return {"rsa": Key(d, "RS256", "rsa-1"), "ec": Key(d, "ES256", "ec-1"),
            "ed": Key(d, "EdDSA", "ed-1"), "other": Key(d, "RS256", "rsa-1")}


def write_jwks(path, *ks):
    path.write_text(json.dumps({"keys": [k.jwk() for k in ks]}))


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_good_tokens_of_each_algorithm_name_the_user_and_team(mock, start_sluice, tmp, keys):
    write_jwks(tmp / "jwks.json", keys["rsa"], keys["ec"], keys["ed"])
    s = start_sluice(conf(mock, tmp / "jwks.json"))
    for n, k in enumerate(("rsa", "ec", "ed"), 1):
        r = s.chat(CHAT, key=None, headers=bearer(keys[k].sign(claims(sub=f"user-{k}"))))
        assert r.status == 200, r.body
        line = last_access(s, n)
        assert line["user"] == f"user-{k}" and line["key"] == "employees"
        assert line["team"] == "platform"  # the first of its groups that names a [team]
    # the token never reaches the upstream; the backend's own key does
    assert mock.last()["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    # the key profile's own secret still works as an API key, without a user
    assert s.chat(CHAT).status == 200 and last_access(s, 4)["user"] == "-"


@pytest.mark.parametrize("case", ["expired", "not_yet", "audience", "issuer", "signature",
                                  "unknown_kid", "alg_none", "hs256", "no_user", "bad_user",
                                  "duplicate", "garbage"])
def test_bad_tokens_get_401_with_the_reason(mock, start_sluice, tmp, keys, case):
    write_jwks(tmp / "jwks.json", keys["rsa"], keys["ec"])
    s = start_sluice(conf(mock, tmp / "jwks.json"))
    now = int(time.time())
    rsa = keys["rsa"]
    token, reason = {
        "expired": (rsa.sign(claims(exp=now - 31)), "expired"),
        "not_yet": (rsa.sign(claims(nbf=now + 60)), "not valid yet"),
        "audience": (rsa.sign(claims(aud="someone-else")), "audience"),
        "issuer": (rsa.sign(claims(iss="https://evil.test/")), "issuer"),
        "signature": (keys["other"].sign(claims()), "bad signature"),  # same kid, another key
        "unknown_kid": (rsa.sign(claims(), {"kid": "rotated-away"}), "unknown key id"),
        "alg_none": (None, "algorithm"),
        "hs256": (None, "algorithm"),
        "no_user": (rsa.sign(claims(sub=None)), "no user claim"),
        "bad_user": (rsa.sign(claims(sub="has spaces")), "user"),
        "duplicate": (None, "not a JSON object"),
        "garbage": ("eyJhbGciOiJSUzI1NiJ9.e30.!!!", "bad signature"),
    }[case]
    if case == "alg_none":
        none = b64(json.dumps({"alg": "none"}).encode())
        token = f"{none}.{b64(json.dumps(claims()).encode())}.AA"
    if case == "hs256":  # HMAC keyed with the RSA key's public JWK: never accepted
        signing = f"{b64(json.dumps({'alg': 'HS256', 'kid': 'rsa-1'}).encode())}." \
                  f"{b64(json.dumps(claims()).encode())}".encode()
        h = hmac.HMAC(json.dumps(rsa.jwk()).encode(), hashes.SHA256())
        h.update(signing)
        token = f"{signing.decode()}.{b64(h.finalize())}"
    if case == "duplicate":  # signed, but read two ways: the first sub or the last?
        token = rsa.sign(b'{"iss":"%s","aud":"sluice","sub":"ann","sub":"root","exp":%d}'
                         % (ISSUER.encode(), now + 60))
    r = s.chat(CHAT, key=None, headers=bearer(token))
    assert r.status == 401, (case, r.body)
    err = r.error()
    assert err["code"] == "invalid_api_key"
    assert err["message"].startswith("Invalid token: ") and reason in err["message"], err["message"]
    assert token not in r.body.decode() and token not in s.log_text()
    assert mock.stats()["requests"] == 0


def test_clock_skew_within_the_leeway_passes(mock, start_sluice, tmp, keys):
    write_jwks(tmp / "jwks.json", keys["ed"])
    s = start_sluice(conf(mock, tmp / "jwks.json"))
    now = int(time.time())
    assert s.chat(CHAT, key=None, headers=bearer(keys["ed"].sign(claims(exp=now - 20)))).status == 200
    assert s.chat(CHAT, key=None, headers=bearer(keys["ed"].sign(claims(nbf=now + 20)))).status == 200
    assert s.chat(CHAT, key=None, headers=bearer(keys["ed"].sign(claims(exp=now - 40)))).status == 401


def test_each_person_gets_the_profile_s_per_user_limits(mock, start_sluice, tmp, keys):
    write_jwks(tmp / "jwks.json", keys["rsa"])
    s = start_sluice(conf(mock, tmp / "jwks.json", key_extra="user_rpm = 2"))
    ann, bo = keys["rsa"].sign(claims(sub="ann")), keys["rsa"].sign(claims(sub="bo", groups="eng"))
    assert [s.chat(CHAT, key=None, headers=bearer(ann)).status for _ in range(3)] == [200, 200, 429]
    assert [s.chat(CHAT, key=None, headers=bearer(bo)).status for _ in range(2)] == [200, 200]
    assert last_access(s, 5)["team"] == "-"  # "eng" names no [team]; the profile has none
    r = s.chat(CHAT, key=None, headers=bearer(ann))
    assert "user ann of key employees" in r.error()["message"]


def test_a_jwks_file_is_read_again_on_sighup(mock, start_sluice, tmp, keys):
    write_jwks(tmp / "jwks.json", keys["rsa"])
    s = start_sluice(conf(mock, tmp / "jwks.json"))
    assert s.chat(CHAT, key=None, headers=bearer(keys["ec"].sign(claims()))).status == 401
    write_jwks(tmp / "jwks.json", keys["ec"])
    s.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "info reloaded" in s.log_text())
    r = s.chat(CHAT, key=None, headers=bearer(keys["ec"].sign(claims())))
    assert r.status == 200, r.body
    assert s.chat(CHAT, key=None, headers=bearer(keys["rsa"].sign(claims(sub="x")))).status == 401


def test_a_missing_or_empty_jwks_file_stops_the_start(mock, tmp, keys):
    from harness import SLUICE
    (tmp / "empty.json").write_text('{"keys": []}')
    for path in (tmp / "nope.json", tmp / "empty.json"):
        c = tmp / "bad.conf"
        c.write_text(conf(mock, path).replace("{port}", "9"))  # stops before it listens
        r = subprocess.run([str(SLUICE), "-c", str(c)], capture_output=True, text=True, timeout=20)
        assert r.returncode == 1 and "[auth] jwks" in r.stdout + r.stderr
        r = subprocess.run([str(SLUICE), "-t", "-c", str(c)], capture_output=True, text=True, timeout=20)
        assert r.returncode == 1 and "[auth] jwks" in r.stderr and "test failed" in r.stderr


class Idp:
    """An identity provider's JWKS over HTTPS (a local server, its own CA):
    the set it serves can change (rotation) and it can go down."""

    def __init__(self, tmp):
        self.pki = Pki(tmp / "idp-pki")
        cert, key = self.pki.cert("idp")
        self.jwks = {"keys": []}
        self.fetches = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.fetches += 1
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, *ks):
        self.jwks = {"keys": [k.jwk() for k in ks]}

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_for(check, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end and not check():
        time.sleep(0.05)
    return check()


def test_an_https_jwks_is_fetched_rotated_and_kept_while_the_provider_is_down(
        mock, start_sluice, tmp, keys):
    idp = Idp(tmp)
    idp.serve(keys["rsa"])
    s = start_sluice(conf(mock, idp.url, f"ca_file = {idp.pki.path('ca.pem')}\njwks_refresh = 2s"))
    assert wait_for(lambda: "1 signing keys from https://" in s.log_text())
    assert s.chat(CHAT, key=None, headers=bearer(keys["rsa"].sign(claims()))).status == 200
    # rotation: the provider publishes ec-1 and signs with it at once; the first token
    # with the new kid waits while sluice fetches the set again, and passes
    idp.serve(keys["rsa"], keys["ec"])
    fetched = idp.fetches
    began = time.time()
    first = s.chat(CHAT, key=None, headers=bearer(keys["ec"].sign(claims(sub="bo"))))
    assert first.status == 200, first.body
    assert idp.fetches > fetched and time.time() - began < 1.5  # fetched for it, not at refresh
    # a kid the provider does not have either: 401 after that fetch, and the next
    # one within 10 s does not fetch again (bounded)
    ghost = Key(tmp / "idp", "ES256", "ghost")
    r = s.chat(CHAT, key=None, headers=bearer(ghost.sign(claims())))
    assert r.status == 401 and "unknown key id" in r.error()["message"]
    fetched = idp.fetches
    r = s.chat(CHAT, key=None, headers=bearer(ghost.sign(claims(sub="again"))))
    assert r.status == 401 and idp.fetches - fetched <= 1  # at most the 2 s refresh
    # the provider goes down: the last good set is kept, and new tokens still pass
    idp.stop()
    assert wait_for(lambda: "keeping the last good set (2 keys)" in s.log_text(), 5)
    assert s.chat(CHAT, key=None, headers=bearer(keys["ec"].sign(claims(sub="cy")))).status == 200


def test_an_untrusted_jwks_server_is_not_believed(mock, start_sluice, tmp, keys):
    idp = Idp(tmp)
    idp.serve(keys["rsa"])
    s = start_sluice(conf(mock, idp.url, "jwks_refresh = 1s"))  # no ca_file: the system's CAs
    assert wait_for(lambda: "keeping the last good set (0 keys)" in s.log_text())
    r = s.chat(CHAT, key=None, headers=bearer(keys["rsa"].sign(claims())))
    assert r.status == 503 and "not loaded yet" in r.error()["message"]
    idp.stop()


def test_a_repeated_token_is_checked_once(mock, start_sluice, tmp, keys):
    """The check is cached until the token expires: its exp passing is still
    noticed, and a changed token is checked anew."""
    write_jwks(tmp / "jwks.json", keys["rsa"])
    s = start_sluice(conf(mock, tmp / "jwks.json").replace("leeway = 30s", "leeway = 0s"))
    soon = keys["rsa"].sign(claims(exp=int(time.time()) + 2))
    assert [s.chat(CHAT, key=None, headers=bearer(soon)).status for _ in range(3)] == [200] * 3
    time.sleep(2.2)
    r = s.chat(CHAT, key=None, headers=bearer(soon))
    assert r.status == 401 and "expired" in r.error()["message"]


def test_the_token_s_team_counts_its_people_and_the_admin_api_shows_them(mock, start_sluice, tmp,
                                                                          keys):
    """The team comes from the token's groups: its per-user rpm counts each
    person of it; GET /admin/users/ID?key=PROFILE&team=TEAM shows one."""
    write_jwks(tmp / "jwks.json", keys["ec"])
    text = conf(mock, tmp / "jwks.json").replace("[team platform]\nrpm = 1000",
                                                 "[team platform]\nrpm = 1000\nuser_rpm = 3")
    s = start_sluice(text)
    ann = keys["ec"].sign(claims(sub="ann"))
    assert [s.chat(CHAT, key=None, headers=bearer(ann)).status for _ in range(4)] == [200] * 3 + [429]
    r = s.chat(CHAT, key=None, headers=bearer(ann))
    assert "user ann of team platform (key employees)" in r.error()["message"]
    solo = keys["ec"].sign(claims(sub="solo", groups=["eng"]))  # no [team eng]: no team limits
    assert [s.chat(CHAT, key=None, headers=bearer(solo)).status for _ in range(4)] == [200] * 4
    v = s.request("GET", "/admin/users/ann?key=employees&team=platform", None,
                  key="sk-admin-key-for-tests-0001").json()
    assert v["team"] == "platform" and v["per_team"]["requests"] == {"limit": 3, "used": 3,
                                                                     "remaining": 0}
    assert s.request("GET", "/admin/users/ann?key=employees&team=nope", None,
                     key="sk-admin-key-for-tests-0001").status == 404
