"""End users behind API keys (issue #32, its first part): trust_user takes
the user from x-sluice-user or the body, bounded; require_user refuses a
request without one; the access and usage logs say who (user=), and the
header never goes upstream."""
import json
import time

from harness import CLIENT_KEY, base_conf
from test_failover import last_access

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def test_the_user_comes_from_the_header_or_the_body_and_is_logged(mock, start_sluice, tmp):
    usage = tmp / "usage.jsonl"
    s = start_sluice(base_conf(mock.url, extra_server=f"usage_log = {usage}", key_extra="trust_user = header")
                     + "trust_user = body\nrequire_user = yes\n")  # team-b: the body, required
    assert s.chat(CHAT, headers={"x-sluice-user": "ann@example.com"}).status == 200
    assert last_access(s, 1)["user"] == "ann@example.com"
    assert "x-sluice-user" not in mock.last()["headers"]  # sluice's, not the upstream's
    assert s.chat(CHAT).status == 200 and last_access(s, 2)["user"] == "-"
    r = s.chat(CHAT, headers={"x-sluice-user": "not ok"})
    assert r.status == 400 and "x-sluice-user" in r.error()["message"]
    # team-b: trust_user = body, require_user = yes
    other = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    from harness import OTHER_KEY
    r = s.chat(other, key=OTHER_KEY)
    assert r.status == 400 and r.error()["param"] == "user"
    assert s.chat(dict(other, user="bob"), key=OTHER_KEY, headers={"x-sluice-user": "eve"}).status == 200
    assert last_access(s, 5)["user"] == "bob"  # the key trusts the body, not the header
    assert s.chat(dict(other, safety_identifier="carol-7"), key=OTHER_KEY).status == 200
    assert last_access(s, 6)["user"] == "carol-7"
    deadline = time.time() + 5
    while time.time() < deadline and len(usage.read_text().splitlines() if usage.exists() else []) < 6:
        time.sleep(0.05)
    users = [json.loads(line)["user"] for line in usage.read_text().splitlines()]
    assert users == ["ann@example.com", "-", "-", "-", "bob", "carol-7"]


def test_require_user_needs_a_place_to_find_one(tmp):
    import subprocess
    from harness import SLUICE
    conf = tmp / "u.conf"
    conf.write_text(f"[server]\nlisten = 127.0.0.1:9\n[backend b]\nurl = http://127.0.0.1:9/v1\n"
                    f"[key k]\nkey = {CLIENT_KEY}\nrequire_user = yes\n")
    r = subprocess.run([str(SLUICE), "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1 and "require_user needs trust_user" in r.stdout + r.stderr
