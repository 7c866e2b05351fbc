"""Redis as production runs it, started on free loopback ports by the tests
(and scripts/bench_fleet.py): a master with a replica watched by three
Sentinels, and a Redis Cluster made with redis-cli --cluster create."""
import subprocess
import time

from harness import Redis, free_port, resp_call, wait_port


# A replica's first sync at once (the default waits 5 s for more replicas).
FAST_SYNC = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]


def wait_for(what, check, timeout=20.0, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except (OSError, RuntimeError):
            pass
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def start_or_stop(topology, *args):
    """topology._start(*args), or, when it fails, nothing it started left running."""
    try:
        topology._start(*args)
    except BaseException:
        topology.stop()
        raise


class Sentinel:
    """A master, a replica and three sentinels (quorum 2) that fail the
    master over to the replica within about a second of its death. tls
    (harness.Redis's): every server and sentinel on TLS only, replication
    too; args (an ACL) and password (the test's own user, which the replica
    and the sentinels use too) as harness.Redis takes them."""

    def __init__(self, tmp, name="mymaster", down_after_ms=400, tls=None, args=(), password=None):
        self.name = name
        self.master = self.replica = None
        self.ports, self.procs = [], []
        self.tls, self.args, self.password = tls, list(args), password
        start_or_stop(self, tmp, name, down_after_ms)

    def ask(self, port, *args):
        """A command to the sentinel on port."""
        return resp_call(port, args, tls=self.tls)

    def _start(self, tmp, name, down_after_ms):
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "m").mkdir(exist_ok=True)
        (tmp / "r").mkdir(exist_ok=True)
        extra = [*FAST_SYNC, *self.args] + (["--tls-replication", "yes"] if self.tls else []) + \
            (["--masteruser", self.password[0], "--masterauth", self.password[1]]
             if self.password else [])
        self.master = Redis(tmp / "m", tls=self.tls, args=extra, password=self.password)
        self.replica = Redis(tmp / "r", tls=self.tls, password=self.password,
                             args=["--replicaof", "127.0.0.1", str(self.master.port), *extra])
        wait_for("the replica to sync",
                 lambda: "master_link_status:up" in self.replica.cli("INFO", "replication"))
        ports = [free_port() for _ in range(3)]
        ids = [f"{i + 1:040x}" for i in range(3)]
        for i, port in enumerate(ports):
            conf = tmp / f"sentinel-{i}.conf"
            # each knows its own id, the others and the replica from the start, rather than
            # after the hello messages of the next seconds
            known = "".join(f"sentinel known-sentinel {name} 127.0.0.1 {p} {ids[j]}\n"
                            for j, p in enumerate(ports) if j != i)
            tls = (f"port 0\ntls-port {port}\ntls-cert-file {self.tls['cert']}\n"
                   f"tls-key-file {self.tls['key']}\ntls-ca-cert-file {self.tls['ca']}\n"
                   f"tls-auth-clients no\ntls-replication yes\n") if self.tls else f"port {port}\n"
            auth = (f"sentinel auth-user {name} {self.password[0]}\n"
                    f"sentinel auth-pass {name} {self.password[1]}\n") if self.password else ""
            conf.write_text(
                f"{tls}bind 127.0.0.1\ndir {tmp}\nsentinel myid {ids[i]}\n"
                f"sentinel monitor {name} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
                f"sentinel failover-timeout {name} 2000\n"
                f"sentinel parallel-syncs {name} 1\n{known}"
                f"sentinel known-replica {name} 127.0.0.1 {self.replica.port}\n{auth}")
            proc = subprocess.Popen(["redis-server", str(conf), "--sentinel"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(proc)
            wait_port(port, proc)
            self.ports.append(port)
        # every sentinel knows the other two and the replica: a failover can be voted
        wait_for("the sentinels to find each other", lambda: all(
            len(self.ask(p, "SENTINEL", "SENTINELS", name)) == 2 and
            len(self.ask(p, "SENTINEL", "REPLICAS", name)) == 1 for p in self.ports))

    @property
    def url(self):
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"{'rediss' if self.tls else 'redis'}+sentinel://{hosts}/{self.name}/0"

    def master_port(self):
        return int(self.ask(self.ports[0], "SENTINEL", "get-master-addr-by-name", self.name)[1])

    def node(self, port):
        return self.master if self.master.port == port else self.replica

    def kill_master(self):
        """SIGKILL to the master; returns the old master's Redis object."""
        old = self.node(self.master_port())
        old.kill()
        return old

    def wait_failover(self, old_port, timeout=20):
        wait_for("the sentinels to promote the replica",
                 lambda: self.master_port() != old_port, timeout=timeout)
        return self.node(self.master_port())

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        for r in (self.master, self.replica):
            if r:
                r.stop()


class Cluster:
    """Three masters (with replicas=1 a replica each), slots spread by
    redis-cli --cluster create. tls (harness.Redis's): every node on TLS
    only, the cluster bus and replication too; args (an ACL) and password
    (the test's own user) as harness.Redis takes them."""

    def __init__(self, tmp, replicas=0, node_timeout_ms=1000, tls=None, args=(), password=None):
        self.nodes = []
        self.tls, self.args, self.password = tls, list(args), password
        start_or_stop(self, tmp, replicas, node_timeout_ms)

    def _start(self, tmp, replicas, node_timeout_ms):
        tmp.mkdir(parents=True, exist_ok=True)
        tls = ["--tls-cluster", "yes", "--tls-replication", "yes"] if self.tls else []
        auth = ["--masteruser", self.password[0], "--masterauth", self.password[1]] \
            if self.password else []
        for i in range(3 * (1 + replicas)):
            d = tmp / f"n{i}"
            d.mkdir(exist_ok=True)
            self.nodes.append(Redis(d, tls=self.tls, password=self.password,
                                    args=["--cluster-enabled", "yes", "--cluster-config-file",
                                          "nodes.conf", "--cluster-node-timeout",
                                          str(node_timeout_ms),
                                          # the bus on a free port of its own, not port + 10000
                                          "--cluster-port", str(free_port()), *FAST_SYNC, *tls,
                                          *auth, *self.args, "--logfile", str(d / "redis.log")]))
        cli = ["--tls", "--cacert", str(self.tls["ca"]), "--cert", str(self.tls["cert"]),
               "--key", str(self.tls["key"])] if self.tls else []
        if self.password:
            cli += ["--user", self.password[0], "--pass", self.password[1], "--no-auth-warning"]
        subprocess.run(["redis-cli", *cli, "--cluster", "create",
                        *[f"127.0.0.1:{n.port}" for n in self.nodes],
                        "--cluster-replicas", str(replicas), "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        self.wait_ok()
        if replicas:  # a replica that never synced cannot take over
            wait_for("the replicas to sync", lambda: all(
                "master_link_status:up" in n.cli("INFO", "replication") for n in self.nodes
                if "role:slave" in n.cli("INFO", "replication")))

    def wait_ok(self, timeout=30):
        wait_for("the cluster to be ok", lambda: all(
            "cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.nodes
            if n.proc.poll() is None), timeout=timeout)

    @property
    def url(self):
        return f"{'rediss' if self.tls else 'redis'}+cluster://" + \
            ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def masters(self):
        """{port: [slot ranges]} as the cluster now says."""
        for n in self.nodes:
            if n.proc.poll() is None:
                out = {}
                for r in n.call("CLUSTER", "SLOTS"):
                    out.setdefault(int(r[2][1]), []).append((r[0], r[1]))
                return out
        return {}

    def owner(self, key):
        """The port of the master that owns key's slot."""
        slot = self.slot(key)
        for port, ranges in self.masters().items():
            if any(a <= slot <= b for a, b in ranges):
                return port
        return None

    @staticmethod
    def slot(key):
        """Redis Cluster's slot of key: CRC16 (XModem) of its hash tag, mod 16384."""
        k = key.encode()
        a = k.find(b"{")
        if a >= 0:
            b = k.find(b"}", a + 1)
            if b > a + 1:
                k = k[a + 1:b]
        crc = 0
        for byte in k:
            crc ^= byte << 8
            for _ in range(8):
                crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
        return crc % 16384

    def node(self, port):
        return next(n for n in self.nodes if n.port == port)

    def keys(self, pattern="sluice:*"):
        """Every key on every live master."""
        out = []
        for port in self.masters():
            out += [k for k in self.node(port).cli("--scan", "--pattern", pattern).split("\n") if k]
        return out

    def migrate_slot(self, slot, dest_port):
        """Moves one slot with its keys to dest, as redis-cli --cluster
        reshard does: IMPORTING, MIGRATING, MIGRATE of each key, NODE."""
        src = self.node(self.owner_of_slot(slot))
        dst = self.node(dest_port)
        src_id = src.cli("CLUSTER", "MYID")
        dst_id = dst.cli("CLUSTER", "MYID")
        dst.cli("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.cli("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while True:
            keys = [k for k in src.cli("CLUSTER", "GETKEYSINSLOT", slot, 100).split("\n") if k]
            if not keys:
                break
            src.cli("MIGRATE", "127.0.0.1", dest_port, "", 0, 5000, "KEYS", *keys)
        # the new owner first, then the old, then the rest (as redis-cli does)
        for n in [dst, src] + [n for n in self.nodes if n not in (dst, src)]:
            if n.proc.poll() is None:
                n.cli("CLUSTER", "SETSLOT", slot, "NODE", dst_id)

    def owner_of_slot(self, slot):
        for port, ranges in self.masters().items():
            if any(a <= slot <= b for a, b in ranges):
                return port
        return None

    def stop(self):
        for n in self.nodes:
            n.stop()
