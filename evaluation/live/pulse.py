"""A private PulseAudio server with a null sink and a null (or pipe) source: a real clocked sound card.

(Moved here from tests/support/pulse.py, which re-exports it: live mode builds its room on it.)

This machine has no sound card and an ALSA `null` PCM has no clock, so PortAudio tests run against a
PulseAudio started here as a plain process (root is fine: no `--system`), with everything it writes
(socket, runtime and state directories, log) inside one temporary directory. PortAudio reaches it
through ALSA's pulse plugin: `client_env()` gives `PULSE_SERVER` and an `XDG_CONFIG_HOME` whose
`alsa/asoundrc` makes the default ALSA PCM `pulse`. Set those variables *before* `pyaudio.PyAudio()`
is created (ALSA reads its configuration when PortAudio initialises).

No PID file is written (`--use-pid-file=no`): nothing named `pid` appears under the runtime path.

    with PulseAudio() as pulse:
        os.environ.update(pulse.client_env())
        ...  # open PortAudio's default devices

`PulseUnavailable` is raised, naming the apt packages, when the programs or the ALSA plugin are missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

APT_PACKAGES = ("pulseaudio", "pulseaudio-utils", "libasound2-plugins", "alsa-utils")
INSTALL_HINT = "apt-get install --no-install-recommends " + " ".join(APT_PACKAGES)

PULSEAUDIO = shutil.which("pulseaudio") or "/usr/bin/pulseaudio"
PACTL = shutil.which("pactl") or "/usr/bin/pactl"
ALSA_PULSE_PLUGIN_GLOBS = (
    "/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so",
    "/usr/lib/alsa-lib/libasound_module_pcm_pulse.so",
    "/usr/lib64/alsa-lib/libasound_module_pcm_pulse.so",
)


class PulseUnavailable(RuntimeError):
    """PulseAudio or the ALSA pulse plugin is not installed."""


def missing_requirements() -> list[str]:
    """What is missing to run a private PulseAudio that PortAudio can reach (empty when all is there)."""
    missing = []
    if not Path(PULSEAUDIO).exists():
        missing.append("the `pulseaudio` program (apt: pulseaudio)")
    if not Path(PACTL).exists():
        missing.append("the `pactl` program (apt: pulseaudio-utils)")
    if not any(glob.glob(g) for g in ALSA_PULSE_PLUGIN_GLOBS):
        missing.append("ALSA's pulse plugin libasound_module_pcm_pulse.so (apt: libasound2-plugins)")
    return missing


class PulseAudio:
    """One PulseAudio process: sink `segue_spk` (null) and source `segue_mic` (null, or a pipe).

    `source="null"` gives a clocked silent microphone. `source="pipe"` uses `module-pipe-source` on a
    FIFO that this class keeps fed with `mic_pcm` (looped; silence by default) at real-time rate from a
    thread: an unfed pipe source stalls capture, and a stalled capture stalls a full-duplex stream.
    """

    SINK = "segue_spk"
    SOURCE = "segue_mic"

    def __init__(self, sample_rate: int = 16000, channels: int = 1, source: str = "null",
                 mic_pcm: bytes | None = None, startup_timeout_s: float = 10.0) -> None:
        if source not in ("null", "pipe"):
            raise ValueError("source must be 'null' or 'pipe'")
        self.sample_rate = sample_rate
        self.channels = channels
        self.source = source
        self.mic_pcm = mic_pcm
        self.startup_timeout_s = startup_timeout_s
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self._feeder: threading.Thread | None = None
        self._stop_feed = threading.Event()
        self._log_text = ""

    # ---- paths (valid after start) ----
    @property
    def socket(self) -> Path:
        assert self.dir is not None
        return self.dir / "native"

    @property
    def server(self) -> str:
        return f"unix:{self.socket}"

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "pulse.log"

    def client_env(self) -> dict[str, str]:
        """Environment for a client process (PortAudio/ALSA or pactl) to use this server by default."""
        assert self.dir is not None, "start() first"
        return {
            "PULSE_SERVER": self.server,
            # ALSA reads $XDG_CONFIG_HOME/alsa/asoundrc; the pulse client library keeps its cookie and
            # client.conf under $XDG_CONFIG_HOME/pulse, so nothing lands in the real home directory.
            "XDG_CONFIG_HOME": str(self.dir / "xdg"),
        }

    def log(self) -> str:
        if self.dir is not None and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return self._log_text

    # ---- lifecycle ----
    def start(self) -> PulseAudio:
        missing = missing_requirements()
        if missing:
            raise PulseUnavailable(
                "PulseAudio is needed as a clocked sound card for the PortAudio tests; missing: "
                + "; ".join(missing) + f". Install with: {INSTALL_HINT}"
            )
        # A short path of our own: a unix socket path must stay under ~108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="segue-pulse-"))
        for sub in ("runtime", "state", "home", "xdg/alsa"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir / "runtime", 0o700)
        (self.dir / "xdg" / "alsa" / "asoundrc").write_text(
            "pcm.!default { type pulse }\nctl.!default { type pulse }\n"
        )
        lines = [f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}",
                 *self.module_lines()]
        script = self.dir / "segue.pa"
        script.write_text("\n".join(lines) + "\n")

        env = dict(os.environ)
        env.update({
            "HOME": str(self.dir / "home"),
            "PULSE_RUNTIME_PATH": str(self.dir / "runtime"),
            "XDG_RUNTIME_DIR": str(self.dir / "runtime"),
            "PULSE_STATE_PATH": str(self.dir / "state"),
            "XDG_CONFIG_HOME": str(self.dir / "xdg"),
        })
        env.pop("PULSE_SERVER", None)
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [PULSEAUDIO, "-n", "-F", str(script), "--daemonize=no", "--exit-idle-time=-1",
             "--use-pid-file=no", "--no-cpu-limit", "--realtime=no", "--log-target=stderr"],
            env=env, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
        )
        if self.source == "pipe":
            self._start_feeder()
        try:
            self._wait_ready()
        except Exception:
            self.stop()
            raise
        return self

    def module_lines(self) -> list[str]:
        """The startup script after the protocol module: sinks, sources and defaults (subclasses: a room)."""
        assert self.dir is not None
        spec = f"rate={self.sample_rate} channels={self.channels}"
        lines = [f"load-module module-null-sink sink_name={self.SINK} {spec}"]
        if self.source == "null":
            lines.append(f"load-module module-null-source source_name={self.SOURCE} {spec}")
        else:
            fifo = self.dir / "mic.fifo"  # module-pipe-source creates it (and refuses an existing one)
            lines.append(f"load-module module-pipe-source source_name={self.SOURCE} file={fifo} "
                         f"format=s16le {spec}")
        return lines + [f"set-default-sink {self.SINK}", f"set-default-source {self.SOURCE}"]

    def pactl(self, *args: str, timeout: float = 5.0) -> str:
        """Run `pactl` against this server; raises RuntimeError with its output on failure."""
        env = dict(os.environ, **self.client_env())
        r = subprocess.run([PACTL, *args], env=env, capture_output=True, text=True, check=False, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)} failed: {(r.stdout + r.stderr).strip()}")
        return r.stdout

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        env = dict(os.environ, **self.client_env())
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"pulseaudio exited with code {self.proc.returncode}:\n{self.log()[-3000:]}")
            if "Failed to load module" in self.log():
                raise RuntimeError(f"pulseaudio could not load a module:\n{self.log()[-3000:]}")
            if self.socket.exists():
                r = subprocess.run([PACTL, "list", "short", "sources"], env=env, capture_output=True, check=False,
                                   text=True, timeout=5)
                last = r.stdout + r.stderr
                if r.returncode == 0 and self.ready_name() in r.stdout:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"pulseaudio not ready within {self.startup_timeout_s}s (pactl: {last.strip()!r}):\n"
                           f"{self.log()[-3000:]}")

    def ready_name(self) -> str:
        """A source whose presence in `pactl list short sources` means the script has run."""
        return self.SOURCE

    def _start_feeder(self) -> None:
        fifo = self.dir / "mic.fifo"
        frame = 2 * self.channels
        chunk_frames = self.sample_rate // 100  # 10 ms
        pcm = self.mic_pcm or bytes(frame * chunk_frames)
        pcm = pcm[: len(pcm) - len(pcm) % frame] or bytes(frame * chunk_frames)

        def feed() -> None:
            while not fifo.exists():
                if self._stop_feed.wait(0.01):
                    return
            try:
                fd = os.open(fifo, os.O_WRONLY)  # blocks until pulseaudio opens the FIFO for reading
            except OSError:
                return
            try:
                t0, sent, pos, step = time.monotonic(), 0, 0, chunk_frames * frame
                while not self._stop_feed.is_set():
                    # Stay ~50 ms ahead of real time so the source never starves.
                    ahead = sent / (self.sample_rate * frame) - (time.monotonic() - t0)
                    if ahead > 0.05:
                        time.sleep(0.005)
                        continue
                    piece = (pcm[pos:] + pcm)[:step] if pos + step > len(pcm) else pcm[pos:pos + step]
                    pos = (pos + step) % len(pcm)
                    os.write(fd, piece)
                    sent += len(piece)
            except OSError:
                pass
            finally:
                os.close(fd)

        self._feeder = threading.Thread(target=feed, name="pulse-mic-feeder", daemon=True)
        self._feeder.start()

    def stop(self) -> None:
        self._stop_feed.set()
        if self._feeder is not None and self._feeder.is_alive() and self.dir is not None:
            try:  # a feeder still blocked in open() of the FIFO needs a reader to get going
                os.close(os.open(self.dir / "mic.fifo", os.O_RDONLY | os.O_NONBLOCK))
            except OSError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._feeder is not None:
            self._feeder.join(2)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.dir is not None:
            self._log_text = self.log()
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
