"""The command line: -V, -t with file:line errors, signals."""
import json
import signal
import subprocess
import time

from harness import CLIENT_KEY, ENV, SLUICE, base_conf


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
    from harness import ROOT
    generated = run("-D").stdout
    assert generated.strip() in (ROOT / "docs" / "config.md").read_text()
    # the whole page, its syntax included, comes from the binary
    assert generated == (ROOT / "docs" / "config.md").read_text()
    assert "## Syntax" in generated and "cred:NAME" in generated


def test_readme_links_resolve_inside_the_repository():
    """Users get the repository, not the files around it: every link of the
    README and docs/ resolves to a file of the repository."""
    import re
    from harness import ROOT
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        assert "../shared" not in text, page.name
        for target in re.findall(r"\]\(([^)#]+)", text):
            if "://" in target:
                continue
            assert (page.parent / target).resolve().is_file(), (page.name, target)
    assert "(docs/api.md)" in (ROOT / "README.md").read_text()


def cred_conf(tmp, mock_url):
    """A config whose upstream secret is cred:sluice_openai-key, with the
    folder laid out as docs/operations.md says (/etc/sluice/credentials)."""
    creds = tmp / "credentials"
    creds.mkdir(mode=0o700)
    (creds / "openai-key").write_text("upstream-secret-credential\n")
    (creds / "openai-key").chmod(0o600)
    conf = tmp / "cred.conf"
    conf.write_text(base_conf(mock_url).replace("{port}", "8080")
                    .replace("api_key = upstream-secret-credential", "api_key = cred:sluice_openai-key"))
    conf.chmod(0o600)
    return conf, creds


def test_cred_values_checked_outside_systemd(tmp):
    """sluice -t for a config in the recommended cred: form, by hand: -C names
    the folder as the unit's LoadCredential=sluice:DIR does."""
    conf, creds = cred_conf(tmp, "http://127.0.0.1:9/v1")
    env = {k: v for k, v in ENV.items() if k != "CREDENTIALS_DIRECTORY"}
    r = subprocess.run([str(SLUICE), "-t", "-c", str(conf)], capture_output=True, text=True, env=env, timeout=20)
    assert r.returncode == 1
    assert "CREDENTIALS_DIRECTORY is not set" in r.stderr and "-C sluice:/etc/sluice/credentials" in r.stderr
    r = subprocess.run([str(SLUICE), "-t", "-c", str(conf), "-C", f"sluice:{creds}"],
                       capture_output=True, text=True, env=env, timeout=20)
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr and "upstream-secret-credential" not in r.stderr
    # Another ID than the names use: said plainly.
    r = subprocess.run([str(SLUICE), "-t", "-c", str(conf), "-C", f"other:{creds}"],
                       capture_output=True, text=True, env=env, timeout=20)
    assert r.returncode == 1 and "loads credentials named other_FILE" in r.stderr
    # -C DIR: the names are the file names.
    (creds / "sluice_openai-key").write_text("upstream-secret-credential\n")
    r = subprocess.run([str(SLUICE), "-t", "-c", str(conf), "-C", str(creds)],
                       capture_output=True, text=True, env=env, timeout=20)
    assert r.returncode == 0, r.stderr
    # Under systemd, CREDENTIALS_DIRECTORY wins (the unit's own ExecStartPre).
    (creds / "sluice_openai-key").unlink()
    r = subprocess.run([str(SLUICE), "-t", "-c", str(conf), "-C", str(creds)], capture_output=True, text=True,
                       env=dict(env, CREDENTIALS_DIRECTORY=str(creds)), timeout=20)
    assert r.returncode == 1 and "sluice_openai-key" in r.stderr


def test_cred_values_serve_outside_systemd(tmp, mock):
    """The daemon itself, started by hand with -C, reads the secret and uses it
    (the mock answers 401 to any other credential); a reload reads it again."""
    from harness import Sluice
    conf, creds = cred_conf(tmp, mock.url)
    text = conf.read_text().replace("127.0.0.1:8080", "127.0.0.1:{port}")
    s = Sluice(tmp, text, extra_args=["-C", f"sluice:{creds}"])
    try:
        assert s.chat().status == 200
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while "reloaded" not in s.log_text() and time.time() < deadline:
            time.sleep(0.05)
        assert "reloaded" in s.log_text() and s.chat().status == 200
    finally:
        assert s.stop() == 0


def test_pid_file_names_this_sluice(tmp, mock, start_sluice):
    """[server] pid_file: written at start, good for kill -HUP $(cat FILE),
    removed at exit; a file that cannot be written stops the start."""
    pid_file = tmp / "run" / "sluice.pid"
    pid_file.parent.mkdir()
    s = start_sluice(base_conf(mock.url, extra_server=f"pid_file = {pid_file}"))
    assert pid_file.read_text() == f"{s.proc.pid}\n"
    subprocess.run(["/bin/sh", "-c", 'kill -HUP "$(cat "$1")"', "sh", str(pid_file)], check=True)
    deadline = time.time() + 5
    while "reloaded" not in s.log_text() and time.time() < deadline:
        time.sleep(0.05)
    assert "reloaded" in s.log_text()
    assert s.stop() == 0
    assert not pid_file.exists()
    assert not list(pid_file.parent.iterdir())  # no temporary file left either

    nowhere = tmp / "missing-dir" / "sluice.pid"
    bad = tmp / "bad.conf"
    bad.write_text(base_conf(mock.url, extra_server=f"pid_file = {nowhere}").replace("{port}", "8080"))
    r = subprocess.run([str(SLUICE), "-c", str(bad)], capture_output=True, text=True, env=ENV, timeout=20)
    assert r.returncode == 1 and f"pid_file {nowhere}" in r.stderr


def test_pid_file_of_another_sluice_is_left_alone(tmp, mock, start_sluice):
    """Two sluices given the same pid_file (the second replaced the first's):
    the first one's exit does not remove the second's PID."""
    pid_file = tmp / "sluice.pid"
    first = start_sluice(base_conf(mock.url, extra_server=f"pid_file = {pid_file}"))
    second = start_sluice(base_conf(mock.url, extra_server=f"pid_file = {pid_file}"))
    assert pid_file.read_text() == f"{second.proc.pid}\n"
    assert first.stop() == 0
    assert pid_file.read_text() == f"{second.proc.pid}\n"
    assert second.stop() == 0
    assert not pid_file.exists()


def test_config_test_keeps_secrets_out_of_its_messages(tmp):
    """A key pasted into the wrong option is named, not echoed; an admin or
    metrics key equal to a client's key is refused (issue #28, finding 10)."""
    secret = "sk-proj-AbCdEf0123456789ZyXwVuTsRq"
    conf = tmp / "misplaced.conf"
    conf.write_text("[server]\nlisten = 127.0.0.1:8080\nadmin_key = sk-shared-key-for-both-01\n"
                    "metrics_key = sk-shared-key-for-both-01\n"
                    f"[backend a]\nurl = {secret}\ntimeout = {secret}\nstream = x\n"
                    "[key k]\nkey = sk-shared-key-for-both-01\n")
    r = run("-t", "-c", str(conf))
    assert r.returncode == 1
    assert secret not in r.stderr and secret not in r.stdout
    assert f"{conf}:6: url: '<a {len(secret)}-character value, not shown" in r.stderr
    assert f"{conf}:3: admin_key is the key of [key k]" in r.stderr
    assert f"{conf}:4: metrics_key is the key of [key k]" in r.stderr
    # harmless values are still shown: the messages stay useful
    conf.write_text("[backend a]\nurl = http://x/v1\ntimeout = soon\n")
    assert "timeout: 'soon' is not a duration" in run("-t", "-c", str(conf)).stderr
