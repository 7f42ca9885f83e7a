"""Start a real Mosquitto broker on a free port with a generated configuration (tests, harness, benches)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0, what: str = "mosquitto") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not open port {port} within {timeout}s")


class ServerProcess:
    """A server started as a child process on `self.port` (Mosquitto, redis-server): started, waited
    for until its port accepts connections, killed on exit; its log (`self.log_path`) kept for asserts."""

    name = "server"
    port: int
    log_path: Path
    proc: "subprocess.Popen[bytes] | None" = None

    def _launch(self, argv: list[str]):  # -> Self
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port, what=self.name)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"{self.name} failed to start: {self.log()}") from None
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def start(self):  # -> Self
        raise NotImplementedError

    def __enter__(self):  # -> Self
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Mosquitto(ServerProcess):
    """A mosquitto process. `config` is the whole config file text or None for an anonymous broker.

    With a config, the caller's text must contain the listener lines; `port` tells which port to
    wait for. Use as a context manager; the process is killed on exit and its log kept for asserts.
    """

    name = "mosquitto"

    def __init__(self, workdir: Path, config: str | None = None, port: int | None = None) -> None:
        if not Path(MOSQUITTO).exists():
            raise RuntimeError("mosquitto is not installed: run scripts/setup.sh (apt: mosquitto)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log_path = self.workdir / "mosquitto.log"
        if config is None:
            config = (
                f"listener {self.port} 127.0.0.1\n"
                "allow_anonymous true\n"
                "set_tcp_nodelay true\n"  # as segue's fleet broker: no 40 ms Nagle stalls towards clients
            )
        if os.geteuid() == 0 and "\nuser " not in "\n" + config:
            config = "user root\n" + config
        config += f"\nlog_dest file {self.log_path}\nlog_type all\n" if "log_dest" not in config else ""
        self.config_path = self.workdir / "mosquitto.conf"
        self.config_path.write_text(config)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "Mosquitto":
        return self._launch([MOSQUITTO, "-c", str(self.config_path)])

    def log(self) -> str:
        text = super().log()
        if self.proc and self.proc.stderr and self.proc.poll() is not None:
            text += self.proc.stderr.read().decode(errors="replace")
        return text
