"""The house rules on imports: icp/ is sans-I/O; device/ and server/ meet only on the wire."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_CORE = {
    "paho", "pyaudio", "openai", "gpiozero", "vosk", "openwakeword", "faster_whisper", "numpy",
    "socket", "asyncio", "threading", "time", "datetime", "sqlite3", "http", "urllib", "requests",
    "subprocess", "multiprocessing", "selectors", "ssl", "os", "io", "pathlib",
    "device", "server", "provisioning", "evaluation",
}


def imported_modules(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_core_imports_no_io_clock_or_outer_package():
    bad = {f: sorted(n & FORBIDDEN_IN_CORE) for f, n in imported_modules("icp").items() if n & FORBIDDEN_IN_CORE}
    assert not bad, f"icp/ must stay sans-I/O: {bad}"


def test_device_and_server_do_not_import_each_other():
    for package, other in (("device", "server"), ("server", "device")):
        bad = [f for f, names in imported_modules(package).items() if other in names]
        assert not bad, f"{package}/ imports {other}/ in {bad}; they meet only on the wire"


def test_core_imports_on_a_bare_interpreter():
    """`import icp` with no third-party package: -S leaves site-packages out."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            "import icp, icp.machine, icp.messages, icp.context, icp.strategies; print('ok')")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd="/", capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
