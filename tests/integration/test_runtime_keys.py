"""Runtime keys (docs/keys.md): made, read, listed, changed, rotated and
revoked through /admin/keys, kept in state_dir without Redis, used by the
proxy like the file's keys; a team's admin_key scoped to its team and its
limits; bad input refused with nothing changed; the audit log; a flood of
made-up keys bounded."""
import concurrent.futures
import json
import os
import re
import secrets
import signal
import stat
import time

from harness import CLIENT_KEY, UPSTREAM_KEY, MOCK_HEADERS
from test_operations import scrape, value

ADMIN = "sk-admin-runtime-keys-01"
TEAM_ADMIN = "sk-team-admin-platform-01"
OTHER_TEAM_ADMIN = "sk-team-admin-research-01"


def conf(mock_url, state_dir, audit=None, extra_server="", extra="", redis=None):
    audit_line = f"audit_log = {audit}" if audit else ""
    state_line = f"state_dir = {state_dir}" if state_dir else ""
    redis_section = f"[redis]\nurl = {redis}\n" if redis else ""
    return f"""
[server]
listen = 127.0.0.1:{{port}}
admin_key = {ADMIN}
{state_line}
{audit_line}
{extra_server}

{redis_section}

[backend main]
url = {mock_url}
api_key = {UPSTREAM_KEY}
{MOCK_HEADERS}

[team platform]
rpm = 100
budget = 10
budget_period = month
admin_key = {TEAM_ADMIN}

[team research]
admin_key = {OTHER_TEAM_ADMIN}

[key filekey]
key = {CLIENT_KEY}
team = platform

[model gpt-4o]
input_price = 2.50
output_price = 10.00

[model gpt-4o-mini]
input_price = 0.15
output_price = 0.60
{extra}
"""


def admin(s, method, path, body=None, key=ADMIN, raw=None):
    if raw is not None:
        return s.request(method, path, raw, key=key)
    return s.request(method, path, body, key=key)


def chat(s, key, model="gpt-4o"):
    return s.request("POST", "/v1/chat/completions",
                     {"model": model, "messages": [{"role": "user", "content": "hello"}]}, key=key)


def make(s, name, key=ADMIN, **settings):
    r = admin(s, "POST", "/admin/keys", {"name": name, **settings}, key=key)
    assert r.status == 201, r.body
    return r.json()


def models_status(s):
    return lambda k: s.request("GET", "/v1/models", key=k).status


def flood(s, good, n=2500):
    """n made-up keys from 16 threads while the good key is used 20 times: each
    of those is served. The keys, what each got (401 or 503), the seconds."""
    keys = ["sk-sluice-" + secrets.token_hex(20) for _ in range(n)]
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        got = ex.map(models_status(s), keys)
        served = [chat(s, good).status for _ in range(20)]
        statuses = list(got)
    assert served == [200] * 20
    assert set(statuses) <= {401, 503}
    return keys, statuses, time.monotonic() - t0


def files_under(d):
    out = {}
    for root, _, names in os.walk(d):
        for n in names:
            p = os.path.join(root, n)
            out[os.path.relpath(p, d)] = open(p, "rb").read()
    return out


def test_a_runtime_key_is_made_used_changed_and_revoked(mock, start_sluice, tmp):
    state = tmp / "state"
    audit = tmp / "audit.jsonl"
    s = start_sluice(conf(mock.url, state, audit))
    made = make(s, "alice", team="platform", rpm=5, models=["gpt-4o"],
                metadata={"owner": "alice@example.com"})
    secret = made["key"]
    assert re.fullmatch(r"sk-sluice-[0-9A-Za-z]{43}", secret), secret
    assert made["name"] == "alice" and made["source"] == "runtime"
    assert made["rpm"] == 5 and made["models"] == ["gpt-4o"] and made["team"] == "platform"
    assert made["metadata"] == {"owner": "alice@example.com"} and made["disabled"] is False
    assert made["created_by"] == "admin"

    r = chat(s, secret)
    assert r.status == 200, r.body
    assert chat(s, secret, "gpt-4o-mini").status == 403  # its models list holds

    view = admin(s, "GET", "/admin/keys/alice").json()
    assert view["source"] == "runtime" and view["rpm"] == 5
    assert view["requests"]["used"] == 1 and view["limiter"] == "local"
    assert view["last_used_at"] is not None
    assert admin(s, "GET", "/admin/keys/filekey").json()["source"] == "config"

    page = admin(s, "GET", "/admin/keys").json()
    assert [(k["name"], k["source"]) for k in page["data"]] == [("alice", "runtime"), ("filekey", "config")]
    assert page["has_more"] is False

    r = admin(s, "PATCH", "/admin/keys/alice", {"rpm": 2, "models": ["gpt-4o", "gpt-4o-mini"]})
    assert r.status == 200, r.body
    assert r.json()["rpm"] == 2 and "key" not in r.json()
    assert chat(s, secret, "gpt-4o-mini").status == 200  # the change is in force at once
    assert chat(s, secret).status == 429  # two in the window now: rpm 2

    r = admin(s, "DELETE", "/admin/keys/alice")
    assert r.status == 200 and r.json() == {"name": "alice", "deleted": True}
    r = chat(s, secret)
    assert r.status == 401 and r.error()["code"] == "invalid_api_key"
    assert admin(s, "GET", "/admin/keys/alice").status == 404
    assert admin(s, "DELETE", "/admin/keys/alice").status == 404

    # one audit record per change, the admin named, the fields, never a secret
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(x["action"], x["key"], x["admin"]) for x in records] == [
        ("create", "alice", "admin"), ("update", "alice", "admin"), ("delete", "alice", "admin")]
    assert set(records[0]["fields"]) == {"team", "rpm", "models", "metadata"}
    assert set(records[1]["fields"]) == {"rpm", "models"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", records[0]["time"])
    everything = audit.read_text() + s.log_text() + "".join(v.decode() for v in files_under(state).values())
    assert secret not in everything and ADMIN not in everything
    assert len(re.findall(r"info admin action=(create|update|delete) key=alice by=admin", s.log_text())) == 3

    m = scrape(s)
    assert value(m, "sluice_keys", source="config") == 1
    assert value(m, "sluice_keys", source="runtime") == 0
    assert value(m, "sluice_admin_changes_total", action="create") == 1
    assert value(m, "sluice_admin_changes_total", action="update") == 1
    assert value(m, "sluice_admin_changes_total", action="delete") == 1


def test_runtime_keys_survive_restart_and_reload_and_never_shadow_a_file_key(mock, start_sluice, tmp):
    state = tmp / "state"
    s = start_sluice(conf(mock.url, state))
    secret = make(s, "bob", team="platform")["key"]
    assert chat(s, secret).status == 200
    m = scrape(s)
    assert value(m, "sluice_keys", source="runtime") == 1

    # state_dir is sluice's own: 0700 folders, 0600 files
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    for root, dirs, names in os.walk(state):
        for d in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode) == 0o700
        for n in names:
            assert stat.S_IMODE(os.stat(os.path.join(root, n)).st_mode) == 0o600

    s.proc.send_signal(signal.SIGHUP)  # a reload keeps them
    time.sleep(0.5)
    assert chat(s, secret).status == 200

    # a name of the file's is refused
    r = admin(s, "POST", "/admin/keys", {"name": "filekey"})
    assert r.status == 409 and r.error()["code"] == "conflict"
    assert admin(s, "PATCH", "/admin/keys/filekey", {"rpm": 1}).status == 409
    assert admin(s, "DELETE", "/admin/keys/filekey").status == 409

    assert s.stop() == 0
    s2 = start_sluice(conf(mock.url, state))  # a restart keeps them
    assert chat(s2, secret).status == 200
    assert admin(s2, "GET", "/admin/keys/bob").json()["source"] == "runtime"
    m = scrape(s2)
    assert value(m, "sluice_keys", source="runtime") == 1
    node = admin(s2, "GET", "/admin/status.json").json()["node"]
    assert node["keys"] == 1 and node["runtime_keys"] == 1

    # the file gains a key named bob: the runtime bob is no longer used
    s2.conf.write_text(s2.conf.read_text() + "\n[key bob]\nkey = sk-file-bob-key-00000001\n")
    s2.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert chat(s2, secret).status == 401
    assert chat(s2, "sk-file-bob-key-00000001").status == 200
    assert admin(s2, "GET", "/admin/keys/bob").json()["source"] == "config"
    assert "runtime key bob" in s2.log_text()


def test_rotation_keeps_the_old_secret_for_its_grace_only(mock, start_sluice, tmp):
    s = start_sluice(conf(mock.url, tmp / "state", tmp / "audit.jsonl"))
    old = make(s, "carol")["key"]
    r = admin(s, "POST", "/admin/keys/carol/rotate", {"grace": "2s"})
    assert r.status == 200, r.body
    new = r.json()["key"]
    assert new != old and r.json()["previous_secret_until"]
    assert chat(s, old).status == 200 and chat(s, new).status == 200
    time.sleep(2.5)
    assert chat(s, old).status == 401
    assert chat(s, new).status == 200

    r = admin(s, "POST", "/admin/keys/carol/rotate")  # no grace: the old one ends at once
    newer = r.json()["key"]
    assert chat(s, new).status == 401 and chat(s, newer).status == 200
    assert "previous_secret_until" not in r.json()
    for bad in ({"grace": "31d"}, {"grace": "soon"}, {"grace": "1h", "x": 1}, [1]):
        r = admin(s, "POST", "/admin/keys/carol/rotate", bad)
        assert r.status == 400 and r.error()["param"] == "grace", bad
    assert chat(s, newer).status == 200  # a refused rotation changed nothing
    actions = [json.loads(x)["action"] for x in (tmp / "audit.jsonl").read_text().splitlines()]
    assert actions == ["create", "rotate", "rotate"]
    assert json.loads((tmp / "audit.jsonl").read_text().splitlines()[1])["fields"] == ["key"]


def test_an_expired_key_gets_401_key_expired(mock, start_sluice, tmp):
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    s = start_sluice(conf(mock.url, tmp / "state", extra="""
[key old]
key = sk-file-key-expired-0001
expires_at = 2020-01-01T00:00:00Z
"""))
    made = make(s, "dave", expires_at=soon)
    assert made["expires_at"] == soon
    assert chat(s, made["key"]).status == 200
    time.sleep(2.2)
    r = chat(s, made["key"])
    assert r.status == 401 and r.error()["code"] == "invalid_api_key"
    assert "key expired" in r.error()["message"]
    r = chat(s, "sk-file-key-expired-0001")  # a file key's expires_at alike
    assert r.status == 401 and "key expired" in r.error()["message"]
    # taken back: null clears it
    assert admin(s, "PATCH", "/admin/keys/dave", {"expires_at": None}).status == 200
    assert chat(s, made["key"]).status == 200
    r = admin(s, "POST", "/admin/keys", {"name": "erin", "expires_at": "2020-01-01T00:00:00Z"})
    assert r.status == 400 and r.error()["param"] == "expires_at"
    r = admin(s, "PATCH", "/admin/keys/dave", {"disabled": True})
    assert r.status == 200
    r = chat(s, made["key"])
    assert r.status == 401 and "disabled" in r.error()["message"]


def test_a_team_admin_manages_only_its_team_within_its_limits(mock, start_sluice, tmp):
    audit = tmp / "audit.jsonl"
    s = start_sluice(conf(mock.url, tmp / "state", audit))
    made = make(s, "pat", key=TEAM_ADMIN, rpm=50)
    assert made["team"] == "platform" and made["created_by"] == "team:platform"
    assert chat(s, made["key"]).status == 200
    other = make(s, "rita", team="research")  # by the operator

    def refused(r, status, param=None):
        assert r.status == status, r.body
        if param:
            assert r.error()["param"] == param

    refused(admin(s, "POST", "/admin/keys", {"name": "x1", "team": "research"}, key=TEAM_ADMIN), 403, "team")
    refused(admin(s, "POST", "/admin/keys", {"name": "x2", "rpm": 101}, key=TEAM_ADMIN), 403, "rpm")
    refused(admin(s, "POST", "/admin/keys", {"name": "x3", "budget": 11}, key=TEAM_ADMIN), 403, "budget")
    refused(admin(s, "PATCH", "/admin/keys/pat", {"rpm": 1000}, key=TEAM_ADMIN), 403, "rpm")
    refused(admin(s, "PATCH", "/admin/keys/pat", {"team": "research"}, key=TEAM_ADMIN), 403, "team")
    refused(admin(s, "GET", "/admin/keys/rita", key=TEAM_ADMIN), 404)
    refused(admin(s, "PATCH", "/admin/keys/rita", {"rpm": 1}, key=TEAM_ADMIN), 404)
    refused(admin(s, "DELETE", "/admin/keys/rita", key=TEAM_ADMIN), 404)
    refused(admin(s, "POST", "/admin/keys/rita/rotate", key=TEAM_ADMIN), 404)
    refused(admin(s, "GET", "/admin/quota/filekey", key=TEAM_ADMIN), 403)
    refused(admin(s, "GET", "/admin/keys", key="sk-not-an-admin-key-0001"), 401)
    # its list is its team's: the team's file key and its runtime key
    names = [k["name"] for k in admin(s, "GET", "/admin/keys", key=TEAM_ADMIN).json()["data"]]
    assert names == ["filekey", "pat"]
    assert [k["name"] for k in admin(s, "GET", "/admin/keys?team=research").json()["data"]] == ["rita"]
    assert admin(s, "PATCH", "/admin/keys/pat", {"rpm": 100}, key=TEAM_ADMIN).status == 200
    assert admin(s, "DELETE", "/admin/keys/pat", key=TEAM_ADMIN).status == 200
    assert chat(s, made["key"]).status == 401
    assert chat(s, other["key"]).status == 200
    who = [(json.loads(x)["admin"], json.loads(x)["action"]) for x in audit.read_text().splitlines()]
    assert who == [("team:platform", "create"), ("admin", "create"), ("team:platform", "update"),
                   ("team:platform", "delete")]
    assert TEAM_ADMIN not in audit.read_text() + s.log_text()


def test_bad_input_gets_a_clear_error_and_changes_nothing(mock, start_sluice, tmp):
    state = tmp / "state"
    s = start_sluice(conf(mock.url, state, tmp / "audit.jsonl"))
    make(s, "kept", rpm=3)
    before = files_under(state)
    cases = [
        ({"name": "n1", "colour": "red"}, None, "colour"),
        ({"name": "n2", "rpm": -1}, "rpm", "out of range"),
        ({"name": "n3", "rpm": 1.5}, "rpm", "whole number"),
        ({"name": "n4", "rpm": "ten"}, "rpm", "not a integer"),
        ({"name": "bad name!"}, "name", "letters"),
        ({"name": "x" * 65}, "name", "letters"),
        ({"name": "n5", "team": "nobody"}, "team", "no team nobody"),
        ({"name": "n6", "expires_at": "tomorrow"}, "expires_at", "RFC 3339"),
        ({"name": "n7", "expires_at": "2027-02-30T00:00:00Z"}, "expires_at", "RFC 3339"),
        ({"name": "n8", "models": "gpt-4o"}, "models", "list of model names"),
        ({"name": "n9", "models": ["a,b"]}, "models", "list of model names"),
        ({"name": "n10", "key": "sk-chosen-by-me-000001"}, "key", "makes the secret"),
        ({"name": "n12", "mode": "lenient"}, "mode", "not one of"),
        ({"name": "n13", "metadata": "x"}, "metadata", "object"),
        ({"rpm": 1}, "name", "Missing"),
        ({"name": "kept"}, "name", "exists"),
    ]
    for body, param, words in cases:
        r = admin(s, "POST", "/admin/keys", body)
        assert r.status in (400, 409), (body, r.body)
        assert r.error()["param"] == param, (body, r.body)
        assert words in r.error()["message"], (body, r.error()["message"])
    for raw in ('{"name":"d1","rpm":1,"rpm":2}', "[1]", "not json", ""):
        r = admin(s, "POST", "/admin/keys", raw=raw)
        assert r.status == 400, (raw, r.body)
    r = admin(s, "POST", "/admin/keys", raw=json.dumps({"name": "big", "metadata": {"x": "y" * 70000}}))
    assert r.status == 413
    assert admin(s, "PATCH", "/admin/keys/kept", {"name": "renamed"}).status == 400
    assert admin(s, "PATCH", "/admin/keys/kept", {"rpm": -5}).status == 400
    assert admin(s, "PUT", "/admin/keys/kept", {"rpm": 5}).status == 405
    assert admin(s, "POST", "/admin/keys/kept/explode").status == 404
    assert files_under(state) == before  # nothing written
    assert admin(s, "GET", "/admin/keys/kept").json()["rpm"] == 3
    assert [k["name"] for k in admin(s, "GET", "/admin/keys").json()["data"]] == ["filekey", "kept"]
    assert len((tmp / "audit.jsonl").read_text().splitlines()) == 1
    for q in ("limit=0", "limit=1001", "team=a%20b", "colour=red", "limit"):
        assert admin(s, "GET", "/admin/keys?" + q).status == 400, q


def test_without_state_dir_or_redis_runtime_keys_are_off(mock, start_sluice, tmp):
    s = start_sluice(conf(mock.url, None))
    r = admin(s, "POST", "/admin/keys", {"name": "x"})
    assert r.status == 501 and "state_dir" in r.error()["message"]
    assert admin(s, "GET", "/admin/keys").json()["data"][0]["name"] == "filekey"
    assert chat(s, CLIENT_KEY).status == 200


def test_the_list_pages_by_name(mock, start_sluice, tmp):
    s = start_sluice(conf(mock.url, tmp / "state"))
    for i in range(7):
        make(s, f"k{i}")
    seen, cursor = [], None
    while True:
        r = admin(s, "GET", "/admin/keys?limit=3" + (f"&cursor={cursor}" if cursor else "")).json()
        seen += [k["name"] for k in r["data"]]
        assert len(r["data"]) <= 3
        if not r["has_more"]:
            assert r["next_cursor"] is None
            break
        cursor = r["next_cursor"]
    assert seen == ["filekey"] + [f"k{i}" for i in range(7)]


def test_a_runtime_key_counts_against_its_team_like_a_file_key(mock, start_sluice, tmp):
    s = start_sluice(conf(mock.url, tmp / "state", extra="""
[team small]
rpm = 3

[key small-file]
key = sk-file-small-team-0001
team = small
"""))
    rt = make(s, "small-rt", team="small")["key"]
    got = [chat(s, k).status for k in (rt, "sk-file-small-team-0001", rt, "sk-file-small-team-0001")]
    assert got == [200, 200, 200, 429]
    r = chat(s, rt)
    assert r.status == 429 and "team small" in r.error()["message"]


def test_a_flood_of_unknown_keys_is_bounded_and_known_keys_are_served(mock, start_sluice, tmp):
    s = start_sluice(conf(mock.url, tmp / "state"))
    good = make(s, "steady")["key"]
    assert chat(s, good).status == 200  # in the cache now

    one = models_status(s)
    keys, statuses, elapsed = flood(s, good)
    m = scrape(s)
    reads = value(m, "sluice_key_store_reads_total", result="unknown")
    busy = value(m, "sluice_key_store_reads_total", result="busy")
    assert reads + busy == 2500
    assert reads <= 1000 * (int(elapsed) + 2), (reads, elapsed)
    assert statuses.count(503) == busy
    # an unknown key asked again is answered from the cache: no second read
    again = [one(k) for k in keys[:50]]
    assert set(again) <= {401, 503}
    m = scrape(s)
    assert value(m, "sluice_key_store_reads_total", result="unknown") <= reads + 50
    known = [k for k, st in zip(keys, statuses) if st == 401][:20]
    before = value(m, "sluice_key_store_reads_total", result="unknown")
    assert [one(k) for k in known] == [401] * len(known)
    m = scrape(s)
    assert value(m, "sluice_key_store_reads_total", result="unknown") == before


# ---- in Redis: every node sees every change ---------------------------------------


def test_in_redis_every_node_sees_a_create_change_and_revoke_within_a_second(mock, redis,
                                                                              start_sluice, tmp):
    nodes = [start_sluice(conf(mock.url, None, tmp / f"audit{i}.jsonl", redis=redis.url))
             for i in range(3)]
    a, b, c = nodes
    # each node listens on the change channel (a connection of its own) and comes back to it
    # (subscribed once the node's data connection is up: within a few ms of the start)
    deadline = time.monotonic() + 2
    while redis.call("PUBSUB", "NUMSUB", "sluice:{rk}:changes")[1] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert redis.call("PUBSUB", "NUMSUB", "sluice:{rk}:changes")[1] == 3
    redis.call("CLIENT", "KILL", "TYPE", "pubsub")
    t0 = time.monotonic()
    while redis.call("PUBSUB", "NUMSUB", "sluice:{rk}:changes")[1] < 3:
        assert time.monotonic() - t0 < 3, "the nodes did not subscribe again"
        time.sleep(0.05)
    secret = make(a, "roamer")["key"]  # no limits: every request counts
    assert [chat(n, secret).status for n in nodes] == [200, 200, 200]  # loaded on first use
    assert admin(b, "GET", "/admin/keys/roamer").json()["source"] == "runtime"
    assert [k["name"] for k in admin(c, "GET", "/admin/keys").json()["data"]] == ["filekey", "roamer"]

    # a change made on one node is in force on the others within a second
    assert admin(a, "PATCH", "/admin/keys/roamer", {"models": ["gpt-4o-mini"]}).status == 200
    t0 = time.monotonic()
    while any(chat(n, secret).status == 200 for n in (b, c)):
        assert time.monotonic() - t0 < 1.0, "a change took longer than 1 s to reach every node"
        time.sleep(0.02)
    assert all(chat(n, secret, "gpt-4o-mini").status == 200 for n in nodes)

    # revoked: measured from the moment the DELETE returned, every node's
    # requests with the key, sent as fast as they go, stop being admitted within 1 s
    stop_at = [None]
    admitted_after, admitted_before = [], []

    def hammer(n):
        while stop_at[0] is None or time.monotonic() < stop_at[0] + 1.5:
            sent = time.monotonic()
            st = chat(n, secret, "gpt-4o-mini").status
            assert st in (200, 401), st
            if st == 200 and stop_at[0] is not None and sent >= stop_at[0]:
                admitted_after.append(sent - stop_at[0])
            elif st == 200:
                admitted_before.append(sent)

    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        futs = [ex.submit(hammer, n) for n in (b, c, b)]
        time.sleep(0.3)
        assert admin(a, "DELETE", "/admin/keys/roamer").status == 200
        stop_at[0] = time.monotonic()
        for f in futs:
            f.result()
    late = max(admitted_after, default=0.0)
    print(f"revocation: {len(admitted_before)} admitted before the DELETE returned, "
          f"{len(admitted_after)} sent after it were admitted, the last sent "
          f"{late * 1000:.0f} ms after it")
    assert len(admitted_before) > 10  # the nodes were serving the key until then
    assert late < 1.0, late
    assert [chat(n, secret).status for n in nodes] == [401, 401, 401]
    m = scrape(b)
    assert value(m, "sluice_keys", source="runtime") == 0
    # each node's own audit: the change made on it
    assert [json.loads(x)["action"] for x in (tmp / "audit0.jsonl").read_text().splitlines()] == \
        ["create", "update", "delete"]


def test_in_redis_rotation_and_expiry_hold_on_every_node(mock, redis, start_sluice, tmp):
    a, b = (start_sluice(conf(mock.url, None, redis=redis.url)) for _ in range(2))
    old = make(a, "turner")["key"]
    assert chat(b, old).status == 200
    new = admin(a, "POST", "/admin/keys/turner/rotate", {"grace": "2s"}).json()["key"]
    time.sleep(0.5)
    assert chat(b, old).status == 200 and chat(b, new).status == 200
    time.sleep(2.0)
    assert chat(b, old).status == 401 and chat(a, old).status == 401
    assert chat(b, new).status == 200
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    assert admin(a, "PATCH", "/admin/keys/turner", {"expires_at": soon}).status == 200
    time.sleep(2.5)
    r = chat(b, new)
    assert r.status == 401 and "key expired" in r.error()["message"]


def test_in_redis_an_admin_change_while_redis_is_down_is_503_and_writes_nothing(mock, redis,
                                                                                start_sluice, tmp):
    s = start_sluice(conf(mock.url, None, tmp / "audit.jsonl", redis=redis.url))
    kept = make(s, "kept")["key"]
    assert chat(s, kept).status == 200
    redis.stop()
    r = admin(s, "POST", "/admin/keys", {"name": "while-down"})
    assert r.status == 503 and r.error()["code"] == "key_store_unavailable"
    assert admin(s, "PATCH", "/admin/keys/kept", {"rpm": 1}).status == 503
    assert admin(s, "DELETE", "/admin/keys/kept").status == 503
    assert admin(s, "GET", "/admin/keys").status == 503
    r = chat(s, "sk-sluice-" + "x" * 43)  # a secret not in the cache cannot be checked
    assert r.status == 503 and r.error()["code"] == "key_store_unavailable"
    redis.start()
    time.sleep(1.5)  # sluice reconnects by itself
    assert admin(s, "GET", "/admin/keys/while-down").status == 404
    # Redis came back empty (no persistence): the change log was read again from its end
    assert chat(s, kept).status == 401
    assert len((tmp / "audit.jsonl").read_text().splitlines()) == 1


def test_in_redis_a_flood_of_unknown_keys_costs_redis_a_bounded_number_of_reads(mock, redis,
                                                                               start_sluice, tmp):
    s = start_sluice(conf(mock.url, None, redis=redis.url))
    good = make(s, "steady")["key"]
    assert chat(s, good).status == 200
    redis.call("CONFIG", "RESETSTAT")

    one = models_status(s)
    keys, statuses, elapsed = flood(s, good)
    stats = redis.call("INFO", "commandstats")
    stats = stats.decode() if isinstance(stats, bytes) else stats
    gets = int(re.search(r"cmdstat_get:calls=(\d+)", stats).group(1)) if "cmdstat_get:" in stats else 0
    print(f"flood: {len(keys)} unknown keys in {elapsed:.2f} s, {gets} GETs in Redis, "
          f"{statuses.count(503)} answered 503")
    m = scrape(s)
    reads = value(m, "sluice_key_store_reads_total", result="unknown")
    polls = 4 * (elapsed + 2)  # the change log's reader reads the epoch with a GET too
    assert reads <= 1000 * (int(elapsed) + 2)
    assert reads <= gets <= reads + polls
    # asked again: from the cache, no read
    again = [one(k) for k in keys[:30]]
    assert set(again) <= {401, 503}
    stats = redis.call("INFO", "commandstats")
    stats = stats.decode() if isinstance(stats, bytes) else stats
    gets2 = int(re.search(r"cmdstat_get:calls=(\d+)", stats).group(1))
    # only those not read before (answered 503 then) are read now
    unread = sum(1 for st in statuses[:30] if st == 503)
    assert gets2 - gets <= unread + polls


def test_in_redis_lists_page_and_team_admins_see_their_own(mock, redis, start_sluice, tmp):
    a, b = (start_sluice(conf(mock.url, None, redis=redis.url)) for _ in range(2))
    for i in range(5):
        make(a, f"k{i}", team="platform" if i % 2 else "research")
    pat = make(b, "pat", key=TEAM_ADMIN)  # a team's admin, on the other node
    assert pat["team"] == "platform"
    seen, cursor = [], None
    while True:
        r = admin(b, "GET", "/admin/keys?limit=2" + (f"&cursor={cursor}" if cursor else "")).json()
        seen += [k["name"] for k in r["data"]]
        if not r["has_more"]:
            break
        cursor = r["next_cursor"]
    assert seen == ["filekey", "k0", "k1", "k2", "k3", "k4", "pat"]
    mine = [k["name"] for k in admin(a, "GET", "/admin/keys", key=TEAM_ADMIN).json()["data"]]
    assert mine == ["filekey", "k1", "k3", "pat"]
    assert admin(a, "GET", "/admin/keys/k0", key=TEAM_ADMIN).status == 404
    assert admin(a, "DELETE", "/admin/keys/k2", key=TEAM_ADMIN).status == 404
    assert admin(a, "PATCH", "/admin/keys/k1", {"rpm": 101}, key=TEAM_ADMIN).status == 403
    assert admin(a, "DELETE", "/admin/keys/k1", key=TEAM_ADMIN).status == 200
    assert [k["name"] for k in admin(b, "GET", "/admin/keys?team=platform").json()["data"]] == \
        ["filekey", "k3", "pat"]
    time.sleep(0.4)  # the count comes with the change log, read every 250 ms
    assert value(scrape(b), "sluice_keys", source="runtime") == 5


def test_a_reload_that_changes_redis_subscribes_again(mock, redis, start_sluice, tmp):
    """A reload that changes [redis] (here its timeout) makes each worker's
    Redis client again; the node listens on the change channel again too."""
    def subscribers():
        return {line.split()[0] for line in redis.cli("CLIENT", "LIST").splitlines()
                if " sub=1 " in line}

    s = start_sluice(conf(mock.url, None, tmp / "audit.jsonl", redis=redis.url))
    deadline = time.monotonic() + 2
    while not subscribers() and time.monotonic() < deadline:
        time.sleep(0.01)
    before = subscribers()
    assert len(before) == 1
    s.conf.write_text(s.conf.read_text().replace(f"url = {redis.url}",
                                                 f"url = {redis.url}\ntimeout = 250ms"))
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 3
    while subscribers() & before and time.monotonic() < deadline:  # the old connection goes
        time.sleep(0.02)
    assert not subscribers() & before
    deadline = time.monotonic() + 2
    while not subscribers() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(subscribers()) == 1  # and a new one listens
