"""Streaming sample-rate conversion with stream times kept: the card's rate -> the models' 16 kHz.

A sound card runs at whatever rate it likes (44.1 kHz is the most common for USB audio), while the
mic path's models are fixed: WebRTC VAD takes 8/16/32/48 kHz only, openwakeword and Whisper take
16 kHz. So the mic path converts once at its entrance, mic and echo reference alike.

The converter is libsoxr (`soxr.ResampleStream`, HQ): it keeps its filter state across buffers, so
there are no clicks at buffer edges, and it costs about 0.3 ms of CPU per second of audio at
44.1/48 kHz on this machine (x86, one core), far below anything else in the path. soxr drops its
leading filter delay, so output sample j of a run is the input at `start + j / rate_out` exactly;
its output lags its input by `delay()` samples (about 10 ms, 29 ms from 8 kHz), which is processing
latency, not a timestamp error. A run restarts when the input's stream time jumps (a gap or an
overrun in the card's timeline): what was still inside the filter then is dropped (~10 ms).
"""

from __future__ import annotations

import numpy as np

MODEL_RATE = 16000


class StreamResampler:
    """Push (int16 chunk, stream time of its first sample); get (int16 chunk, time of its first sample)."""

    def __init__(self, rate_in: int, rate_out: int = MODEL_RATE, quality: str = "HQ", max_jump_s: float = 0.05) -> None:
        self.rate_in = int(rate_in)
        self.rate_out = int(rate_out)
        self.quality = quality
        self.max_jump_s = max_jump_s
        self._stream = None
        self._t0 = 0.0  # stream time of the run's first input sample
        self._n_in = 0  # input samples pushed in this run
        self._n_out = 0  # output samples returned in this run
        self._running = False

    @property
    def passthrough(self) -> bool:
        return self.rate_in == self.rate_out

    def push(self, pcm: np.ndarray, t: float) -> tuple[np.ndarray, float]:
        x = np.asarray(pcm, dtype=np.int16).reshape(-1)
        if self.passthrough:
            return x, t
        expected = self._t0 + self._n_in / self.rate_in
        if not self._running or abs(t - expected) > self.max_jump_s:
            self._restart(t)
        y = self._stream.resample_chunk(x, last=False)  # type: ignore[union-attr]
        t_out = self._t0 + self._n_out / self.rate_out
        self._n_in += len(x)
        self._n_out += len(y)
        return np.asarray(y, dtype=np.int16), t_out

    def _restart(self, t: float) -> None:
        import soxr

        if self._stream is None:
            self._stream = soxr.ResampleStream(self.rate_in, self.rate_out, 1, dtype="int16", quality=self.quality)
        else:
            self._stream.clear()
        self._t0, self._n_in, self._n_out, self._running = t, 0, 0, True

    def reset(self) -> None:
        self._running = False

    @property
    def lag_s(self) -> float:
        """How far the output trails the input (filter delay), in seconds."""
        if self.passthrough or self._stream is None:
            return 0.0
        return float(self._stream.delay()) / self.rate_out
