"""The command line: -V, -t with file:line errors, signals."""
import json
import signal
import subprocess
import time

from conftest import CLIENT_KEY, ENV, SLUICE, base_conf


def run(*args):
    return subprocess.run([str(SLUICE), *args], capture_output=True, text=True, env=ENV, timeout=20)


def test_version():
    r = run("-V")
    assert r.returncode == 0 and r.stdout.startswith("sluice ")


def test_config_test_ok_and_errors(tmp):
    good = tmp / "good.conf"
    good.write_text(base_conf("http://127.0.0.1:9/v1").replace("{port}", "8080"))
    r = run("-t", "-c", str(good))
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr
    bad = tmp / "bad.conf"
    bad.write_text("[server]\nlisten = 127.0.0.1:8080\nworkerz = 2\n\n[backend a]\nurl = http://x/v1\ntimeout = soon\n")
    r = run("-t", "-c", str(bad))
    assert r.returncode == 1
    assert f"{bad}:3: unknown key 'workerz' in [server]" in r.stderr
    assert f"{bad}:7: timeout: 'soon' is not a duration" in r.stderr
    assert "test failed" in r.stderr
    r = run("-t", "-c", str(tmp / "missing.conf"))
    assert r.returncode == 1 and "cannot open" in r.stderr


def test_bad_config_does_not_start(tmp):
    bad = tmp / "bad.conf"
    bad.write_text("[backend a]\n")
    r = run("-c", str(bad))
    assert r.returncode == 1 and "needs 'url'" in r.stderr


def test_reference_is_generated_from_the_table():
    r = run("-D")
    assert r.returncode == 0
    for key in ("`listen`", "`max_body_size`", "`breaker_status`", "`input_tpm`", "`on_error`"):
        assert key in r.stdout


def test_sigterm_lets_streams_finish(sluice):
    c = sluice.conn(timeout=10)
    c.request("POST", "/v1/chat/completions",
              body=json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]}),
              headers={"Authorization": f"Bearer {CLIENT_KEY}", "x-mock-chunk-delay-ms": "100",
                       "x-mock-completion-tokens": "10"})
    r = c.getresponse()
    time.sleep(0.2)
    sluice.proc.send_signal(signal.SIGTERM)
    body = r.read().decode()
    assert body.rstrip().endswith("data: [DONE]")
    assert sluice.proc.wait(10) == 0


def test_docs_config_reference_matches_the_table():
    from conftest import ROOT
    generated = run("-D").stdout
    assert generated.strip() in (ROOT / "docs" / "config.md").read_text()
    # the whole page, its syntax included, comes from the binary
    assert generated == (ROOT / "docs" / "config.md").read_text()
    assert "## Syntax" in generated and "cred:NAME" in generated


def test_readme_links_resolve_inside_the_repository():
    """Users get the repository, not the files around it: every link of the
    README and docs/ resolves to a file of the repository."""
    import re
    from conftest import ROOT
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        assert "../shared" not in text, page.name
        for target in re.findall(r"\]\(([^)#]+)", text):
            if "://" in target:
                continue
            assert (page.parent / target).resolve().is_file(), (page.name, target)
    assert "(docs/api.md)" in (ROOT / "README.md").read_text()
