"""The one interface every TTS backend implements (the factory that picks one is server/tts/factory.py,
so this module imports no backend and every backend can import it).

A backend turns text into 16-bit mono PCM plus one `WordTiming` per `split_words(text)` token (in
order, non-overlapping, inside the audio). The engine maps the device's heard cursor to words with
these timings, so the contract is checked here once (`check_timings`) rather than trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from icp.words import WordTiming, split_words

DEFAULT_SAMPLE_RATE = 16000  # devices play 16 kHz


@dataclass(frozen=True)
class Synthesis:
    pcm: bytes  # s16le mono
    sample_rate: int
    words: tuple[WordTiming, ...]

    @property
    def duration_ms(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate * 1000.0

    def samples(self) -> np.ndarray:
        return np.frombuffer(self.pcm, dtype=np.int16)


@runtime_checkable
class TTSBackend(Protocol):
    name: str
    sample_rate: int  # the rate of every Synthesis this backend returns

    def synthesise(self, text: str) -> Synthesis: ...


class TTSError(RuntimeError):
    """A backend could not be created or could not synthesise."""


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling of a whole segment (FFT; numpy only, so no scipy dependency).

    Segments are short (seconds), so one FFT is cheap and the result is alias-free, which a linear
    interpolator is not when 22.05 kHz piper audio goes down to 16 kHz.
    """
    x = np.asarray(samples, dtype=np.float64)
    if rate_in == rate_out or x.size == 0:
        return x.copy()
    n_out = max(1, int(round(x.size * rate_out / rate_in)))
    spectrum = np.fft.rfft(x)
    keep = min(spectrum.size, n_out // 2 + 1)
    out_spec = np.zeros(n_out // 2 + 1, dtype=complex)
    out_spec[:keep] = spectrum[:keep]
    return np.fft.irfft(out_spec, n_out) * (n_out / x.size)


def to_pcm16(samples: np.ndarray) -> bytes:
    """int16-scaled float samples to s16le bytes, rounded and clipped."""
    return np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()


def trim_leading_silence(syn: Synthesis, keep_ms: float = 10.0, level: int = 300) -> Synthesis:
    """Drop the silence a voice puts before the first word (piper: ~50-65 ms), keeping `keep_ms`.

    Every millisecond of it is a millisecond more between the end of the user's turn and the first
    sound they hear. Never cuts into the first word: the cut stops `keep_ms` before both the first
    sample louder than `level` and the first word's timed start, and every timing moves with it.
    """
    pcm = syn.samples()
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > level)
    if not loud.size or not syn.words:
        return syn
    first_ms = min(loud[0] / syn.sample_rate * 1000.0, syn.words[0].start_ms)
    cut = int(max(0.0, first_ms - keep_ms) * syn.sample_rate / 1000.0)
    if cut <= 0:
        return syn
    shift = cut / syn.sample_rate * 1000.0
    words = tuple(WordTiming(w.word, max(0.0, w.start_ms - shift), max(0.0, w.end_ms - shift)) for w in syn.words)
    return Synthesis(syn.pcm[2 * cut :], syn.sample_rate, words)


def check_timings(text: str, words: tuple[WordTiming, ...], duration_ms: float) -> None:
    """Raise if `words` break the contract the engine relies on (one per token, ordered, inside)."""
    tokens = split_words(text)
    if [w.word for w in words] != tokens:
        raise TTSError(f"word timings {[w.word for w in words]} do not match tokens {tokens}")
    prev_end = 0.0
    for w in words:
        if not (prev_end - 1e-6 <= w.start_ms <= w.end_ms <= duration_ms + 1e-6):
            raise TTSError(f"bad timing {w} (previous end {prev_end}, duration {duration_ms})")
        prev_end = w.end_ms
