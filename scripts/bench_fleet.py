"""A fleet on one machine: N sluice nodes sharing a 3-master Redis Cluster
(redis-cli --cluster create on loopback ports), every request rate-limited
(rpm, input and output tokens per minute) on one of BENCH_KEYS keys spread
over the shards by their hash tags. Prints the limited requests per second
the fleet served and, per shard, its keys, the script calls and the Redis
CPU it spent per request (INFO's used_cpu_user + used_cpu_sys, so the whole
server's work: networking as well as the scripts). A real cluster's
capacity is read off it: each shard saturates at about 1 s / (CPU per
request) requests per second, times the shards. Bounded: a fixed number of
requests. BENCH_NODES (2), BENCH_KEYS (30), BENCH_REQUESTS (6000),
BENCH_THREADS (16)."""
import os
import pathlib
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
os.environ.setdefault("SLUICE_BUILD", str(ROOT / "build-release"))

import harness  # noqa: E402
from harness import CLIENT_KEY, Mock, Sluice  # noqa: E402
from redis_topo import Cluster  # noqa: E402

NODES = int(os.environ.get("BENCH_NODES", "2"))
KEYS = int(os.environ.get("BENCH_KEYS", "30"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "6000"))
THREADS = int(os.environ.get("BENCH_THREADS", "16"))


def config(mock, cluster):
    keys = "".join(f"\n[key k{i}]\nkey = {CLIENT_KEY}-{i:04d}\nrpm = 1000000\n"
                   f"input_tpm = 100000000\noutput_tpm = 100000000\n" for i in range(KEYS))
    return (f"[server]\nlisten = 127.0.0.1:{{port}}\naccess_log = off\n"
            f"[backend mock]\nurl = {mock.url}\napi_key = {harness.UPSTREAM_KEY}\n"
            f"[redis]\nurl = {cluster.url}\ntimeout = 500ms\n{keys}")


def shard_stats(cluster):
    out = {}
    for port in cluster.masters():
        info = cluster.node(port).cli("INFO", "all")
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        stats = harness.commandstats(info)
        calls = sum(stats[c]["calls"] for c in harness.SCRIPT_COMMANDS if c in stats)
        cpu = float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])
        out[port] = (calls, cpu)
    return out


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="sluice-fleet-"))
    cluster = Cluster(tmp / "cluster")
    mock = Mock(tmp)
    nodes = []
    try:
        nodes = [Sluice(tmp, config(mock, cluster)) for _ in range(NODES)]
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there, how are you?"}]}
        for n in nodes:
            for i in range(KEYS):  # scripts loaded, every node's connections to every shard up
                n.chat(body, key=f"{CLIENT_KEY}-{i:04d}")
        owners = {}
        for i in range(KEYS):
            owners.setdefault(cluster.owner(f"{{k{i}}}"), []).append(i)
        before = shard_stats(cluster)

        def worker(t):
            conn = nodes[t % NODES].conn()
            ok = 0
            for i in range(t, REQUESTS, THREADS):
                ok += nodes[t % NODES].chat(body, key=f"{CLIENT_KEY}-{i % KEYS:04d}",
                                            conn=conn).status == 200
            conn.close()
            return ok

        start = time.time()
        with ThreadPoolExecutor(THREADS) as pool:
            ok = sum(pool.map(worker, range(THREADS)))
        elapsed = time.time() - start
        time.sleep(0.3)  # the last settlements
        after = shard_stats(cluster)
        print(f"fleet: {NODES} sluice nodes, a 3-master Redis Cluster, {KEYS} keys, "
              f"{THREADS} client connections")
        print(f"limited requests         {ok} of {REQUESTS} in {elapsed:.1f}s: {ok / elapsed:.0f} req/s")
        total_cpu = 0.0
        for port in sorted(after):
            calls = after[port][0] - before[port][0]
            cpu = after[port][1] - before[port][1]
            total_cpu += cpu
            served = sum(1 for i in range(REQUESTS) if i % KEYS in owners.get(port, [])
                         ) * ok / max(REQUESTS, 1)
            per_req = cpu * 1e6 / max(served, 1)
            print(f"shard 127.0.0.1:{port}  keys {len(owners.get(port, [])):3d}  "
                  f"requests {served:6.0f}  script calls {calls:6d}  "
                  f"Redis CPU {per_req:6.1f} us/request  "
                  f"-> one core saturates near {1e6 / max(per_req, 1):,.0f} req/s")
        print(f"all shards               {total_cpu * 1e6 / max(ok, 1):.1f} us of Redis CPU per request")
    finally:
        for n in nodes:
            n.stop()
        mock.stop()
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
