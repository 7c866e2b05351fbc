"""scripts/quickstart.sh as a new user runs it: it serves the example, and
when it cannot (a busy port) it says so and fails instead of pretending."""
import os
import signal
import socket
import subprocess
import time

from conftest import BUILD, ROOT, free_port

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
        for tool in ("grep", "id"):
            os.symlink(shutil.which(tool), os.path.join(fakebin, tool))
        as_user = ([shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"]
                   if os.geteuid() == 0 else [])
        r = subprocess.run(as_user + ["/bin/bash", str(ROOT / "scripts" / "bootstrap.sh")],
                           env={"PATH": fakebin}, capture_output=True, text=True, timeout=30)
    finally:
        shutil.rmtree(fakebin)
    assert r.returncode == 1, r.stderr
    assert "sudo: command not found" not in r.stderr
    assert "sudo is not installed" in r.stderr and "apt-get install" in r.stderr
    assert "ca-certificates" in r.stderr  # among what it would install
