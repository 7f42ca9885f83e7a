"""A virtual full-duplex sound card on a sample-accurate simulated clock.

It is the ground truth of the evaluation: buffer k captures mic samples [kN, kN+N), its callback
runs at (k+1)N (plus seeded jitter), and the speaker samples it returns reach the ear from
(k+1)N + latency on, one sample per sample period, with no gaps in the DAC timeline. The ear tap
records what reached the ear and when from the card's own arithmetic (handover + latency), never
from the playback's cursor bookkeeping, so it can judge that bookkeeping. Time advances only by
`step()`/`run()`: a minute of audio simulates in well under a second, unless `realtime` pacing is
asked for (demos).
"""

from __future__ import annotations

import bisect
import math
import time as _wall
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np

from device.audio.base import AudioCallback, StreamTimes, split_result

MicGenerator = Callable[[int, int], Optional[np.ndarray]]
"""`fn(first_sample, n)` -> up to n int16 samples for mic samples first_sample.. (None: silence)."""


@dataclass(frozen=True)
class VirtualCardSettings:
    """The `audio:` block of a scenario, plus knobs for robustness tests."""

    sample_rate: int = 16000
    buffer_ms: float = 20.0
    output_latency_ms: float = 100.0  # handover -> ear
    jitter_ms: float = 0.0            # callback lateness, uniform [0, jitter_ms]; DAC timeline unaffected
    echo_gain: float = 0.0            # speaker -> mic level
    echo_delay_ms: float = 20.0       # ear -> mic acoustic delay
    dac_time_error_ms: float = 0.0    # reported output_dac_time minus the truth
    seed: int = 0

    @property
    def frames_per_buffer(self) -> int:
        """Whole samples, as a real sound card's buffer is: buffer_ms is rounded."""
        n = round(self.sample_rate * self.buffer_ms / 1000)
        if n < 1:
            raise ValueError(f"buffer_ms={self.buffer_ms} is less than one sample at {self.sample_rate} Hz")
        return int(n)


class EarSpan(NamedTuple):
    """Samples start..start+count of `segment` reached the ear from ear sample `ear_sample` on."""

    segment: int
    start: int
    count: int
    ear_sample: int


class _Growable:
    """An int16 signal indexed by absolute sample, growing by doubling (amortised O(1))."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.data = np.zeros(capacity, dtype=np.int16)
        self.length = 0

    def ensure(self, end: int) -> None:
        if end > len(self.data):
            cap = len(self.data)
            while cap < end:
                cap *= 2
            grown = np.zeros(cap, dtype=np.int16)
            grown[: self.length] = self.data[: self.length]
            self.data = grown

    def write(self, at: int, pcm: np.ndarray) -> None:
        self.ensure(at + len(pcm))
        self.data[at : at + len(pcm)] = pcm
        self.length = max(self.length, at + len(pcm))

    def read(self, start: int, n: int) -> np.ndarray:
        """Samples start..start+n; never-written or negative positions read as zero."""
        out = np.zeros(n, dtype=np.int16)
        lo, hi = max(start, 0), min(start + n, self.length)
        if hi > lo:
            out[lo - start : hi - start] = self.data[lo:hi]
        return out

    def view(self) -> np.ndarray:
        return self.data[: self.length]


class EarTap:
    """What reached the listener's ear, sample by sample, with provenance. Times in stream seconds."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._pcm = _Growable()
        self.spans: list[EarSpan] = []
        self._span_ends: list[int] = []  # ear sample after each span, ascending (for bisect)

    # -- recording (the card) --
    def _record(self, ear_sample: int, pcm: np.ndarray, spans) -> None:
        self._pcm.write(ear_sample, pcm)
        for s in spans:
            if s.count > 0:
                self.spans.append(EarSpan(s.segment, s.start, s.count, ear_sample + s.offset))
                self._span_ends.append(ear_sample + s.offset + s.count)

    # -- queries (the listener, tests, metrics) --
    @property
    def pcm(self) -> np.ndarray:
        """Everything that reached the ear, sample m at time m / sample_rate."""
        return self._pcm.view()

    def sample_index(self, t: float) -> int:
        """Ear samples strictly before time t (samples m with m / rate < t)."""
        return max(0, math.ceil(t * self.sample_rate - 1e-6))

    def heard(self, segment: int, t: float = math.inf) -> int:
        """Samples of `segment` that reached the ear before time t (its heard cursor)."""
        m = self.sample_index(t) if math.isfinite(t) else 1 << 62
        best = 0
        for s in self.spans:
            if s.segment == segment and s.ear_sample < m:
                best = max(best, s.start + min(s.count, m - s.ear_sample))
        return best

    def last_heard(self, t: float = math.inf) -> Optional[tuple[int, int]]:
        """`(segment, samples)` of the agent sample that most recently reached the ear before t."""
        m = self.sample_index(t) if math.isfinite(t) else 1 << 62
        for s in reversed(self.spans):
            if s.ear_sample < m:
                return s.segment, s.start + min(s.count, m - s.ear_sample)
        return None

    def when(self, segment: int, sample: int) -> Optional[float]:
        """The time sample `sample` of `segment` reached the ear (None: it never did)."""
        for s in self.spans:
            if s.segment == segment and s.start <= sample < s.start + s.count:
                return (s.ear_sample + sample - s.start) / self.sample_rate
        return None

    def last_agent_time(self, before: float = math.inf) -> Optional[float]:
        """When the last agent (segment) sample before `before` reached the ear."""
        m = self.sample_index(before) if math.isfinite(before) else 1 << 62
        i = bisect.bisect_left(self._span_ends, m)
        if i < len(self.spans):
            s = self.spans[i]
            if s.ear_sample < m:
                return (m - 1) / self.sample_rate
        if i == 0:
            return None
        return (self._span_ends[i - 1] - 1) / self.sample_rate

    def sequence(self, segment: int) -> list[tuple[int, int]]:
        """The (start, count) runs of `segment` in ear order, adjacent runs merged."""
        runs: list[tuple[int, int]] = []
        for s in self.spans:
            if s.segment != segment:
                continue
            if runs and runs[-1][0] + runs[-1][1] == s.start:
                runs[-1] = (runs[-1][0], runs[-1][1] + s.count)
            else:
                runs.append((s.start, s.count))
        return runs


class VirtualCard:
    """The simulated full-duplex stream; implements `AudioBackend`."""

    def __init__(self, settings: VirtualCardSettings = VirtualCardSettings(), realtime: bool = False) -> None:
        self.settings = settings
        self.sample_rate = settings.sample_rate
        self.frames_per_buffer = settings.frames_per_buffer
        self.realtime = realtime
        sr = settings.sample_rate
        self._latency = int(round(settings.output_latency_ms * sr / 1000))
        self._echo_delay = int(round(settings.echo_delay_ms * sr / 1000))
        if self._latency < 0 or self._echo_delay < 0:
            raise ValueError("latency and echo delay must be >= 0")
        self._rng = np.random.default_rng(settings.seed)
        self._callback: Optional[AudioCallback] = None
        self._buffers = 0  # buffers completed
        self._sources: list[tuple[int, np.ndarray]] = []
        self._generators: list[tuple[int, MicGenerator]] = []
        self._listeners: list[Callable[[], None]] = []
        self.ear = EarTap(sr)
        self._mic = _Growable()
        self._wall_start: Optional[float] = None

    # -- AudioBackend --
    def start(self, callback: AudioCallback) -> None:
        self._callback = callback

    def stop(self) -> None:
        self._callback = None

    def time(self) -> float:
        """Stream time now: the nominal time of the last callback."""
        return self._buffers * self.frames_per_buffer / self.sample_rate

    stepped = True  # the harness (or DeviceApp.serve) calls step() for every buffer

    @property
    def simulated(self) -> bool:
        return not self.realtime

    def failure(self) -> Optional[str]:
        """The virtual card never fails."""
        return None

    def reopen(self) -> bool:
        return True

    # -- mic input --
    def _at(self, at_s: Optional[float]) -> int:
        return self._buffers * self.frames_per_buffer if at_s is None else int(round(at_s * self.sample_rate))

    def add_mic(self, pcm: np.ndarray, at_s: Optional[float] = None) -> int:
        """Mix `pcm` into the mic from stream time `at_s` (default: the next buffer). Returns its first sample."""
        start = self._at(at_s)
        self._sources.append((start, np.asarray(pcm, dtype=np.int16).reshape(-1)))
        return start

    def add_mic_file(self, path: str | Path, at_s: Optional[float] = None) -> int:
        """Mix a mono 16-bit WAV at the card's rate into the mic."""
        with wave.open(str(path), "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != self.sample_rate:
                raise ValueError(f"{path}: need mono 16-bit {self.sample_rate} Hz WAV")
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return self.add_mic(pcm, at_s)

    def add_mic_generator(self, fn: MicGenerator, at_s: Optional[float] = None) -> None:
        """Mix a generator's samples in from `at_s` on; `fn` gets sample numbers relative to that start."""
        self._generators.append((self._at(at_s), fn))

    def on_buffer(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after every buffer (e.g. a device loop that processes the mic in-step)."""
        self._listeners.append(listener)

    @property
    def mic(self) -> np.ndarray:
        """Everything the mic captured so far (sources + echo), sample m at time m / rate."""
        return self._mic.view()

    def _mic_buffer(self, first: int, n: int) -> np.ndarray:
        acc = np.zeros(n, dtype=np.float64)
        for start, pcm in self._sources:
            lo, hi = max(first, start), min(first + n, start + len(pcm))
            if hi > lo:
                acc[lo - first : hi - first] += pcm[lo - start : hi - start]
        for start, fn in self._generators:
            if first + n > start:
                skip = max(0, start - first)
                got = fn(first + skip - start, n - skip)
                if got is not None:
                    got = np.asarray(got).reshape(-1)[: n - skip]
                    acc[skip : skip + len(got)] += got
        if self.settings.echo_gain:
            acc += self.settings.echo_gain * self.ear._pcm.read(first - self._echo_delay, n)
        return np.clip(np.rint(acc), -32768, 32767).astype(np.int16)

    # -- the clock --
    def step(self) -> None:
        """Run one buffer: capture, call back, hand the output over, advance time."""
        n, sr, k = self.frames_per_buffer, self.sample_rate, self._buffers
        first = k * n
        mic = self._mic_buffer(first, n)
        self._mic.write(first, mic)
        handover = first + n  # nominal callback time, in samples
        ear_first = handover + self._latency
        jitter = self._rng.uniform(0.0, self.settings.jitter_ms / 1000) if self.settings.jitter_ms > 0 else 0.0
        times = StreamTimes(
            input_adc_time=first / sr,
            current_time=handover / sr + jitter,
            output_dac_time=ear_first / sr + self.settings.dac_time_error_ms / 1000,
        )
        if self._callback is not None:
            pcm, spans = split_result(self._callback(mic, n, times), n)
        else:
            pcm, spans = np.zeros(n, dtype=np.int16), ()
        self.ear._record(ear_first, pcm, spans)
        self._buffers += 1
        for listener in self._listeners:
            listener()
        if self.realtime:
            if self._wall_start is None:
                self._wall_start = _wall.monotonic() - self.time()
            ahead = self._wall_start + self.time() - _wall.monotonic()
            if ahead > 0:
                _wall.sleep(ahead)

    def run(self, seconds: float) -> None:
        """Advance simulated time by `seconds` (rounded up to whole buffers)."""
        for _ in range(math.ceil(seconds * self.sample_rate / self.frames_per_buffer - 1e-9)):
            self.step()

    def run_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Step until `predicate()` holds or `timeout_s` of simulated time passed; returns whether it held."""
        end = self.time() + timeout_s
        while not predicate():
            if self.time() >= end:
                return False
            self.step()
        return True
