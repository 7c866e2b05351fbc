"""scripts/quickstart.sh as a new user runs it: it serves the example, and
when it cannot (a busy port) it says so and fails instead of pretending."""
import os
import signal
import socket
import subprocess
import time

from harness import BUILD, ROOT, free_port

SCRIPT = ROOT / "scripts" / "quickstart.sh"


def env(sluice_port, mock_port):
    return dict(os.environ, SLUICE_BUILD=str(BUILD), SLUICE_PORT=str(sluice_port), MOCK_PORT=str(mock_port))


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def test_quickstart_serves_the_example_and_stops_cleanly():
    sp, mp = free_port(), free_port()
    p = subprocess.Popen([str(SCRIPT)], env=env(sp, mp), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    out = ""
    deadline = time.time() + 60
    while "sluice is serving" not in out and time.time() < deadline and p.poll() is None:
        out += p.stdout.readline()
    try:
        assert "sluice is serving on http://127.0.0.1:%d" % sp in out, out
        assert '"object":"chat.completion"' in out and "data: [DONE]" in out
        assert "== starting sluice on 127.0.0.1:%d" % sp in out  # it says what it does
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(20)
    time.sleep(0.3)
    assert not listening(sp) and not listening(mp)  # nothing left behind


def test_quickstart_fails_loudly_on_a_busy_port():
    for busy in ("sluice", "mock"):
        sp, mp = free_port(), free_port()
        squatter = socket.create_server(("127.0.0.1", sp if busy == "sluice" else mp))
        try:
            r = subprocess.run([str(SCRIPT)], env=env(sp, mp), capture_output=True, text=True, timeout=60)
        finally:
            squatter.close()
        assert r.returncode != 0, r.stdout
        assert "sluice is serving" not in r.stdout
        assert "is taken by another program" in r.stderr
        assert ("SLUICE_PORT" if busy == "sluice" else "MOCK_PORT") in r.stderr


def test_bootstrap_without_root_or_sudo_says_what_to_do():
    """Run as an ordinary user on a machine without sudo, with packages
    missing: bootstrap names them and how to install them, not 'sudo: command
    not found'."""
    import shutil
    import tempfile
    fakebin = tempfile.mkdtemp(prefix="sluice-nosudo-")  # an unprivileged user must reach it
    try:
        os.chmod(fakebin, 0o755)
        query = os.path.join(fakebin, "dpkg-query")
        with open(query, "w") as f:
            f.write("#!/bin/sh\necho 'deinstall ok config-files'\n")  # every package missing
        os.chmod(query, 0o755)
        for tool in ("grep", "id", "dirname", "mktemp", "rm"):
            os.symlink(shutil.which(tool), os.path.join(fakebin, tool))
        # A copy the other user can read: a clone under /root (0700) is out of its reach.
        script = os.path.join(fakebin, "bootstrap.sh")
        shutil.copy(ROOT / "scripts" / "bootstrap.sh", script)
        os.chmod(script, 0o755)
        as_user = ([shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"]
                   if os.geteuid() == 0 else [])
        r = subprocess.run(as_user + ["/bin/bash", script, "--tests"],
                           env={"PATH": fakebin}, capture_output=True, text=True, timeout=30)
    finally:
        shutil.rmtree(fakebin)
    assert r.returncode == 1, r.stderr
    assert "sudo: command not found" not in r.stderr
    assert "sudo is not installed" in r.stderr and "apt-get install" in r.stderr
    assert "ca-certificates" in r.stderr  # among what it would install


def bootstrap_copy(tmp):
    """scripts/bootstrap.sh and tests/sdk's package files in a folder of their
    own (no node_modules there), as a fresh clone has them."""
    import shutil
    (tmp / "scripts").mkdir()
    (tmp / "tests" / "sdk").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "bootstrap.sh", tmp / "scripts" / "bootstrap.sh")
    for f in ("package.json", "package-lock.json"):
        shutil.copy(ROOT / "tests" / "sdk" / f, tmp / "tests" / "sdk" / f)
    return tmp / "scripts" / "bootstrap.sh"


def test_bootstrap_names_an_unreachable_npm_registry_in_one_line(tmp):
    """The npm registry cannot be reached: one line naming it and what to do,
    not npm's stack trace, and soon."""
    import shutil
    if not shutil.which("npm"):
        import pytest
        pytest.fail("npm is missing: scripts/bootstrap.sh --tests installs it")
    script = bootstrap_copy(tmp)
    closed = free_port()
    env = dict(os.environ, npm_config_registry=f"http://127.0.0.1:{closed}/", HOME=str(tmp))
    start = time.time()
    r = subprocess.run(["/bin/bash", str(script), "--tests"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1
    assert time.time() - start < 60
    assert f"the npm registry http://127.0.0.1:{closed}/ cannot be reached" in r.stderr, r.stderr
    assert "npm_config_registry" in r.stderr
    assert "npm ERR!" not in r.stderr and "    at " not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp / "tests" / "sdk" / "node_modules" / "openai").exists()


def test_bootstrap_names_an_unreachable_debian_archive_in_one_line(tmp):
    """apt cannot reach the archive: one line naming it and what to do. (apt
    itself is stood in for by a script that fails as apt-get does offline.)"""
    fakebin = tmp / "bin"
    fakebin.mkdir()
    (fakebin / "dpkg-query").write_text("#!/bin/sh\necho 'deinstall ok config-files'\n")
    (fakebin / "id").write_text("#!/bin/sh\necho 0\n")  # as root: no sudo
    (fakebin / "apt-get").write_text(
        "#!/bin/sh\n"
        "echo \"W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  "
        "Temporary failure resolving 'deb.debian.org'\"\n"
        "echo 'W: Some index files failed to download. They have been ignored, or old ones used instead.'\n"
        "[ \"$1\" = update ] && exit 0\n"
        "echo 'E: Unable to locate package libevent-dev'; exit 100\n")
    for f in fakebin.iterdir():
        f.chmod(0o755)
    script = bootstrap_copy(tmp)
    env = dict(os.environ, PATH=f"{fakebin}:{os.environ['PATH']}")
    r = subprocess.run(["/bin/bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "the Debian archive cannot be reached" in r.stderr, r.stderr
    assert "/etc/apt/sources.list" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "reading the package lists" in r.stdout  # it said what it was doing first


def test_quickstart_installs_only_what_building_and_running_need():
    """The quick start's bootstrap asks for no test tool; the test command's does."""
    import tempfile
    import shutil
    fakebin = tempfile.mkdtemp(prefix="sluice-pkgs-")  # an unprivileged user must reach it
    try:
        os.chmod(fakebin, 0o755)
        query = os.path.join(fakebin, "dpkg-query")
        with open(query, "w") as f:
            f.write("#!/bin/sh\necho 'deinstall ok config-files'\n")
        os.chmod(query, 0o755)
        for tool in ("grep", "id", "dirname", "mktemp", "rm"):
            os.symlink(shutil.which(tool), os.path.join(fakebin, tool))
        script = os.path.join(fakebin, "bootstrap.sh")
        shutil.copy(ROOT / "scripts" / "bootstrap.sh", script)
        as_user = ([shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"]
                   if os.geteuid() == 0 else [])
        wanted = {}
        for mode in ([], ["--tests"]):
            r = subprocess.run(as_user + ["/bin/bash", script, *mode], env={"PATH": fakebin},
                               capture_output=True, text=True, timeout=30)
            line = next(l for l in r.stderr.splitlines() if "apt-get install" in l)
            wanted[tuple(mode)] = set(line.split("--no-install-recommends")[1].split())
    finally:
        shutil.rmtree(fakebin)
    run, tests = wanted[()], wanted[("--tests",)]
    assert {"gcc", "cmake", "libevent-dev", "libcurl4-openssl-dev", "ca-certificates", "curl"} <= run
    for tool in ("redis-server", "nginx-light", "chromium", "prometheus", "npm", "nodejs", "python3-pytest"):
        assert tool not in run and tool in tests, tool
    assert run < tests


def test_bootstrap_names_an_untrusted_registry_certificate_in_one_line(tmp):
    """The registry answers through a proxy whose CA Node.js does not trust:
    one line saying so and what to set, not npm's error block. (npm itself
    is stood in for by a script that fails as npm does then.)"""
    fakebin = tmp / "bin"
    fakebin.mkdir()
    (fakebin / "npm").write_text(
        "#!/bin/sh\n[ \"$1\" = config ] && { echo https://registry.npmjs.org/; exit 0; }\n"
        "echo 'npm ERR! code SELF_SIGNED_CERT_IN_CHAIN' >&2\n"
        "echo 'npm ERR! request to https://registry.npmjs.org/openai failed, reason: "
        "self-signed certificate in certificate chain' >&2\nexit 1\n")
    (fakebin / "npm").chmod(0o755)
    script = bootstrap_copy(tmp)
    env = dict(os.environ, PATH=f"{fakebin}:{os.environ['PATH']}")
    r = subprocess.run(["/bin/bash", str(script), "--tests"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert "certificate Node.js does not trust" in r.stderr and "NODE_EXTRA_CA_CERTS" in r.stderr
    assert "npm ERR!" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_soak_runs_mixed_traffic_through_reloads_and_accounts_for_every_request():
    """scripts/soak.py, shortened: every kind of request and fault answered,
    nothing lost or left in flight, a reload every few seconds (the 10-minute
    run is scripts/soak.sh; its output goes in the issue note)."""
    e = dict(os.environ, SLUICE_BUILD=str(BUILD), SOAK_SECONDS="7", SOAK_SAMPLE_SECONDS="2",
             SOAK_HUP_SECONDS="2", SOAK_CLIENTS="6")
    r = subprocess.run(["/usr/bin/python3", str(ROOT / "scripts" / "soak.py")], env=e,
                       capture_output=True, text=True, timeout=180)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "== soak: passed" in out, out[-3000:]
    assert "minute 3:" in out  # sampled as it went
    for kind in ("plain", "stream", "multipart", "queue", "5xx", "reset", "cut stream", "stall"):
        assert f"  {kind} " in out, (kind, out[-2000:])
    reloads = int(out.rsplit(" reloads", 1)[0].rsplit(", ", 1)[1])
    assert reloads >= 3, out[-500:]
