"""`segue-server` and `segue-device` as OS processes, started the way their systemd units start them.

Each gets a TOML file written by the harness (`--config FILE`, as in systemd/*.service) and its own
log file. A process that dies is reported with the tail of its log; stopping sends SIGTERM and
records how long the process took to go (a unit must stop within systemd's timeout), then kills it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from evaluation.scenario import Scenario


def program(name: str) -> list[str]:
    """The console script next to this interpreter (the venv's), else on PATH, else `python -m`."""
    here = Path(sys.executable).with_name(name)
    if here.exists():
        return [str(here)]
    found = shutil.which(name)
    if found:
        return [found]
    module = {"segue-server": "server.cli", "segue-device": "device.cli"}[name]
    return [sys.executable, "-m", module]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml(sections: dict[str, dict[str, Any]]) -> str:
    """A flat TOML document: top-level keys under "" and one table per other section."""
    out = [f"{k} = {_toml_value(v)}" for k, v in sections.get("", {}).items() if v is not None]
    for name, keys in sections.items():
        if name:
            out.append(f"\n[{name}]")
            out += [f"{k} = {_toml_value(v)}" for k, v in keys.items() if v is not None]
    return "\n".join(out) + "\n"


def broker_keys(url: str) -> dict[str, Any]:
    u = urlsplit(url)
    return {"host": u.hostname or "127.0.0.1", "port": u.port or (8883 if u.scheme == "mqtts" else 1883),
            "username": u.username, "password": u.password}


def server_toml(broker_url: str, topic_root: str, llm_base_url: str, llm_model: str, strategy: str,
                group: str) -> str:
    mqtt = broker_keys(broker_url)
    mqtt.update(topic_root=topic_root, group=group)
    return toml({
        "": {"strategy": strategy, "tick_s": 0.01},
        "mqtt": mqtt,
        "llm": {"base_url": llm_base_url, "model": llm_model, "timeout_s": 120.0},
        "tts": {"backend": "espeak"},
        "storage": {"backend": "memory"},
    })


def device_toml(broker_url: str, topic_root: str, device_id: str, scenario: Scenario) -> str:
    """The device as on a Pi (device/example.toml): PortAudio, speex AEC, VAD, barge-in, wake word, Whisper.

    Of the scenario's `audio` block only sample_rate and buffer_ms are device settings on a real card;
    output latency is whatever the sound server gives (measured at the ear), jitter is the machine's own.
    """
    mqtt = broker_keys(broker_url)
    mqtt.update(topic_root=topic_root)
    a = scenario.audio
    return toml({
        "mqtt": mqtt,
        "device": {"id": device_id, "software": "segue-eval-live"},
        "audio": {"backend": "portaudio", "sample_rate": a.sample_rate, "buffer_ms": float(a.buffer_ms)},
        "aec": {"backend": "speex"},
        "bargein": {"enabled": True},
        "wakeword": {"enabled": True, "models": ["hey_jarvis"]},
        "asr": {"backend": "faster-whisper"},
        "telemetry": {"interval_s": 0},
    })


@dataclass
class Proc:
    """One child process with its log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    stop_s: float | None = None  # how long SIGTERM took (None: not stopped by us)
    killed: bool = False

    def start(self) -> "Proc":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child owns it; closed when we return
        try:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def died(self) -> str | None:
        """A one-line report with the log tail if the process has exited, else None."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"{self.name} exited with code {self.proc.returncode}; log tail:\n{self.tail()}"

    def stop(self, timeout_s: float = 5.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.killed = True
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.stop_s = time.monotonic() - t0
