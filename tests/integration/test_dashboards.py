"""conf/prometheus/sluice-alerts.yml and conf/grafana/sluice.json: the rules
pass `promtool check rules` and their unit tests (`promtool test rules`),
every dashboard query is valid PromQL, and every metric either names is
one a running sluice exports and docs/api.md documents."""
import json
import re
import shutil
import subprocess

import pytest

from harness import ROOT, base_conf

RULES = ROOT / "conf" / "prometheus" / "sluice-alerts.yml"
RULE_TESTS = ROOT / "conf" / "prometheus" / "sluice-alerts.test.yml"
DASHBOARD = ROOT / "conf" / "grafana" / "sluice.json"


def promtool(*args, cwd=None):
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: scripts/bootstrap.sh installs Debian's prometheus package"
    return subprocess.run([tool, *args], capture_output=True, text=True, cwd=cwd)


def test_alert_rules_check_and_unit_tests():
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0 and "SUCCESS: 8 rules found" in r.stdout, r.stdout + r.stderr
    r = promtool("test", "rules", str(RULE_TESTS), cwd=RULE_TESTS.parent)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def dashboard_exprs():
    d = json.loads(DASHBOARD.read_text())
    exprs = []
    ids = set()
    for p in d["panels"]:
        assert p["id"] not in ids
        ids.add(p["id"])
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["w"] > 0 and g["h"] > 0
        exprs += [t["expr"] for t in p.get("targets", [])]
    assert len(exprs) >= 25
    return exprs


def test_dashboard_queries_are_valid_promql(tmp):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}",
         "expr": e.replace("$__rate_interval", "5m").replace("$instance", ".*")}
        for i, e in enumerate(dashboard_exprs())]}]}
    path = tmp / "dashboard-rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    r = promtool("check", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr


def metric_names(text):
    names = set(re.findall(r"\b(sluice_[a-z_]+)", text))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def test_every_metric_queried_is_exported_and_documented(mock, start_sluice):
    s = start_sluice(base_conf(mock.url, key_extra="rpm = 1\nbudget = 10\nmax_inflight = 2\n"
                                                  "queue_timeout = 0",
                               extra="[model gpt-4o]\ninput_price = 1\noutput_price = 1\n"))
    assert s.chat().status == 200
    assert s.chat().status == 429
    text = s.request("GET", "/metrics", key=None).body.decode()
    exported = set(re.findall(r"^# TYPE (sluice_[a-z_]+) ", text, re.M))
    documented = set(re.findall(r"^\| `(sluice_[a-z_]+)`", (ROOT / "docs" / "api.md").read_text(), re.M))
    used = metric_names("\n".join(dashboard_exprs())) | metric_names(RULES.read_text())
    assert used - exported == set(), f"queried but not exported: {used - exported}"
    assert used - documented == set(), f"queried but not documented: {used - documented}"
    assert exported - documented == set(), f"exported but not documented: {exported - documented}"
