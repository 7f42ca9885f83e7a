"""Start K real `segue-server` worker processes on one broker and one Redis (failover test, engine bench).

Each worker is the command line an operator runs (`segue-server --broker URL --store redis://… --tts
espeak --llm-base-url URL --llm-model NAME`), with its log in `workdir/worker-<i>.log`. A worker is
ready when it logs its broker subscription; `owner_pid()` says which process owns a device (the
worker id is `<host>-<pid>-<random>`, see server.app).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

SEGUE_SERVER = str(Path(sys.executable).with_name("segue-server"))


class EngineWorkers:
    def __init__(self, workdir: Path, count: int, broker_url: str, redis_url: str, llm_url: str,
                 llm_model: str = "scripted", config: str | None = None, extra: list[str] | None = None,
                 topic_root: str = "segue") -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.count = count
        self.redis_url = redis_url
        self.topic_root = topic_root
        args = [SEGUE_SERVER, "--broker", broker_url, "--store", redis_url, "--tts", "espeak",
                "--llm-base-url", llm_url, "--llm-model", llm_model, "--state-dir", str(self.workdir / "state")]
        if config is not None:
            path = self.workdir / "server.toml"
            path.write_text(config)
            args += ["--config", str(path)]
        self.args = args + list(extra or [])
        self.procs: list[subprocess.Popen[bytes]] = []

    def log(self, index: int) -> str:
        path = self.workdir / f"worker-{index}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 20.0) -> "EngineWorkers":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for index in range(self.count):
            out = open(self.workdir / f"worker-{index}.log", "wb")
            self.procs.append(subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env=env))
        deadline = time.monotonic() + timeout
        for index, proc in enumerate(self.procs):
            while "segue-server running" not in self.log(index):
                if proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"worker {index} did not start:\n{self.log(index)[-3000:]}")
                time.sleep(0.05)
        return self

    def owner_pid(self, device_id: str) -> int | None:
        client = redis.Redis.from_url(self.redis_url)
        try:
            token = client.hget(f"segue:{self.topic_root}:dev:{{{device_id}}}", "owner")
        finally:
            client.close()
        if not token:
            return None
        worker = token.decode().rsplit("|", 1)[0]
        return int(worker.rsplit("-", 2)[-2])

    def kill(self, pid: int) -> None:
        """kill -9: no clean shutdown, no hand-over; survivors must notice."""
        os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            if proc.pid == pid:
                proc.wait(5)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the live workers and their children (reply processes) so far."""
        return sum(cpu_s(pid) for proc in self.procs for pid in (proc.pid, *children(proc.pid)))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> "EngineWorkers":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a live process so far (/proc; Linux); 0 when it is gone."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (a worker's reply process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found
