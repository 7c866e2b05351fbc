"""The systemd side: the unit verifies and scores well, sd_notify messages
arrive at their moments, the watchdog is fed, install puts files in place."""
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from harness import ROOT, SLUICE, Sluice, base_conf

UNIT = ROOT / "conf" / "sluice.service"
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed")


def unit_for_this_build(tmp, etc_root):
    """The unit, naming this build's sluice (quoted: the clone's path may hold
    a space) and a configuration folder under etc_root."""
    etc = etc_root / "etc" / "sluice"
    (etc / "credentials").mkdir(parents=True)
    shutil.copy(ROOT / "conf" / "sluice.conf.example", etc / "sluice.conf")
    text = UNIT.read_text().replace("/usr/bin/sluice", f'"{SLUICE}"').replace("/etc/sluice", str(etc))
    path = tmp / "sluice.service"
    path.write_text(text)
    return path


@needs_analyze
def test_unit_verifies_and_is_hardened(tmp):
    import tempfile
    # The configuration folder's path goes into LoadCredential= and -c, which take
    # no quotes: a folder of its own without spaces, whatever the clone's path.
    etc_root = pathlib.Path(tempfile.mkdtemp(prefix="sluice-unit-"))
    try:
        unit = unit_for_this_build(tmp, etc_root)
        verify_and_rate(unit)
    finally:
        shutil.rmtree(etc_root)


def verify_and_rate(unit):
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                       capture_output=True, text=True)
    m = re.search(r"Overall exposure level for sluice.service: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0  # "OK" on systemd's 0-10 scale
    text = UNIT.read_text()
    for line in ("Type=notify", "DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "PrivateTmp=yes", "CapabilityBoundingSet=\n", "LoadCredential=", "ExecReload=",
                 "WatchdogSec=", "LimitCORE=0\n"):
        assert line in text


def test_notify_protocol(mock, tmp):
    path = str(tmp / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    s = Sluice(tmp, base_conf(mock.url), extra_env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    try:
        got = []

        def until(msg):
            deadline = time.time() + 5
            while time.time() < deadline:
                data = sock.recv(256).decode()
                got.append(data)
                if data == msg:
                    return
            raise AssertionError(f"no {msg}: {got}")

        until("READY=1")
        until("WATCHDOG=1")  # every 100 ms while the workers run
        s.proc.send_signal(signal.SIGHUP)
        until("RELOADING=1")
        until("READY=1")
        s.proc.send_signal(signal.SIGTERM)
        until("STOPPING=1")
        assert s.proc.wait(10) == 0
    finally:
        s.stop()
        sock.close()


def test_cred_values(mock, tmp):
    creds = tmp / "creds"
    creds.mkdir()
    (creds / "sluice_openai-key").write_text("upstream-secret-credential\n")
    conf = base_conf(mock.url).replace("api_key = upstream-secret-credential", "api_key = cred:sluice_openai-key")
    s = Sluice(tmp, conf, extra_env={"CREDENTIALS_DIRECTORY": str(creds)})
    try:
        assert s.chat().status == 200  # the mock checks the credential
    finally:
        assert s.stop() == 0


def install_table():
    """docs/operations.md's table of what cmake --install puts where: rows of
    (path with the default prefix, path with -DCMAKE_INSTALL_PREFIX=/usr)."""
    text = (ROOT / "docs" / "operations.md").read_text()
    table = text[text.index("| path (default prefix) |"):]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        default = cells[0].strip("`")
        usr = default if cells[1] == "the same" else cells[1].strip("`")
        rows.append((default, usr))
    return rows


def test_cmake_install_layout_is_what_the_docs_say(tmp):
    """cmake --install, with the default prefix and with --prefix /usr, puts
    every file where docs/operations.md's table says, and the unit it writes
    names the installed sluice and /etc/sluice."""
    rows = install_table()
    assert len(rows) >= 6, rows
    build = tmp / "b"
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build)], check=True, capture_output=True)
    # Installing needs only the binary, not the tests.
    subprocess.run(["cmake", "--build", str(build), "--target", "sluice", "-j2"], check=True,
                   capture_output=True)
    for column, prefix in ((0, None), (1, "/usr")):
        dest = tmp / f"root{column}"
        env = dict(os.environ, DESTDIR=str(dest))
        cmd = ["cmake", "--install", str(build)] + (["--prefix", prefix] if prefix else [])
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        paths = [row[column] for row in rows]
        for path in paths:
            assert (dest / path.lstrip("/")).exists(), (prefix, path)
        bindir = os.path.dirname(next(p for p in paths if p.endswith("/sluice")))
        docdir = next(p for p in paths if p.endswith("/doc/sluice/")).rstrip("/")
        for page in (ROOT / "docs").glob("*.md"):  # every page of docs/
            assert (dest / docdir.lstrip("/") / page.name).read_text() == page.read_text(), page.name
        unit = (dest / next(p for p in paths if p.endswith(".service")).lstrip("/")).read_text()
        assert f"ExecStart={bindir}/sluice -c /etc/sluice/sluice.conf" in unit
        assert f"ExecStartPre={bindir}/sluice -t -c /etc/sluice/sluice.conf" in unit
        assert f"Documentation=file:{docdir}/operations.md" in unit
        assert "LoadCredential=sluice:/etc/sluice/credentials" in unit
        # The installed binary's own default is the documented file.
        r = subprocess.run([str(dest / bindir.lstrip("/") / "sluice"), "-h"], capture_output=True, text=True)
        assert "default /etc/sluice/sluice.conf" in r.stdout


def test_keygen_line_is_accepted(tmp, mock):
    out = subprocess.run([str(ROOT / "scripts" / "sluice-keygen"), "team-z"], capture_output=True,
                         text=True, check=True).stdout
    key = re.search(r"client key \(shown once\): (\S+)", out).group(1)
    block = out[out.index("[key team-z]"):]
    s = Sluice(tmp, base_conf(mock.url) + "\n" + block)
    try:
        assert s.chat(key=key).status == 200
        assert key not in (tmp / f"sluice-{s.port}.conf").read_text()
    finally:
        assert s.stop() == 0
