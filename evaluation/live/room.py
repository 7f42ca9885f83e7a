"""The live room on a private PulseAudio: the device's speaker, its microphone, the echo path, the ear.

    segue_spk  (null sink, default sink)        <- the device's speaker (PortAudio over ALSA's pulse plugin)
    segue_spk.monitor  -> parec -> ear.wav       (the ear: exactly the samples the speaker played)
    segue_spk.monitor  -> module-loopback (echo_delay_ms, echo_gain) -> segue_room
    user's speech (pacat)                        -> segue_room
    segue_room.monitor (default source)          -> the device's microphone; parec -> mic.wav

A null sink's monitor hands out the very samples mixed into the sink, so the ear recording of a
single stream at unity volume is bit-exact with what the device played: that is what makes the
recording a ground truth that does not come from segue's arithmetic.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

import numpy as np

from evaluation.live.pulse import PulseAudio, PulseUnavailable

PAREC = shutil.which("parec") or "/usr/bin/parec"
PACAT = shutil.which("pacat") or "/usr/bin/pacat"


@dataclass(frozen=True)
class EchoPath:
    """What PulseAudio really gave the echo loopback (the requested values beside it)."""

    requested_delay_ms: float
    requested_gain: float
    latency_msec_arg: int  # what module-loopback was asked for
    volume: str  # the loopback's sink-input volume as pactl shows it
    module: int | None  # None: no loopback (echo_gain 0)


class Room(PulseAudio):
    SINK = "segue_spk"
    ROOM = "segue_room"
    SOURCE = "segue_room.monitor"

    def module_lines(self) -> list[str]:
        spec = f"rate={self.sample_rate} channels=1"
        return [
            f"load-module module-null-sink sink_name={self.SINK} {spec} sink_properties=device.description=speaker",
            f"load-module module-null-sink sink_name={self.ROOM} {spec} sink_properties=device.description=room",
            f"set-default-sink {self.SINK}",
            f"set-default-source {self.SOURCE}",
        ]

    def ready_name(self) -> str:
        return f"{self.ROOM}.monitor"

    def start(self) -> "Room":
        for prog, pkg in ((PAREC, "pulseaudio-utils"), (PACAT, "pulseaudio-utils")):
            if not os.path.exists(prog):
                raise PulseUnavailable(f"live mode needs `{os.path.basename(prog)}` (apt: {pkg})")
        super().start()
        return self

    def env(self) -> dict[str, str]:
        return dict(os.environ, **self.client_env())

    def add_echo(self, delay_ms: float, gain: float) -> EchoPath:
        """The speaker's echo into the room: module-loopback at `delay_ms`, its volume at `gain` (linear).

        `adjust_time=0`: the loopback's adaptive resampling is off, so the echo path is a fixed delay,
        as a room's is. With it on, the path wandered 40 -> 53 ms over a minute, in steps of ~6 ms
        (measured ear -> mic in the recordings): a moving room no canceller is built for."""
        if gain <= 0:
            return EchoPath(delay_ms, gain, 0, "none", None)
        latency = max(1, int(round(delay_ms)))
        out = self.pactl("load-module", "module-loopback", f"source={self.SINK}.monitor", f"sink={self.ROOM}",
                         f"latency_msec={latency}", "source_dont_move=true", "sink_dont_move=true",
                         "remix=false", "adjust_time=0").strip()
        module = int(out)
        idx = self._sink_input_of(module)
        volume = "?"
        if idx is not None:
            self.pactl("set-sink-input-volume", str(idx), f"{gain:.4f}")  # a bare decimal is a linear factor
            volume = self._sink_input_volume(idx)
        return EchoPath(delay_ms, gain, latency, volume, module)

    def _sink_inputs(self) -> dict[int, str]:
        """Sink input index -> its block of `pactl list sink-inputs`."""
        blocks = self.pactl("list", "sink-inputs").split("Sink Input #")[1:]
        return {int(b.split("\n", 1)[0].strip()): b for b in blocks}

    def _sink_input_of(self, module: int) -> int | None:
        for _ in range(50):
            for idx, block in self._sink_inputs().items():
                if re.search(rf"Owner Module: {module}\b", block):
                    return idx
            time.sleep(0.05)
        return None

    def _sink_input_volume(self, idx: int) -> str:
        m = re.search(r"Volume: (.*)", self._sink_inputs().get(idx, ""))
        return m.group(1).strip() if m else "?"

    def recorder(self, source: str) -> "Recorder":
        return Recorder(self, source)

    def play(self, pcm: np.ndarray) -> "Player":
        """Play int16 mono PCM into the room (the user's voice); returns at once."""
        return Player(self, pcm)


class Recorder:
    """`parec` of one source for the whole run, read in real time.

    `t0` is the monotonic time of sample 0, estimated as min(arrival - samples so far / rate) over the
    chunks read: a chunk cannot arrive before its last sample was captured, so the minimum is the
    tightest bound (its error is the recorder's own buffering, ~10 ms with --latency-msec=10).
    """

    def __init__(self, room: Room, source: str) -> None:
        self.rate = room.sample_rate
        self.source = source
        self._buf = bytearray()
        self._lock = threading.Lock()
        self.t0 = float("inf")
        self.proc = subprocess.Popen(
            [PAREC, f"--device={source}", f"--rate={self.rate}", "--channels=1", "--format=s16le", "--raw",
             "--latency-msec=10", "--client-name=segue-eval", f"--stream-name=rec-{source}"],
            env=room.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._thread = threading.Thread(target=self._read, name=f"parec-{source}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                return
            now = time.monotonic()
            with self._lock:
                self._buf += chunk
                n = len(self._buf) // 2
            self.t0 = min(self.t0, now - n / self.rate)

    def samples(self) -> np.ndarray:
        """Everything recorded so far (a copy)."""
        with self._lock:
            data = bytes(self._buf[: len(self._buf) - len(self._buf) % 2])
        return np.frombuffer(data, dtype="<i2")

    def __len__(self) -> int:
        return len(self._buf) // 2

    def time_of(self, sample: int) -> float:
        return self.t0 + sample / self.rate

    def sample_at(self, mono: float) -> int:
        return int(round((mono - self.t0) * self.rate))

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(2)
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        return err


# The user's voice stream keeps this much buffered in the server. With 20 ms, a loaded machine chopped
# the voice into 50 ms bursts between exact-zero gaps (mic.wav, a live test run beside other tests):
# the null sink, catching up after a stall, found the stream empty. The device then heard a voice no
# person makes, and the recording placed its start 0.3 s late, so the device's correct barge-in looked
# like one with no user speech. The voice's timing is read from the recording, so a deeper buffer
# costs the measurement nothing.
USER_LATENCY_MS = 200


class Player:
    """One utterance played into the room with `pacat` (a pulse client stream of its own)."""

    def __init__(self, room: Room, pcm: np.ndarray) -> None:
        self.samples = len(pcm)
        self.duration = len(pcm) / room.sample_rate
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [PACAT, "--playback", f"--device={room.ROOM}", f"--rate={room.sample_rate}", "--channels=1",
             "--format=s16le", "--raw", f"--latency-msec={USER_LATENCY_MS}", "--client-name=segue-user"],
            env=room.env(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        data = pcm.astype("<i2").tobytes()

        def feed() -> None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.close()
            except OSError:
                pass

        threading.Thread(target=feed, name="pacat-user", daemon=True).start()

    def done(self) -> bool:
        return self.proc.poll() is not None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
