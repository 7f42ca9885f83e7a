"""Run llama.cpp's OpenAI-compatible server (llama-cpp-python) as a child process.

The offline default LLM is SmolLM2-135M-Instruct (GGUF) served by `python -m llama_cpp.server`;
segue then talks to it with the same `openai` client it uses for any endpoint (`server.llm`).
Both the package and the model file come from `scripts/setup.sh`; when either is missing the error
says so instead of failing somewhere inside a subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "models" / "llm" / "smollm2-135m-instruct.gguf"
DEFAULT_ALIAS = "smollm2"


class LlamaServerError(RuntimeError):
    """llama.cpp's server is not installed, has no model, or did not come up."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def llama_cpp_installed(python: str = sys.executable) -> bool:
    if python == sys.executable:
        return importlib.util.find_spec("llama_cpp") is not None
    return subprocess.run([python, "-c", "import llama_cpp.server"], capture_output=True).returncode == 0


class LlamaServer:
    """`with LlamaServer() as llm: ChatStream(..., model=llm.alias, base_url=llm.base_url)`."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        alias: str = DEFAULT_ALIAS,
        host: str = "127.0.0.1",
        port: int | None = None,
        n_threads: int = 2,
        n_ctx: int = 2048,
        startup_timeout: float = 120.0,
        python: str = sys.executable,
        extra_args: list[str] | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path else DEFAULT_MODEL
        if not self.model_path.is_absolute():
            self.model_path = REPO_ROOT / self.model_path
        self.alias, self.host, self.port = alias, host, port
        self.n_threads, self.n_ctx = n_threads, n_ctx
        self.startup_timeout = startup_timeout
        self.python = python
        self.extra_args = list(extra_args or [])
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: tempfile._TemporaryFileWrapper[bytes] | None = None  # type: ignore[name-defined]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        assert self.port is not None
        return [
            self.python, "-m", "llama_cpp.server", "--model", str(self.model_path),
            "--model_alias", self.alias, "--host", self.host, "--port", str(self.port),
            "--n_threads", str(self.n_threads), "--n_ctx", str(self.n_ctx), *self.extra_args,
        ]

    def start(self) -> LlamaServer:
        if not llama_cpp_installed(self.python):
            raise LlamaServerError(
                "llama-cpp-python is not installed: run scripts/setup.sh "
                "(or pip install 'llama-cpp-python[server]'), or point segue at another OpenAI-compatible endpoint"
            )
        if not self.model_path.is_file():
            raise LlamaServerError(f"LLM model file not found: {self.model_path} (run scripts/setup.sh to fetch it)")
        if self.port is None:
            self.port = free_port(self.host)
        self._log_file = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
        log.info("starting llama.cpp server: %s", " ".join(self.command()))
        self._proc = subprocess.Popen(self.command(), stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        started = time.monotonic()
        next_note = started + 5.0
        while True:
            if self._proc.poll() is not None:
                raise LlamaServerError(f"llama.cpp server exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as resp:
                    models = json.load(resp)
                ids = [m.get("id") for m in models.get("data", [])]
                log.info("llama.cpp server ready on %s after %.1f s (models %s)", self.base_url, time.monotonic() - started, ids)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
            now = time.monotonic()
            if now - started > self.startup_timeout:
                raise LlamaServerError(
                    f"llama.cpp server did not answer {self.base_url}/models within {self.startup_timeout:.0f} s:\n{self.log_tail()}"
                )
            if now >= next_note:
                log.info("waiting for llama.cpp server on %s (%.0f s)", self.base_url, now - started)
                next_note = now + 5.0
            time.sleep(0.1)

    def log_tail(self, lines: int = 20) -> str:
        if self._log_file is None:
            return ""
        try:
            text = Path(self._log_file.name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            Path(self._log_file.name).unlink(missing_ok=True)
            self._log_file = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
