"""Redis as production runs it: rediss:// (TLS, the server's certificate and
name checked, mutual TLS) with an ACL user, Sentinel (the master found
through the sentinels, followed when it fails over) and Cluster, each plain
and on TLS. Every server is a real
redis-server (or redis-server --sentinel) started here on loopback ports."""
import subprocess
import time

import pytest

from harness import ENV, SLUICE, Redis
from redis_topo import Sentinel, wait_for
from test_limits import EIGHT, burst, limited_conf
from test_tls import Pki

# the ACL docs/limits.md gives sluice's user
ACL = ["--user", "default", "off", "--user", "sluice", "on", ">s3cret-pass", "~sluice:*",
       "&sluice:*", "+@all", "-@dangerous", "+role", "+cluster|slots",
       "--user", "admin", "on", ">admin-pass", "~*", "&*", "+@all"]
ADMIN = ("admin", "admin-pass")  # the test's own look at the server


@pytest.fixture
def pki(tmp):
    return Pki(tmp / "pki")


@pytest.fixture
def tls_redis(tmp, pki):
    """Makes TLS redis-servers with the ACL users; each is stopped at the end, passed or not."""
    started = []

    def make(clients="no", cert="redis", san=None):
        c, k = pki.cert(cert, san=san)
        r = Redis(tmp, tls={"cert": c, "key": k, "ca": pki.d / "ca.pem", "clients": clients},
                  args=ACL, password=ADMIN)
        started.append(r)
        return r
    yield make
    for r in started:
        r.stop()


def server_tls(pki):
    """A TLS-only topology's files: the servers' certificate, the test's CA."""
    cert, key = pki.cert("redis")
    return {"cert": cert, "key": key, "ca": pki.d / "ca.pem"}


def acl_conf(mock, pki, url, limits, timeout, on_error):
    """limits, counted at url (a rediss+ topology) as the ACL user, trusting the test's CA."""
    return limited_conf(mock, limits) + (
        f"\n[redis]\nurl = {url.replace('://', '://sluice:s3cret-pass@', 1)}\n"
        f"ca_file = {pki.path('ca.pem')}\ntimeout = {timeout}\non_error = {on_error}\n")


def up(s):
    """s once its Redis connection is up (a TLS handshake takes a few ms after the start)."""
    wait_for("redis connected", lambda: "connected" in s.log_text(), timeout=10)
    return s


def rediss_conf(mock, redis, limits="rpm = 5", host="127.0.0.1", extra="", on_error="deny",
                creds="sluice:s3cret-pass@"):
    conf = limited_conf(mock, limits)
    return conf + (f"\n[redis]\nurl = rediss://{creds}{host}:{redis.port}/0\ntimeout = 500ms\n"
                   f"on_error = {on_error}\n{extra}")


def test_rediss_with_an_acl_user_counts_exactly_across_nodes(mock, pki, tls_redis, start_sluice):
    """Two nodes, one by IP (the certificate's IP name checked), one by
    host name (SNI and the DNS name checked), as the ACL user: rpm = 5 holds
    exactly for 12 concurrent requests, and the counters are in Redis."""
    redis = tls_redis()
    ca = f"ca_file = {pki.path('ca.pem')}\n"
    a = up(start_sluice(rediss_conf(mock, redis, extra=ca)))
    b = up(start_sluice(rediss_conf(mock, redis, host="localhost", extra=ca)))
    statuses = burst([a, b], 12)
    assert statuses.count(200) == 5 and statuses.count(429) == 7
    assert mock.stats()["requests"] == 5
    assert any(k.startswith("sluice:{team-a}") for k in redis.cli("--scan").split("\n"))
    clients = redis.cli("CLIENT", "LIST")
    assert "user=sluice" in clients and "user=default" not in clients
    assert "cmd=fcall" in clients or "cmd=time" in clients
    for s in (a, b):
        assert "connected" in s.log_text()
        assert "no functions" not in s.log_text()  # the documented ACL allows the library
        assert "s3cret-pass" not in s.log_text()
    redis.stop()


def test_rediss_refuses_a_server_it_cannot_verify(mock, pki, tls_redis, start_sluice):
    """A CA that did not sign the server's certificate, or a certificate for
    another name: no connection (on_error = deny: 503), the reason logged.
    tls_verify = no encrypts without checking."""
    redis = tls_redis()
    wrong_ca = start_sluice(rediss_conf(mock, redis, extra=f"ca_file = {pki.path('other-ca.pem')}\n"))
    assert wrong_ca.chat(EIGHT).status == 503
    wait_for("the log", lambda: "TLS handshake failed" in wrong_ca.log_text())
    assert "certificate" in wrong_ca.log_text()
    redis.stop()
    # a certificate the CA signed, for another name than the one connected to
    redis = tls_redis(cert="elsewhere", san="DNS:redis.example")
    for host in ("127.0.0.1", "localhost"):
        other_name = start_sluice(rediss_conf(mock, redis, host=host,
                                              extra=f"ca_file = {pki.path('ca.pem')}\n"))
        assert other_name.chat(EIGHT).status == 503
        wait_for("the log", lambda: "TLS handshake failed" in other_name.log_text())
        assert "mismatch" in other_name.log_text()
    unchecked = up(start_sluice(rediss_conf(mock, redis, extra="tls_verify = no\n")))
    assert unchecked.chat(EIGHT).status == 200
    redis.stop()


def test_rediss_mutual_tls_and_a_wrong_password(mock, pki, tls_redis, start_sluice):
    redis = tls_redis(clients="yes")
    ca = f"ca_file = {pki.path('ca.pem')}\n"
    no_cert = start_sluice(rediss_conf(mock, redis, extra=ca))
    assert no_cert.chat(EIGHT).status == 503
    cert, key = pki.cert("sluice-client")
    mtls = f"{ca}client_cert = {cert}\nclient_key = {key}\n"
    with_cert = up(start_sluice(rediss_conf(mock, redis, extra=mtls)))
    assert [with_cert.chat(EIGHT).status for _ in range(6)] == [200] * 5 + [429]
    wrong = start_sluice(rediss_conf(mock, redis, extra=mtls, creds="sluice:not-the-pass@"))
    assert wrong.chat(EIGHT).status == 503
    wait_for("the log", lambda: "authentication refused" in wrong.log_text())
    assert "not-the-pass" not in wrong.log_text()
    redis.stop()


def test_rediss_reconnects_after_a_restart(mock, pki, tls_redis, start_sluice):
    redis = tls_redis()
    s = up(start_sluice(rediss_conf(mock, redis, limits="rpm = 100",
                                    extra=f"ca_file = {pki.path('ca.pem')}\n")))
    assert s.chat(EIGHT).status == 200
    redis.stop()
    assert s.chat(EIGHT).status == 503
    redis.start()
    wait_for("sluice back on Redis", lambda: s.chat(EIGHT).status == 200, timeout=10)
    assert s.log_text().count("unreachable") == 1
    redis.stop()


def test_redis_tls_options_are_checked_at_load(tmp, pki):
    def check(redis_section):
        conf = tmp / "t.conf"
        conf.write_text("[server]\nlisten = 127.0.0.1:1\n[backend b]\nurl = http://127.0.0.1:2/v1\n"
                        "api_key = k\n[redis]\n" + redis_section)
        r = subprocess.run([SLUICE, "-t", "-c", str(conf)], capture_output=True, text=True, env=ENV)
        return r.returncode, r.stderr
    rc, err = check(f"url = rediss://127.0.0.1:6380\nca_file = {tmp}/missing.pem\n")
    assert rc != 0 and "missing.pem" in err
    rc, err = check(f"url = redis://127.0.0.1:6380\nca_file = {pki.path('ca.pem')}\n")
    assert rc != 0 and "rediss://" in err
    cert, key = pki.cert("c")
    rc, err = check(f"url = rediss://127.0.0.1:6380\nclient_cert = {cert}\n")
    assert rc != 0 and "client_key" in err
    rc, err = check(f"url = rediss://127.0.0.1:6380\nca_file = {pki.path('ca.pem')}\n"
                    f"client_cert = {cert}\nclient_key = {pki.d / 'other-ca.key'}\n")
    assert rc != 0 and "client_key" in err and "mismatch" in err
    rc, err = check(f"url = rediss://127.0.0.1:6380\nca_file = {pki.path('ca.pem')}\n"
                    f"client_cert = {cert}\nclient_key = {key}\n")
    assert rc == 0, err
    rc, err = check("url = redis+sentinel://127.0.0.1:26379\n")
    assert rc != 0 and "master" in err
    rc, err = check("url = redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/0\n")
    assert rc == 0, err


# ---- Sentinel ----------------------------------------------------------------------


@pytest.fixture
def sentinel(tmp):
    s = Sentinel(tmp / "sentinel")
    yield s
    s.stop()


def caught_up(master, replica):
    """The replica has everything the master has written (its replication offset)."""
    def field(node, name):
        info = node.cli("INFO", "replication")
        return next(line.split(":")[1] for line in info.splitlines() if line.startswith(name + ":"))
    return int(field(master, "master_repl_offset")) == int(field(replica, "slave_repl_offset"))


def sentinel_conf(mock, sentinel, limits, on_error="local"):
    return limited_conf(mock, limits) + (f"\n[redis]\nurl = {sentinel.url}\ntimeout = 200ms\n"
                                         f"on_error = {on_error}\n")


def test_sentinel_finds_the_master_and_never_writes_to_the_replica(mock, sentinel, start_sluice):
    s = up(start_sluice(sentinel_conf(mock, sentinel, "rpm = 4")))
    assert [s.chat(EIGHT).status for _ in range(5)] == [200] * 4 + [429]
    assert any(k.startswith("sluice:{team-a}") for k in sentinel.master.cli("--scan").split("\n"))
    assert "connected" in s.log_text() and str(sentinel.master.port) in s.log_text()
    # the replica has the counters only by replication, and no client of sluice's
    clients = sentinel.replica.cli("CLIENT", "LIST")
    assert "cmd=fcall" not in clients and "cmd=evalsha" not in clients


def test_sentinel_failover_is_followed_and_the_outage_rules_hold(mock, sentinel, start_sluice):
    """rpm = 10: 4 admitted on the master, which is then killed. While the
    sentinels fail over, the node's local window starts from Redis's 4; once
    the replica is promoted sluice moves to it by itself (+switch-master),
    and no more than 10 pass in the window in all."""
    s = up(start_sluice(sentinel_conf(mock, sentinel, "rpm = 10")))
    assert [s.chat(EIGHT).status for _ in range(4)] == [200] * 4
    # the replica has the 4 (replication is asynchronous: what a master acknowledged just
    # before it died may be lost, and then a new master counts less)
    wait_for("the replica to have the 4", lambda: caught_up(sentinel.master, sentinel.replica))
    old = sentinel.kill_master()
    statuses = []
    deadline = time.time() + 20
    while time.time() < deadline and "master moved" not in s.log_text():
        statuses.append(s.chat(EIGHT).status)
        time.sleep(0.05)
    new = sentinel.wait_failover(old.port)
    assert "master moved" in s.log_text() and f":{new.port}" in s.log_text()
    for _ in range(10):
        statuses.append(s.chat(EIGHT).status)
    assert statuses.count(200) == 6, statuses  # 4 + 6 = 10 in the window
    assert mock.stats()["requests"] == 10
    # the new master counts them: Redis decides again
    assert any(k.startswith("sluice:{team-a}") for k in new.cli("--scan").split("\n"))


def test_rediss_sentinel_with_an_acl_user_follows_a_failover(mock, tmp, pki, start_sluice):
    """rediss+sentinel://: the master, its replica and the three sentinels on
    TLS only (replication too), the data nodes with the ACL user. sluice
    finds the master through the sentinels over TLS, follows the failover
    when the master is killed, and rpm = 6 holds across it."""
    sen = Sentinel(tmp / "tls-sentinel", tls=server_tls(pki), args=ACL, password=ADMIN)
    try:
        assert sen.url.startswith("rediss+sentinel://")
        s = up(start_sluice(acl_conf(mock, pki, sen.url, "rpm = 6", "200ms", "local")))
        assert [s.chat(EIGHT).status for _ in range(3)] == [200] * 3
        assert "user=sluice" in sen.master.cli("CLIENT", "LIST")
        time.sleep(0.1)  # the last settlement is written
        wait_for("the replica to have the 3", lambda: caught_up(sen.master, sen.replica))
        old = sen.kill_master()
        new = sen.wait_failover(old.port)
        wait_for("sluice to move", lambda: "master moved" in s.log_text(), timeout=20)
        assert f":{new.port}" in s.log_text()
        assert [s.chat(EIGHT).status for _ in range(5)] == [200] * 3 + [429] * 2  # 3 + 3 = 6
        assert mock.stats()["requests"] == 6
        assert new.call("EXISTS", "sluice:{team-a}:w") == 1  # Redis decides again
        assert "s3cret-pass" not in s.log_text() and "no functions" not in s.log_text()
    finally:
        sen.stop()


# ---- Cluster -----------------------------------------------------------------------


def cluster_conf(mock, cluster, limits, team=None, on_error="local"):
    conf = limited_conf(mock, limits)
    if team:
        conf += f"\n[team {team}]\n"
        conf = conf.replace("[key team-a]", f"[key team-a]\nteam = {team}", 1)
    return conf + f"\n[redis]\nurl = {cluster.url}\ntimeout = 300ms\non_error = {on_error}\n"


def degraded(s):
    from test_operations import scrape, value
    return value(scrape(s), "sluice_limiter_degraded_total")


def test_cluster_keeps_each_admission_in_one_slot(mock, cluster, start_sluice):
    """A key's counters use its team's hash tag, its users' too: each call is
    one slot, on the master that owns it."""
    s = start_sluice(cluster_conf(mock, cluster, "rpm = 50\ninput_tpm = 10000\nuser_rpm = 5\n"
                                                 "trust_user = header", team="platform"))
    for user in ("ann", "bob"):
        assert s.chat(EIGHT, headers={"x-sluice-user": user}).status == 200
    keys = [k for k in cluster.keys() if not k.startswith("sluice:{rk}:")]  # not the key-use records
    # the key's windows (w) and each user's (u3:ann:w, u3:bob:w) under the team's tag
    assert len(keys) == 3 and all(k.startswith("sluice:{platform}:k:team-a:") for k in keys), keys
    assert len({cluster.slot(k) for k in keys}) == 1
    owner = cluster.owner("{platform}")
    on_owner = cluster.node(owner).cli("--scan", "--pattern", "sluice:{platform}*").split("\n")
    assert sorted(on_owner) == sorted(keys)
    assert degraded(s) == 0


def test_rediss_cluster_with_an_acl_user_counts_exactly(mock, tmp, pki, start_sluice):
    """rediss+cluster:// (a managed service in cluster mode with encryption in
    transit): three masters on TLS only (the cluster bus too) with the ACL
    user; two nodes share rpm 5 exactly, the key's windows on the master that
    owns its slot, the script run as a function."""
    from redis_topo import Cluster
    c = Cluster(tmp / "tls-cluster", tls=server_tls(pki), args=ACL, password=ADMIN)
    try:
        assert c.url.startswith("rediss+cluster://")
        conf = acl_conf(mock, pki, c.url, "rpm = 5", "500ms", "deny")
        nodes = [up(start_sluice(conf)) for _ in range(2)]
        statuses = burst(nodes, 12)
        assert statuses.count(200) == 5 and statuses.count(429) == 7
        assert mock.stats()["requests"] == 5
        owner = c.owner("{team-a}")
        assert c.node(owner).call("EXISTS", "sluice:{team-a}:w") == 1
        assert "cmd=fcall" in c.node(owner).cli("CLIENT", "LIST") or \
            "cmd=time" in c.node(owner).cli("CLIENT", "LIST")
        for s in nodes:
            assert "no functions" not in s.log_text() and "s3cret-pass" not in s.log_text()
            assert "script error" not in s.log_text()
    finally:
        c.stop()


def redis_calls(s, result):
    from test_operations import scrape, value
    return value(scrape(s), "sluice_redis_calls_total", result=result)


def test_cluster_follows_a_slot_migration_during_traffic(mock, cluster, start_sluice):
    """rpm = 40 on two nodes; the key's slot moves to another master while
    requests flow (TRYAGAIN and ASK while it moves, MOVED after): Redis
    decides every one of them, and exactly 40 pass."""
    import threading
    nodes = [start_sluice(cluster_conf(mock, cluster, "rpm = 40")) for _ in range(2)]
    slot = cluster.slot("{team-a}")
    src = cluster.owner_of_slot(slot)
    dest = next(p for p in cluster.masters() if p != src)
    statuses = [nodes[i % 2].chat(EIGHT).status for i in range(10)]
    mover = threading.Thread(target=cluster.migrate_slot, args=(slot, dest))
    mover.start()
    while mover.is_alive() and len(statuses) < 30:
        statuses.append(nodes[len(statuses) % 2].chat(EIGHT).status)
        time.sleep(0.002)
    mover.join()
    assert cluster.owner_of_slot(slot) == dest
    statuses += [nodes[i % 2].chat(EIGHT).status for i in range(30)]
    assert statuses.count(200) == 40, statuses
    assert mock.stats()["requests"] == 40
    assert any("{team-a}" in k for k in cluster.node(dest).cli("--scan").split("\n"))
    assert not any("{team-a}" in k for k in cluster.node(src).cli("--scan").split("\n"))
    # each node's first call after the move was redirected, and none fell back
    assert all(redis_calls(n, "moved") >= 1 for n in nodes)
    assert all(degraded(n) == 0 for n in nodes)
    assert all("script error" not in n.log_text() for n in nodes)


def test_cluster_master_failover_during_traffic(mock, tmp, start_sluice):
    """Three masters with a replica each. The master of the key's slot is
    killed during traffic: while its replica takes over, the outage rules
    hold (the local window starts from Redis's count); sluice finds the new
    master in the slot map by itself, carries what it admitted meanwhile,
    and no more than rpm pass in the window."""
    from redis_topo import Cluster
    c = Cluster(tmp / "ha", replicas=1)
    try:
        s = up(start_sluice(cluster_conf(mock, c, "rpm = 20")))
        statuses = [s.chat(EIGHT).status for _ in range(5)]
        victim = c.node(c.owner("{team-a}"))
        replica = next(n for n in c.nodes if n is not victim and
                       f"master_port:{victim.port}" in n.cli("INFO", "replication"))
        wait_for("the replica to have the 5", lambda: caught_up(victim, replica))
        victim.kill()
        deadline = time.time() + 30
        decided_by_redis = 0
        while time.time() < deadline and decided_by_redis < 3:
            before = degraded(s)
            statuses.append(s.chat(EIGHT).status)
            decided_by_redis = decided_by_redis + 1 if degraded(s) == before else 0
            time.sleep(0.05)
        assert decided_by_redis == 3, "sluice did not return to Redis"
        new_owner = c.owner("{team-a}")
        assert new_owner and new_owner != victim.port
        statuses += [s.chat(EIGHT).status for _ in range(10)]
        assert degraded(s) > 0  # the outage was real
        assert statuses.count(200) == 20, statuses
        assert mock.stats()["requests"] == 20
        assert any("{team-a}" in k for k in c.node(new_owner).cli("--scan").split("\n"))
        assert "carrying" in s.log_text()
    finally:
        c.stop()


def test_cluster_keeps_runtime_keys_and_stored_resources_shared(mock, cluster, start_sluice, tmp):
    """What else sluice keeps in Redis works on a cluster: a runtime key made
    on one node is used on another (its records under the {rk} tag, its
    scripts routed by it), and a file's owner record (each id in its own
    slot, so a list's records are read one by one) is seen by every node."""
    import test_resources as res
    import test_runtime_keys as rk
    a, b = (start_sluice(rk.conf(mock.url, None, tmp / f"audit{i}.jsonl", redis=cluster.url))
            for i in range(2))
    secret = rk.make(a, "roamer")["key"]
    assert rk.chat(b, secret).status == 200
    assert rk.admin(b, "GET", "/admin/keys/roamer").json()["source"] == "runtime"
    assert rk.admin(a, "DELETE", "/admin/keys/roamer").status == 200
    t0 = time.monotonic()
    while rk.chat(b, secret).status == 200:
        assert time.monotonic() - t0 < 1.5, "the revocation did not reach the other node"
        time.sleep(0.02)
    assert all(k.startswith("sluice:{rk}:") for k in cluster.keys("sluice:{rk}*"))
    one, two = start_sluice(res.conf(mock, cluster)), start_sluice(res.conf(mock, cluster))
    files = [res.make_file(one) for _ in range(4)]
    slots = {cluster.slot(f"{{{f}}}") for f in files}
    assert len(slots) > 1  # the records are on several slots
    assert two.request("GET", f"/v1/files/{files[0]}").status == 200
    assert two.request("GET", f"/v1/files/{files[0]}", key=res.OTHER_KEY).status == 404
    assert sorted(res.listed(two, res.CLIENT_KEY)) == sorted(files)
    assert res.listed(two, res.OTHER_KEY) == []
