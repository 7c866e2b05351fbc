"""sluice against nginx on the same machine, in the same run (docs/benchmarks.md).

Starts the C mock upstream, a redis-server, nginx as a plain reverse proxy
(1 worker, upstream keepalive), nginx with a Lua sliding-window limiter doing
one EVALSHA per request (when Debian's lua module is installed), and sluice
(Release) without limits and with Redis limits in all three dimensions. Runs
wrk against each for a bounded time, a 1-connection probe for added latency,
a streaming comparison, TLS (keep-alive, and a new handshake per request)
with the same certificate in nginx and sluice, Anthropic's Messages API
(an anthropic backend, and translated for an OpenAI one), JWT sign-in (a repeated token against an
API key, and the CPU of a first RS256 check), and 1,000
concurrent open streams for memory. All
loads run once per round (BENCH_ROUNDS, 5); it prints the medians, each
server's CPU per request, and the ratios to nginx taken within each round.
Loopback only; every load is bounded."""
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import harness  # noqa: E402  (the test harness: ports, processes)
from harness import free_port  # noqa: E402
BUILD = pathlib.Path(os.environ.get("SLUICE_BUILD", ROOT / "build-release")).resolve()
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = max(int(os.environ.get("BENCH_ROUNDS", "5")), 1)
CONNS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
STREAMS = int(os.environ.get("BENCH_STREAMS", "1000"))
KEY = "sk-bench-key-000001"
JWT_FIRST = int(os.environ.get("BENCH_JWT_TOKENS", "2000"))
LUA_MODULES = ["/usr/lib/nginx/modules/ndk_http_module.so", "/usr/lib/nginx/modules/ngx_http_lua_module.so"]

tmp = pathlib.Path(tempfile.mkdtemp(prefix="sluice-bench-"))
procs = []


def wait_port(port, timeout=10):
    harness.wait_port(port, procs[-1], timeout)


def start(cmd, port, env=None):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(tmp / f"{port}.log", "w"),
                         env=dict(os.environ, **(env or {})))
    procs.append(p)
    wait_port(port)
    return p


def cpu_ticks(pid):
    """User + system clock ticks of a process and its children (nginx's worker)."""
    total = 0
    try:
        stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total = int(stat[11]) + int(stat[12])
        for kid in open(f"/proc/{pid}/task/{pid}/children").read().split():
            total += cpu_ticks(int(kid))
    except OSError:
        pass
    return total


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wrk(port, script, conns=CONNS, seconds=DURATION, path="/v1/chat/completions", scheme="http"):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"{scheme}://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout

    def latency(pct):
        m = re.search(rf"\s{pct}%\s+([0-9.]+)(us|ms|s)\b", out)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1, "ms": 1000, "s": 1e6}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    p999 = re.search(r"^p99\.9_us (\d+)$", out, re.M)  # from the scripts' done() hook
    return {"rps": rps, "p50": latency(50), "p99": latency(99),
            "p999": float(p999.group(1)) if p999 else float("nan"),
            "non2xx": int(bad.group(1)) if bad else 0, "errors": errors.group(1) if errors else ""}


# wrk's --latency table stops at the 99th percentile: the 99.9th comes from here.
P999_HOOK = ('done = function(summary, latency, requests)\n'
             '  io.write(string.format("p99.9_us %d\\n", latency:percentile(99.9)))\nend\n')


def lua_script(name, body, extra_headers="", key=KEY):
    path = tmp / f"{name}.lua"
    path.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                    f'wrk.headers["Content-Type"] = "application/json"\n'
                    f'wrk.headers["Authorization"] = "Bearer {key}"\n{extra_headers}{P999_HOOK}')
    return path


class Idp:
    """An RS256 key made with openssl, its JWKS file, and tokens it signs (issue #32)."""

    def __init__(self):
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding
        key = tmp / "idp.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", str(key)], check=True, capture_output=True)
        self.key = serialization.load_pem_private_key(key.read_bytes(), None)
        self.hashes, self.padding = hashes, padding
        n = self.key.public_key().public_numbers()
        self.jwks = tmp / "jwks.json"
        self.jwks.write_text(json.dumps({"keys": [{"kty": "RSA", "kid": "bench", "alg": "RS256",
                                                   "n": self.b64(n.n.to_bytes(256, "big")),
                                                   "e": self.b64(n.e.to_bytes(3, "big"))}]}))

    @staticmethod
    def b64(data):
        import base64
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def token(self, sub):
        head = self.b64(json.dumps({"alg": "RS256", "kid": "bench"}).encode())
        body = self.b64(json.dumps({"sub": sub, "aud": "sluice", "exp": int(time.time()) + 86400}).encode())
        sig = self.key.sign(f"{head}.{body}".encode(), self.padding.PKCS1v15(), self.hashes.SHA256())
        return f"{head}.{body}.{self.b64(sig)}"


def cpu_ns(pid):
    """CPU time of every thread of a process, in ns (schedstat: finer than ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(open(f"/proc/{pid}/task/{task}/schedstat").read().split()[0])
        except OSError:
            pass
    return total


def first_checks(port, pid, tokens, repeat):
    """CPU per request (us) of len(tokens) requests in turn on one connection:
    each with a new token, or (repeat) each with the first one."""
    import http.client
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]})
    c = http.client.HTTPConnection("127.0.0.1", port)
    before = cpu_ns(pid)
    for t in tokens:
        c.request("POST", "/v1/chat/completions", body=body,
                  headers={"Authorization": f"Bearer {tokens[0] if repeat else t}",
                           "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
    c.close()
    return (cpu_ns(pid) - before) / 1e3 / len(tokens)


NGINX_LIMITER = r"""
local function cmd(sock, ...)
  local args = { ... }
  local parts = { "*" .. #args .. "\r\n" }
  for _, a in ipairs(args) do parts[#parts + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n" end
  sock:send(table.concat(parts))
  local line = sock:receive("*l")
  return line
end
local sock = ngx.socket.tcp()
sock:settimeout(100)
local ok = sock:connect("127.0.0.1", __REDIS_PORT__)
if not ok then return ngx.exit(503) end
local now = ngx.now()
local win = math.floor(now / 60)
-- sliding window counter: this minute's count + the previous minute's, weighted
local reply = cmd(sock, "EVALSHA", "__SHA__", "2", "rl:{k}:" .. win, "rl:{k}:" .. (win - 1),
                  tostring(1000000000), tostring((now % 60) / 60))
sock:setkeepalive(10000, 64)
if reply ~= ":1" then return ngx.exit(429) end
"""

WINDOW_SCRIPT = ("local cur = tonumber(redis.call('GET', KEYS[1]) or 0) "
                 "local prev = tonumber(redis.call('GET', KEYS[2]) or 0) "
                 "if prev * (1 - tonumber(ARGV[2])) + cur >= tonumber(ARGV[1]) then return 0 end "
                 "redis.call('INCR', KEYS[1]) redis.call('EXPIRE', KEYS[1], 120) return 1")


def make_cert():
    """A self-signed P-256 certificate for both servers' TLS listeners."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp / "tls.key"), "-out", str(tmp / "tls.pem"), "-days", "2",
                    "-subj", "/CN=localhost"], check=True, capture_output=True)
    return tmp / "tls.pem", tmp / "tls.key"


def nginx_conf(port, mock_port, limiter=None, tls=None):
    load = ""
    access = ""
    listen = f"listen 127.0.0.1:{port};"
    if tls:  # as sluice's: TLS 1.2/1.3, a shared session cache, tickets on
        listen = (f"listen 127.0.0.1:{port} ssl; ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]}; "
                  f"ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m;")
    if limiter:
        load = "".join(f"load_module {m};\n" for m in LUA_MODULES)
        access = "access_by_lua_block {" + limiter + "}"
    return f"""{load}
worker_processes 1;
daemon off;
pid {tmp}/nginx-{port}.pid;
error_log {tmp}/nginx-{port}.err warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  upstream mock {{ server 127.0.0.1:{mock_port}; keepalive 128; }}
  server {{
    {listen}
    location / {{
      {access}
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer upstream";
      proxy_buffering off;
    }}
  }}
}}
"""


def sluice_conf(port, mock_port, redis_port=None, limits=False, tls=None, backend=""):
    listen = f"127.0.0.1:{port} tls\ntls_cert = {tls[0]}\ntls_key = {tls[1]}" if tls else f"127.0.0.1:{port}"
    text = (f"[server]\nlisten = {listen}\naccess_log = off\n"
            f"[backend mock]\nurl = http://127.0.0.1:{mock_port}/v1\napi_key = upstream\n"
            f"forward_headers = x-mock-*\n{backend}"
            f"[key bench]\nkey = {KEY}\n")
    if limits:
        text += "rpm = 1000000000\ninput_tpm = 1000000000000\noutput_tpm = 1000000000000\n"
    if redis_port:
        text += f"[redis]\nurl = redis://127.0.0.1:{redis_port}/0\ntimeout = 500ms\n"
    path = tmp / f"sluice-{port}.conf"
    path.write_text(text)
    return path


def open_streams(port, n, hold_s):
    """n concurrent streaming requests held open; returns the sockets."""
    body = json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
           b"\r\nx-mock-chunk-delay-ms: 1000\r\nx-mock-completion-tokens: " + str(hold_s).encode() +
           b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(req)
        socks.append(s)
    return socks


def main():
    for tool in ("wrk", "nginx", "redis-server"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is not installed (scripts/bench.sh installs it)")
    mock_port, redis_port = free_port(), free_port()
    start([str(BUILD / "sluice-mock"), "--port", str(mock_port)], mock_port)
    start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
          redis_port)
    ports = {name: free_port() for name in ("nginx", "nginx_lua", "sluice", "sluice_redis", "nginx_tls",
                                            "sluice_tls", "sluice_held", "sluice_messages", "sluice_jwt")}
    (tmp / "nginx.conf").write_text(nginx_conf(ports["nginx"], mock_port))
    ngx = start(["nginx", "-c", str(tmp / "nginx.conf")], ports["nginx"])
    cert = make_cert()
    (tmp / "nginx-tls.conf").write_text(nginx_conf(ports["nginx_tls"], mock_port, tls=cert))
    ngx_tls = start(["nginx", "-c", str(tmp / "nginx-tls.conf")], ports["nginx_tls"])
    have_lua = all(os.path.exists(m) for m in LUA_MODULES)
    if have_lua:
        sha = subprocess.run(["redis-cli", "-p", str(redis_port), "SCRIPT", "LOAD", WINDOW_SCRIPT],
                             capture_output=True, text=True).stdout.strip()
        limiter = NGINX_LIMITER.replace("__REDIS_PORT__", str(redis_port)).replace("__SHA__", sha)
        (tmp / "nginx-lua.conf").write_text(nginx_conf(ports["nginx_lua"], mock_port, limiter))
        ngx_lua = start(["nginx", "-c", str(tmp / "nginx-lua.conf")], ports["nginx_lua"])
    sl = start([str(BUILD / "sluice"), "-c", str(sluice_conf(ports["sluice"], mock_port))], ports["sluice"])
    slr = start([str(BUILD / "sluice"), "-c", str(sluice_conf(ports["sluice_redis"], mock_port, redis_port, True))],
                ports["sluice_redis"])
    slt = start([str(BUILD / "sluice"), "-c", str(sluice_conf(ports["sluice_tls"], mock_port, tls=cert))],
                ports["sluice_tls"])
    # first_token_timeout on: each stream's head is held back until its first output (issue #29)
    start([str(BUILD / "sluice"), "-c", str(sluice_conf(ports["sluice_held"], mock_port,
                                                           backend="first_token_timeout = 10s\n"))],
          ports["sluice_held"])

    # Anthropic's Messages API (issue #31): served by an anthropic backend (the
    # mock speaks it), and translated for an OpenAI-compatible one
    anthropic = (f"models = gpt-4o\n[backend claude]\ntype = anthropic\n"
                 f"url = http://127.0.0.1:{mock_port}/v1\napi_key = upstream\nmodels = claude\n")
    sm = start([str(BUILD / "sluice"), "-c", str(sluice_conf(ports["sluice_messages"], mock_port,
                                                                backend=anthropic))],
               ports["sluice_messages"])
    # JWT sign-in (issue #32): the same sluice with [auth]; the key profile is the bench key
    idp = Idp()
    conf_jwt = sluice_conf(ports["sluice_jwt"], mock_port)
    conf_jwt.write_text(conf_jwt.read_text() + f"[auth]\njwks = {idp.jwks}\naudience = sluice\nkey_profile = bench\n")
    sj = start([str(BUILD / "sluice"), "-c", str(conf_jwt)], ports["sluice_jwt"])
    chat = lua_script("chat", '{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}')
    chat_jwt = lua_script("chat_jwt", '{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}',
                          key=idp.token("bench-user"))
    # the same size as chat's body, less the max_tokens the Messages API requires
    messages = lua_script("messages", '{"model":"claude","max_tokens":9,"messages":[{"role":"user","content":"hi"}]}',
                          'wrk.headers["anthropic-version"] = "2023-06-01"\n')
    messages_xl = lua_script("messages_xl", '{"model":"gpt-4o","max_tokens":9,"messages":[{"role":"user","content":"hi"}]}',
                             'wrk.headers["anthropic-version"] = "2023-06-01"\n')
    stream = lua_script("stream", '{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hello"}]}',
                        'wrk.headers["x-mock-completion-tokens"] = "20"\n')
    # A new connection, so a full TLS handshake, for every request.
    handshake = lua_script("handshake", '{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}',
                           'wrk.headers["Connection"] = "close"\n')
    hz = os.sysconf("SC_CLK_TCK")

    def run(port, script, pid=None, scheme="http", path="/v1/chat/completions", **kw):
        for _ in range(2):  # warm connections and caches
            subprocess.run(["wrk", "-t1", "-c4", "-d1s", "-s", str(script), f"{scheme}://127.0.0.1:{port}{path}"],
                           capture_output=True)
        before = cpu_ticks(pid) if pid else 0
        r = wrk(port, script, scheme=scheme, path=path, **kw)
        done = r["rps"] * DURATION
        r["cpu_us"] = (cpu_ticks(pid) - before) * 1e6 / hz / done if pid and done else float("nan")
        r["rss"] = rss_mb(pid) if pid else float("nan")
        return r

    # Each round runs every load once, in turn, so slow spells of the machine
    # hit all of them; ratios are taken within a round, then the median.
    loads = [("direct to mock", mock_port, chat, None),
             ("nginx proxy", ports["nginx"], chat, ngx.pid)]
    if have_lua:
        loads.append(("nginx + Lua limiter (EVALSHA)", ports["nginx_lua"], chat, ngx_lua.pid))
    loads += [("sluice, no limits", ports["sluice"], chat, sl.pid),
              ("sluice, Redis limits (3 dims)", ports["sluice_redis"], chat, slr.pid),
              ("nginx proxy, streaming (20 chunks)", ports["nginx"], stream, ngx.pid),
              ("sluice, streaming (20 chunks)", ports["sluice"], stream, sl.pid),
              ("nginx, TLS keep-alive", ports["nginx_tls"], chat, ngx_tls.pid, "https"),
              ("sluice, TLS keep-alive", ports["sluice_tls"], chat, slt.pid, "https"),
              ("nginx, TLS handshake per request", ports["nginx_tls"], handshake, ngx_tls.pid, "https"),
              ("sluice, TLS handshake per request", ports["sluice_tls"], handshake, slt.pid, "https"),
              ("sluice, Messages (anthropic backend)", ports["sluice_messages"], messages, sm.pid, "http",
               "/v1/messages"),
              ("sluice, Messages -> OpenAI backend", ports["sluice_messages"], messages_xl, sm.pid,
               "http", "/v1/messages"),
              ("sluice, API key (the JWT node)", ports["sluice_jwt"], chat, sj.pid),
              ("sluice, JWT (the same token again)", ports["sluice_jwt"], chat_jwt, sj.pid)]
    loads = [load + ("http", "/v1/chat/completions")[len(load) - 4:] for load in loads]
    probes = (("direct", mock_port, chat), ("nginx", ports["nginx"], chat), ("sluice", ports["sluice"], chat),
              ("sluice_redis", ports["sluice_redis"], chat), ("stream", ports["sluice"], stream),
              ("stream held", ports["sluice_held"], stream))
    rounds = []
    for n in range(ROUNDS):
        # every other round in reverse, so no load always follows the same one
        order = loads if n % 2 == 0 else loads[::-1]
        got = {name: run(port, script, pid, scheme, path) for name, port, script, pid, scheme, path in order}
        for name, port, script in probes:
            got["probe " + name] = wrk(port, script, conns=1, seconds=max(DURATION // 2, 3))
        rounds.append(got)

    def med(name, field):
        return median([r[name][field] for r in rounds])

    def spread(each):
        """(median, lowest, highest, every round's value in order)"""
        return median(each), min(each), max(each), each

    def ratio(name, base, field="rps"):
        return spread([r[name][field] / r[base][field] for r in rounds])

    def added(name):
        return spread([r["probe " + name]["p50"] - r["probe direct"]["p50"] for r in rounds])

    def over_nginx(name, field):
        """The 1-connection probe's field, sluice's minus nginx's, within each round."""
        return spread([r["probe " + name][field] - r["probe nginx"][field] for r in rounds])

    firsts = []
    for n in range(3):  # new tokens each time: a token checked once is cached
        tokens = [idp.token(f"user-{n}-{i}") for i in range(JWT_FIRST)]
        firsts.append((first_checks(ports["sluice_jwt"], sj.pid, tokens, True),
                       first_checks(ports["sluice_jwt"], sj.pid, tokens[1:] + [idp.token(f"x{n}")], False)))
    socks = open_streams(ports["sluice"], STREAMS, 20)
    time.sleep(3)
    open_rss = rss_mb(sl.pid)
    mock_inflight = json.loads(subprocess.run(["curl", "-s", f"http://127.0.0.1:{mock_port}/_mock/stats"],
                                              capture_output=True, text=True).stdout)["inflight"]
    for s in socks:
        s.close()

    print(f"\nsluice benchmark, {ROUNDS} rounds of {DURATION}s per load, wrk -t1 -c{CONNS}, small chat requests, "
          f"loopback, {os.cpu_count()} cores shared by all processes; medians of the rounds, ratios taken "
          f"within each round (range in brackets)\n")
    print(f"{'scenario':38} {'req/s':>7} {'p50':>7} {'p99':>7} {'p99.9':>7} {'CPU/req':>8} {'RSS MB':>6}  vs nginx")
    bases = {"streaming": "nginx proxy, streaming (20 chunks)", "TLS keep-alive": "nginx, TLS keep-alive",
             "TLS handshake": "nginx, TLS handshake per request"}
    for name, _, _, pid, _, _ in loads:
        base = next((b for k, b in bases.items() if k in name), "nginx proxy")
        mid, lo, hi, _ = ratio(name, base)
        bad = sum(r[name]["non2xx"] for r in rounds)
        note = f"  ({bad} non-2xx!)" if bad else ""
        cpu = f"{med(name, 'cpu_us'):.1f}us" if pid else "-"
        print(f"{name:38} {med(name, 'rps'):7.0f} {med(name, 'p50'):6.0f}u {med(name, 'p99'):6.0f}u "
              f"{med(name, 'p999'):6.0f}u "
              f"{cpu:>8} {med(name, 'rss'):6.1f}  {mid:.2f} [{lo:.2f}-{hi:.2f}]{note}")
    print("\n1-connection probe (p50 latency, us):")
    for name, _, _ in probes:
        print(f"  {name:14} p50 {med('probe ' + name, 'p50'):7.0f}  p99 {med('probe ' + name, 'p99'):7.0f}  "
              f"p99.9 {med('probe ' + name, 'p999'):7.0f}  "
              f"({med('probe ' + name, 'rps'):.0f} req/s)")
    by_nginx, by_sluice, by_redis = added("nginx"), added("sluice"), added("sluice_redis")
    print(f"  added by nginx: {by_nginx[0]:.0f} us; by sluice: {by_sluice[0]:.0f} us [{by_sluice[1]:.0f}-{by_sluice[2]:.0f}]; "
          f"by sluice with Redis limits: {by_redis[0]:.0f} us [{by_redis[1]:.0f}-{by_redis[2]:.0f}]")
    held = spread([r["probe stream held"]["p99"] - r["probe stream"]["p99"] for r in rounds])
    held50 = spread([r["probe stream held"]["p50"] - r["probe stream"]["p50"] for r in rounds])
    print(f"  a stream (20 chunks) with first_token_timeout on, added over off: p50 {held50[0]:.0f} us "
          f"[{held50[1]:.0f}-{held50[2]:.0f}], p99 {held[0]:.0f} us [{held[1]:.0f}-{held[2]:.0f}]")
    rep_cpu = median([f[0] for f in firsts])
    new_cpu = median([f[1] for f in firsts])
    print(f"\nJWT, {JWT_FIRST} requests in turn on one connection, 3 times: CPU per request "
          f"{rep_cpu:.1f} us with one token again and again, {new_cpu:.1f} us with a new RS256 token each "
          f"time: the first check of a token costs {new_cpu - rep_cpu:.1f} us")
    print(f"\n{STREAMS} concurrent open streams: sluice RSS {open_rss:.1f} MB "
          f"(mock saw {mock_inflight} in flight)")
    print("\ntargets (issue #19), medians of the ratios within each round:")
    cpu = ratio("sluice, no limits", "nginx proxy", "cpu_us")
    checks = [  # (what, (median, low, high), limit, the median must be at most the limit)
        ("CPU per request, no limits, <= 1.3x nginx's", cpu, 1.3, True),
        ("req/s, no limits, >= 0.85x nginx", ratio("sluice, no limits", "nginx proxy"), 0.85, False),
        ("req/s, Redis limits, >= 0.7x nginx", ratio("sluice, Redis limits (3 dims)", "nginx proxy"), 0.7, False),
        ("1 connection: p50 <= nginx's + 15 us", over_nginx("sluice", "p50"), 15, True),
        ("1 connection: p99 <= nginx's + 150 us", over_nginx("sluice", "p99"), 150, True),
        ("streaming >= 0.9x nginx SSE (issue #7)",
         ratio("sluice, streaming (20 chunks)", "nginx proxy, streaming (20 chunks)"), 0.9, False),
        ("1 connection, stream: first_token_timeout adds < 100 us at p99 (issue #29)", held, 100, True),
        ("CPU per request, Messages (anthropic backend) <= 1.05x chat's (issue #31; callgrind for less)",
         ratio("sluice, Messages (anthropic backend)", "sluice, no limits", "cpu_us"), 1.05, True),
        ("CPU per request, a repeated JWT <= 1.05x an API key's (issue #32)",
         ratio("sluice, JWT (the same token again)", "sluice, API key (the JWT node)", "cpu_us"), 1.05, True),
    ]
    for name, got, want, at_most in checks:
        ok = got[0] <= want if at_most else got[0] >= want
        print(f"  {'met ' if ok else 'MISS'} {name}: {got[0]:.2f} [{got[1]:.2f} to {got[2]:.2f}]; "
              f"rounds: {', '.join(f'{v:.2f}' for v in got[3])}")
    print(f"  {'met ' if open_rss < 50 else 'MISS'} RSS < 50 MB with {STREAMS} open streams (issue #7): {open_rss:.1f} MB")

if __name__ == "__main__":
    try:
        main()
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
