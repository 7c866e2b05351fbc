"""The integration harness, importable on its own (tests, benchmark scripts):
starts the C mock upstream, a private redis-server and the real sluice
binary on free loopback ports, talks HTTP and RESP to them, and stops them by
PID. conftest.py turns these into pytest fixtures; every sluice a fixture
started must exit 0 on SIGTERM with a clean sanitizer log."""
import http.client
import json
import os
import pathlib
import signal
import socket
import ssl
import struct
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("SLUICE_BUILD", ROOT / "build")).resolve()
SLUICE = BUILD / "sluice"
MOCK = BUILD / "sluice-mock"

CLIENT_KEY = "sk-test-client-key-0001"
# The mock's fault headers are not on sluice's allow-list: the test backends forward them.
MOCK_HEADERS = "forward_headers = x-mock-*"
OTHER_KEY = "sk-test-client-key-0002"
UPSTREAM_KEY = "upstream-secret-credential"

# Sanitizer builds: fail loudly, keep freed-memory quarantine small so RSS
# measurements mean something.
ENV = {k: v for k, v in os.environ.items()  # upstream calls go direct unless a test says otherwise
       if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
ENV.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1:quarantine_size_mb=8:malloc_context_size=8")
ENV.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} never opened")


def rss_kb(pid):
    """A process's resident memory in kB (VmRSS), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def sanitizer_errors(text):
    marks = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
    return [line for line in text.splitlines() if any(m in line for m in marks)]


class Mock:
    def __init__(self, tmp, api_key=UPSTREAM_KEY, port=None, models=None, tls=None, client_ca=None,
                 own_cert=None):
        """tls=(cert, key): an https upstream; client_ca: it requires client
        certificates, and own_cert=(cert, key) is the one the test presents."""
        self.port = port or free_port()
        self.log = tmp / f"mock-{self.port}.log"
        self.tls, self.own_cert = tls, own_cert
        cmd = [str(MOCK), "--port", str(self.port)]
        if tls:
            cmd += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        if client_ca:
            cmd += ["--tls-client-ca", str(client_ca)]
        if api_key:
            cmd += ["--api-key", api_key]
        if models:  # what its GET /v1/models lists
            cmd += ["--models", ",".join(models)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.log, "w"), env=ENV)
        wait_port(self.port, self.proc)

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v1"

    def _call(self, method, path, body=None):
        if self.tls:  # the test's own look at the mock: no need to check its certificate
            ctx = ssl._create_unverified_context()
            if self.own_cert:
                ctx.load_cert_chain(*map(str, self.own_cert))
            c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=ctx)
        else:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request(method, path, body=json.dumps(body) if body is not None else None)
        r = c.getresponse()
        data = json.loads(r.read())
        c.close()
        return data

    def stats(self):
        return self._call("GET", "/_mock/stats")

    def last(self):
        return self._call("GET", "/_mock/last")

    def configure(self, **faults):
        return self._call("POST", "/_mock/config", {k.replace("_", "-"): v for k, v in faults.items()})

    def reset(self):
        return self._call("POST", "/_mock/reset", {})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Redis:
    """A private redis-server on a free port, no persistence. tls: a dict of
    PEM paths (cert, key, ca) and "clients" (no | optional | yes): TLS only,
    no plain port. args: more server options (an ACL user, cluster mode)."""

    def __init__(self, tmp, port=None, tls=None, args=(), password=None):
        self.tmp = tmp
        self.port = port or free_port()
        self.tls = tls
        self.args = list(args)
        self.password = password  # what the test's own commands log in with
        self.start()

    def start(self):
        ports = ["--port", str(self.port)]
        if self.tls:
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls["cert"]),
                     "--tls-key-file", str(self.tls["key"]), "--tls-ca-cert-file", str(self.tls["ca"]),
                     "--tls-auth-clients", self.tls.get("clients", "no")]
        self.proc = subprocess.Popen(
            ["redis-server", *ports, "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp), "--enable-debug-command", "local",
             *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)

    @property
    def url(self):
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def cli(self, *args):
        tls = ["--tls", "--cacert", str(self.tls["ca"]), "--cert", str(self.tls["cert"]),
               "--key", str(self.tls["key"])] if self.tls else []
        auth = ["--user", self.password[0], "--pass", self.password[1], "--no-auth-warning"] \
            if self.password else []
        r = subprocess.run(["redis-cli", "-p", str(self.port), *tls, *auth, *map(str, args)],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip()

    def call(self, *args, binary=False):
        """One command over RESP; the reply as Python values (errors raise;
        bulk strings as bytes when binary)."""
        return resp_call(self.port, args, tls=self.tls, password=self.password, binary=binary)

    def windows(self, name):
        """A scope's three windows (requests, input, output) as lua/limits.lua
        packs them into one string: {"total": [3], "newest": [3], "oldest",
        "newest_written", "buckets": {bucket: [3]} for the buckets counted};
        None when there is no such key."""
        return unpack_windows(self.call("GET", name, binary=True))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# What runs lua/limits.lua: FCALL (the library), or EVALSHA and EVAL (a Redis without functions).
SCRIPT_COMMANDS = ("fcall", "evalsha", "eval")


def commandstats(info):
    """INFO's commandstats lines: {command: {"calls": n, "usec": t}}
    (subcommands as Redis 7 names them, "config|resetstat")."""
    out = {}
    for line in info.splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            fields = dict(kv.split("=") for kv in rest.strip().split(","))
            out[name] = {"calls": int(fields["calls"]), "usec": float(fields["usec"])}
    return out


def unpack_windows(raw):
    """lua/limits.lua's layout: a header of 12 doubles (totals, newest per
    window, oldest counted, newest written n, bucket n's amounts, ring size),
    then the ring of the buckets before n (missing slots are zero)."""
    if raw is None:
        return None
    head = struct.unpack_from("<12d", raw)
    span, oldest, newest = int(head[11]), int(head[6]), int(head[7])

    def ring(b):
        off = 96 + (b % span) * 24
        return [int(v) for v in struct.unpack_from("<3d", raw, off)] if off + 24 <= len(raw) \
            else [0, 0, 0]
    buckets = {b: ring(b) for b in range(oldest, newest)}
    if newest >= oldest:
        buckets[newest] = [int(v) for v in head[8:11]]
    return {"total": [int(v) for v in head[:3]], "newest": [int(v) for v in head[3:6]],
            "oldest": oldest, "newest_written": newest, "buckets": buckets}


def resp_call(port, args, tls=None, password=None, timeout=10, binary=False):
    """One command (after AUTH when password = (user, pass)) over RESP to
    127.0.0.1:port; the reply as Python values (errors raise)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        import ssl
        ctx = ssl.create_default_context(cafile=str(tls["ca"]))
        ctx.load_cert_chain(str(tls["cert"]), str(tls["key"]))
        s = ctx.wrap_socket(s, server_hostname="localhost")
    with s:
        f = s.makefile("rb")
        for cmd in ([("AUTH", *password)] if password else []) + [args]:
            out = b"*%d\r\n" % len(cmd)
            for a in cmd:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            reply = resp_read(f, binary)
        return reply


def resp_read(f, binary=False):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data if binary else data.decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [resp_read(f, binary) for _ in range(n)]
    raise RuntimeError(f"bad RESP line {line!r}")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body)

    def error(self):
        return self.json()["error"]


class Sluice:
    def __init__(self, tmp, conf, extra_env=None, extra_args=()):
        self.port = free_port()
        self.conf = tmp / f"sluice-{self.port}.conf"
        self.conf.write_text(conf.replace("{port}", str(self.port)))
        self.log = tmp / f"sluice-{self.port}.log"
        env = dict(ENV)
        env.update(extra_env or {})
        self.proc = subprocess.Popen([str(SLUICE), "-c", str(self.conf), *extra_args], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"), env=env)
        wait_port(self.port, self.proc)

    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, key=CLIENT_KEY, conn=None):
        h = {"Content-Type": "application/json"}
        if key:
            h["Authorization"] = f"Bearer {key}"
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        c = conn or self.conn()
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        resp = Response(r.status, r.getheaders(), r.read())
        if conn is None:
            c.close()
        return resp

    def chat(self, body=None, **kw):
        body = body or {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
        return self.request("POST", "/v1/chat/completions", body, **kw)

    def stream(self, headers=None, body=None, timeout=30, path="/v1/chat/completions"):
        """A streamed request (chat by default): (connection, response), the body not read yet."""
        c = self.conn(timeout=timeout)
        h = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}
        h.update(headers or {})
        body = body or {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        c.request("POST", path, body=json.dumps(body), headers=h)
        return c, c.getresponse()

    def stream_events(self, headers=None, body=None):
        """A streamed chat request read to its end: (status, its SSE events as text)."""
        c, r = self.stream(headers, body)
        text = r.read().decode()
        c.close()
        return r.status, [e for e in text.split("\n\n") if e.strip()]

    def raw(self, data, read_timeout=5.0):
        """Sends raw bytes; returns everything read until the server closes or the timeout."""
        s = socket.create_connection(("127.0.0.1", self.port))
        s.settimeout(read_timeout)
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
        s.close()
        return out

    def log_text(self):
        return self.log.read_text()

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("sluice did not stop on SIGTERM")
        return self.proc.returncode


def base_conf(mock_url, extra_server="", extra_backend="", extra="", key_extra=""):
    return f"""
[server]
listen = 127.0.0.1:{{port}}
{extra_server}

[backend main]
url = {mock_url}
api_key = {UPSTREAM_KEY}
{MOCK_HEADERS}
{extra_backend}

[key team-a]
key = {CLIENT_KEY}
{key_extra}

[key team-b]
key = {OTHER_KEY}
models = gpt-4o-mini
{extra}
"""
