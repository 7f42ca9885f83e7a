"""Re-cutting a timestamped sample stream into fixed-size frames (AEC, VAD and wake word sizes differ)."""

from __future__ import annotations

import numpy as np


def as_int16(pcm: np.ndarray | bytes) -> np.ndarray:
    """Mono int16 PCM from an int16 array or little-endian bytes; anything else is an error
    (a silent float->int mix-up would feed a model garbage)."""
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        return np.frombuffer(pcm, dtype="<i2")
    arr = np.asarray(pcm)
    if arr.dtype != np.int16:
        raise TypeError(f"expected mono int16 PCM, got dtype {arr.dtype}")
    return arr.reshape(-1)


class Reframer:
    """Push chunks of any size with the stream time of their first sample; get whole frames out."""

    def __init__(self, frame_samples: int, sample_rate: int) -> None:
        self.frame_samples = frame_samples
        self.sample_rate = sample_rate
        self._buf = np.zeros(0, dtype=np.int16)
        self._t0 = 0.0  # stream time of _buf[0]

    def push(self, pcm: np.ndarray, t: float) -> list[tuple[np.ndarray, float]]:
        if len(self._buf) == 0:
            self._t0 = t
            buf = np.asarray(pcm, dtype=np.int16)
        else:
            buf = np.concatenate([self._buf, np.asarray(pcm, dtype=np.int16)])
        n = self.frame_samples
        whole = len(buf) // n
        out = [(buf[i * n : (i + 1) * n], self._t0 + i * n / self.sample_rate) for i in range(whole)]
        self._buf = buf[whole * n :].copy() if whole else buf
        if whole:
            self._t0 += whole * n / self.sample_rate
        return out

    def reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.int16)
