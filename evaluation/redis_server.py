"""Start a real redis-server on a free port (tests, benches), as `evaluation.broker` starts Mosquitto.

No persistence (`--save ''`, no AOF): every run starts empty and leaves nothing behind.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from evaluation.broker import ServerProcess, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer(ServerProcess):
    name = "redis-server"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        if not Path(REDIS_SERVER).exists():
            raise RuntimeError("redis-server is not installed: run scripts/setup.sh (apt: redis-server)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log_path = self.workdir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        return self._launch([REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(self.workdir), "--logfile", str(self.log_path)])
