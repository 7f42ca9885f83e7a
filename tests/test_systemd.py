"""The systemd units verify, keep their hardening, and the notify protocol really reaches a socket."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from servicekit.systemd import Notifier

ROOT = Path(__file__).resolve().parents[1]
UNITS = ("segue-server.service", "segue-device.service")
BIN = Path(sys.executable).parent
MAX_EXPOSURE = {"segue-server.service": 2.0, "segue-device.service": 2.5}  # docs/systemd.md


def _unit_here(name: str, tmp_path: Path) -> Path:
    """The unit with its ExecStart pointed at this checkout's venv (verify checks the binary exists)."""
    text = (ROOT / "systemd" / name).read_text().replace("/opt/segue/.venv/bin/", f"{BIN}/")
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def analyze():
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is needed (apt: systemd)", pytrace=False)
    return tool


@pytest.mark.parametrize("name", UNITS)
def test_unit_verifies_without_a_warning(name, tmp_path, analyze):
    out = subprocess.run([analyze, "verify", str(_unit_here(name, tmp_path))], capture_output=True, text=True)
    # verify exits 0 on unknown keys too: any line it prints is a defect of the unit.
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr


@pytest.mark.parametrize("name", UNITS)
def test_unit_is_notify_with_a_watchdog_and_hardened(name, tmp_path, analyze):
    text = (ROOT / "systemd" / name).read_text()
    assert re.search(r"^Type=notify$", text, re.M) and re.search(r"^WatchdogSec=\d+", text, re.M)
    out = subprocess.run([analyze, "security", "--offline=true", str(_unit_here(name, tmp_path))],
                         capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", out.stdout + out.stderr)
    assert m, out.stdout[-2000:] + out.stderr[-2000:]
    print(f"\n[systemd] {name}: exposure {m.group(1)}")
    assert float(m.group(1)) <= MAX_EXPOSURE[name]


def test_notifier_sends_ready_and_rate_limited_watchdog(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(path)
        srv.settimeout(2)
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
        assert n.enabled and n.watchdog_s == 2.0
        n.ready("serving")
        n.ready("again")  # only once
        n.watchdog()
        n.watchdog()  # within half the period: not sent
        got = [srv.recv(4096).decode() for _ in range(2)]
        srv.settimeout(0.2)
        with pytest.raises(socket.timeout):
            srv.recv(4096)
    assert got == ["READY=1\nSTATUS=serving", "WATCHDOG=1"]


def test_notifier_is_silent_without_systemd_and_for_another_pid():
    assert not Notifier({}).enabled
    Notifier({}).ready()  # no socket: nothing happens, nothing raises
    other = Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_s is None  # the watchdog belongs to another process
    other.ready()  # an unreachable socket is not an error


@pytest.mark.parametrize("cmd", [
    ["segue-server", "--tts", "espeak", "--state-dir", "{tmp}/state"],
    ["segue-device", "--id", "notify1", "--audio", "virtual", "--aec", "none"],
])
def test_processes_say_ready_after_the_broker_and_ping_the_watchdog(cmd, tmp_path, broker):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(path)
        srv.settimeout(20)
        env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
        argv = [str(BIN / cmd[0]), "--broker", broker.url] + [a.replace("{tmp}", str(tmp_path)) for a in cmd[1:]]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            got = [srv.recv(4096).decode() for _ in range(4)]
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
        stopping = []
        srv.settimeout(1)
        try:
            while True:
                stopping.append(srv.recv(4096).decode())
        except socket.timeout:
            pass
    ready = [i for i, m in enumerate(got) if m.startswith("READY=1")]
    assert len(ready) == 1, (got, err[-2000:])
    assert got[ready[0] + 1:].count("WATCHDOG=1") >= 1 and got.count("WATCHDOG=1") >= 2, got
    assert "STOPPING=1" in stopping and proc.returncode == 0, (stopping, err[-2000:])
