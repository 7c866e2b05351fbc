"""Mutated requests against the front end: whatever arrives, sluice answers
or closes, never crashes or hangs, and keeps serving (the fixture checks the
sanitizer log and a clean exit). Deterministic: a fixed seed, 400 cases."""
import json
import random
import socket

from harness import CLIENT_KEY


def valid_requests():
    body = json.dumps({"model": "gpt-4o", "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    cl = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + CLIENT_KEY.encode() +
          b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    chunked = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + CLIENT_KEY.encode() +
               b"\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    admin = b"GET /admin/keys/team-a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n"
    return [cl, chunked, admin, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"]


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not data:
            data = bytearray(b"G")
        op = rng.randrange(6)
        i = rng.randrange(len(data))
        if op == 0:
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[i:i] = rng.choice([b"\r", b"\n", b"\x00", b" ", b":", b"\r\n", b"99999999999999999999", b"{", b"\""])
        elif op == 2:
            del data[i:i + rng.randint(1, 8)]
        elif op == 3:
            data = data[:i]
        elif op == 4:
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:
            data[i:i] = data[i:i + rng.randint(1, 64)]  # duplicate a slice (headers, chunks)
    return bytes(data)


def test_mutated_requests_never_break_sluice(mock, start_sluice):
    from harness import base_conf
    s = start_sluice(base_conf(mock.url, extra_server="header_timeout = 1s\nbody_timeout = 1s"))
    rng = random.Random(20261122)
    seeds = valid_requests()
    statuses = {}
    for _ in range(400):
        data = mutate(rng, rng.choice(seeds))
        sock = socket.create_connection(("127.0.0.1", s.port))
        sock.settimeout(3)
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            first = sock.recv(64)
        except OSError:
            first = b""
        finally:
            sock.close()
        key = first[:12].decode("latin-1") if first.startswith(b"HTTP/1.") else "closed"
        statuses[key] = statuses.get(key, 0) + 1
    # Every case got an answer or a close, within the deadlines; and sluice still serves.
    assert sum(statuses.values()) == 400
    assert statuses.get("HTTP/1.1 400", 0) > 100  # the parser did refuse most of them
    assert s.chat().status == 200
    assert s.request("GET", "/healthz", key=None).status == 200


def test_mutated_bodies_get_proper_answers(mock, start_sluice):
    """Valid framing, mutated JSON: every answer is a client error or a real
    answer from the upstream, never a crash or a 5xx of sluice's own."""
    from harness import base_conf
    s = start_sluice(base_conf(mock.url))
    rng = random.Random(7)
    body = json.dumps({"model": "gpt-4o", "max_tokens": 3, "stream": False,
                       "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}).encode()
    seen = {}
    c = s.conn()
    for _ in range(200):
        b = mutate(rng, body)
        try:
            r = s.request("POST", "/v1/chat/completions", b, conn=c)
        except Exception:  # the connection was closed: start a new one
            c.close()
            c = s.conn()
            continue
        seen[r.status] = seen.get(r.status, 0) + 1
        assert r.status in (200, 400, 403, 404, 413), (r.status, b, r.body)
        if r.status != 200:
            assert r.error()["message"]
    c.close()
    assert seen.get(400, 0) > 50 and sum(seen.values()) > 150
