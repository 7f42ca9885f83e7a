"""Acoustic echo cancellation: `process(mic_frame, speaker_ref_frame) -> cleaned_frame`.

The reference is aligned by the stream clock, not guessed: every played buffer is stored at its
DAC time and read back at the mic frame's ADC time (`EchoReference`), so the canceller only has
to model the acoustic path (tens of ms), not the output latency. Backends:

- `speex`  : libspeexdsp's MDF echo canceller + its residual-echo suppressor, through ctypes
             (Debian/Raspberry Pi OS package `libspeexdsp1`; nothing to compile). The default.
- `webrtc` : WebRTC APM through `aec-audio-processing` (builds abseil + APM from source: ~30 min
             on 2 x86 cores, far longer on a Pi).
- `none`   : passthrough.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np

from device.audio.frames import Reframer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AecSettings:
    backend: str = "speex"          # speex | webrtc | none
    frame_ms: int = 10              # canceller frame
    filter_ms: int = 200            # speex adaptive filter length (echo tail it can model)
    residual_suppression: bool = True  # speex preprocessor's residual echo suppression
    ref_lead_ms: float = 10.0       # read the reference this much earlier (slack for DAC-time error)
    bypass_when_quiet: bool = True  # nothing played within the echo tail: hand the mic on untouched
    track_delay: bool = True        # find the echo's real delay in the audio (`device.echo_delay`) so the
                                    # barge-in gate is not fooled while the canceller re-converges


class EchoCanceller(Protocol):
    name: str
    frame_samples: int

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """One frame of mic and the speaker reference aligned to it -> the mic without echo."""
        ...


class NoAec:
    name = "none"

    def __init__(self, frame_samples: int = 160) -> None:
        self.frame_samples = frame_samples

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return mic


# ---- speexdsp ----
_SPEEX_ECHO_SET_SAMPLING_RATE = 24
_SPEEX_PREPROCESS_SET_DENOISE = 0
_SPEEX_PREPROCESS_SET_ECHO_STATE = 24
_I16P = ctypes.POINTER(ctypes.c_int16)


def _load_speexdsp() -> ctypes.CDLL:
    names = [os.environ.get("SPEEXDSP_LIB"), ctypes.util.find_library("speexdsp"), "libspeexdsp.so.1",
             "libspeexdsp.dylib"]
    for name in filter(None, names):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if hasattr(lib, "speex_echo_state_init"):
            break
    else:
        raise RuntimeError("libspeexdsp not found: apt-get install libspeexdsp1 (or set SPEEXDSP_LIB)")
    lib.speex_echo_state_init.restype = ctypes.c_void_p
    lib.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_echo_cancellation.restype = None
    lib.speex_echo_cancellation.argtypes = [ctypes.c_void_p, _I16P, _I16P, _I16P]
    lib.speex_echo_ctl.restype = ctypes.c_int
    lib.speex_echo_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.speex_echo_state_destroy.restype = None
    lib.speex_echo_state_destroy.argtypes = [ctypes.c_void_p]
    lib.speex_preprocess_state_init.restype = ctypes.c_void_p
    lib.speex_preprocess_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_preprocess_ctl.restype = ctypes.c_int
    lib.speex_preprocess_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.speex_preprocess_run.restype = ctypes.c_int
    lib.speex_preprocess_run.argtypes = [ctypes.c_void_p, _I16P]
    lib.speex_preprocess_state_destroy.restype = None
    lib.speex_preprocess_state_destroy.argtypes = [ctypes.c_void_p]
    return lib


class SpeexAec:
    """libspeexdsp MDF canceller (+ optional residual echo suppression, denoise off)."""

    name = "speex"

    def __init__(self, sample_rate: int, frame_ms: int = 10, filter_ms: int = 200,
                 residual_suppression: bool = True) -> None:
        self._lib = lib = _load_speexdsp()
        self.frame_samples = sample_rate * frame_ms // 1000
        self._echo = lib.speex_echo_state_init(self.frame_samples, sample_rate * filter_ms // 1000)
        rate = ctypes.c_int(sample_rate)
        lib.speex_echo_ctl(self._echo, _SPEEX_ECHO_SET_SAMPLING_RATE, ctypes.byref(rate))
        self._pre = None
        if residual_suppression:
            self._pre = lib.speex_preprocess_state_init(self.frame_samples, sample_rate)
            off = ctypes.c_int(0)
            lib.speex_preprocess_ctl(self._pre, _SPEEX_PREPROCESS_SET_DENOISE, ctypes.byref(off))
            lib.speex_preprocess_ctl(self._pre, _SPEEX_PREPROCESS_SET_ECHO_STATE, ctypes.c_void_p(self._echo))
        self._out = np.zeros(self.frame_samples, dtype=np.int16)

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        mic = np.ascontiguousarray(mic, dtype=np.int16)
        ref = np.ascontiguousarray(ref, dtype=np.int16)
        out = np.empty(self.frame_samples, dtype=np.int16)
        self._lib.speex_echo_cancellation(self._echo, mic.ctypes.data_as(_I16P), ref.ctypes.data_as(_I16P),
                                          out.ctypes.data_as(_I16P))
        if self._pre is not None:
            self._lib.speex_preprocess_run(self._pre, out.ctypes.data_as(_I16P))
        return out

    def __del__(self) -> None:
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        if getattr(self, "_pre", None):
            lib.speex_preprocess_state_destroy(self._pre)
            self._pre = None
        if getattr(self, "_echo", None):
            lib.speex_echo_state_destroy(self._echo)
            self._echo = None


class WebRtcAec:
    """WebRTC APM (AEC only; NS/AGC off so the VAD sees the true level) via `aec-audio-processing`."""

    name = "webrtc"

    def __init__(self, sample_rate: int, stream_delay_ms: int = 0) -> None:
        from aec_audio_processing import AudioProcessor

        self._ap = AudioProcessor(enable_aec=True, enable_ns=False, enable_agc=False)
        self._ap.set_stream_format(sample_rate, 1)
        self._ap.set_reverse_stream_format(sample_rate, 1)
        self._ap.set_stream_delay(stream_delay_ms)
        self.frame_samples = sample_rate // 100  # APM works on 10 ms frames

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        self._ap.process_reverse_stream(np.asarray(ref, dtype="<i2").tobytes())
        out = self._ap.process_stream(np.asarray(mic, dtype="<i2").tobytes())
        return np.frombuffer(out, dtype="<i2").astype(np.int16)


def make_canceller(settings: AecSettings, sample_rate: int) -> EchoCanceller:
    if settings.backend == "none":
        return NoAec(sample_rate * settings.frame_ms // 1000)
    if settings.backend == "speex":
        return SpeexAec(sample_rate, settings.frame_ms, settings.filter_ms, settings.residual_suppression)
    if settings.backend == "webrtc":
        return WebRtcAec(sample_rate)
    raise ValueError(f"unknown AEC backend {settings.backend!r} (speex, webrtc, none)")


class EchoReference:
    """What the speaker played, indexed by stream time: written at DAC times, read at ADC times."""

    def __init__(self, sample_rate: int, seconds: float = 4.0) -> None:
        self.sample_rate = sample_rate
        self._ring = np.zeros(int(sample_rate * seconds), dtype=np.int16)
        self._written_to = -1  # absolute sample index just past the last write

    def write(self, pcm: np.ndarray, dac_time: float) -> None:
        n, cap = len(pcm), len(self._ring)
        start = int(round(dac_time * self.sample_rate))
        if self._written_to >= 0 and start > self._written_to:  # a hole in the timeline: it was silent
            self._fill(self._written_to, min(start - self._written_to, cap), None)
        self._fill(start, n, pcm)
        self._written_to = max(self._written_to, start + n)

    def _fill(self, start: int, n: int, pcm: Optional[np.ndarray]) -> None:
        cap = len(self._ring)
        i = start % cap
        first = min(n, cap - i)
        if pcm is None:
            self._ring[i : i + first] = 0
            self._ring[: n - first] = 0
        else:
            self._ring[i : i + first] = pcm[:first]
            self._ring[: n - first] = pcm[first:n]

    def read(self, t: float, n: int) -> np.ndarray:
        """The n samples that were at the DAC from stream time t (zeros where nothing was written)."""
        start = int(round(t * self.sample_rate))
        cap = len(self._ring)
        out = np.zeros(n, dtype=np.int16)
        lo, hi = max(start, self._written_to - cap), min(start + n, self._written_to)
        if hi > lo:
            i = lo % cap
            m = hi - lo
            first = min(m, cap - i)
            out[lo - start : lo - start + first] = self._ring[i : i + first]
            out[lo - start + first : hi - start] = self._ring[: m - first]
        return out


class EchoStage:
    """Mic buffers in (with their ADC time), echo-cancelled frames out (with theirs).

    With `bypass_when_quiet`, a frame whose reference has been silent for the whole echo tail
    (`tail_ms` before it, the filter's length) leaves as the microphone heard it: there is no echo
    to remove, and the canceller and its residual-echo suppressor can only damage the user's voice
    (measured by `evaluation.hearing`: more word errors with speex on than off while nothing plays).
    The canceller still runs on every frame, so its state stays continuous for when playback resumes.
    """

    def __init__(self, canceller: EchoCanceller, reference: EchoReference, ref_lead_ms: float = 10.0,
                 bypass_when_quiet: bool = False, tail_ms: float = 200.0) -> None:
        self.canceller = canceller
        self.reference = reference
        self._lead = ref_lead_ms / 1000
        self._framer = Reframer(canceller.frame_samples, reference.sample_rate)
        self.bypass_when_quiet = bypass_when_quiet
        self._tail = int(round(tail_ms / 1000 * reference.sample_rate))

    def played(self, pcm: np.ndarray, dac_time: float) -> None:
        self.reference.write(pcm, dac_time)

    def process(self, mic: np.ndarray, adc_time: float) -> list[tuple[np.ndarray, float]]:
        out = []
        sr = self.reference.sample_rate
        for frame, t in self._framer.push(mic, adc_time):
            ref = self.reference.read(t - self._lead, len(frame))
            clean = self.canceller.process(frame, ref)
            if self.bypass_when_quiet and not ref.any():
                n = self._tail + len(frame)
                if not self.reference.read(t - self._lead + len(frame) / sr - n / sr, n).any():
                    clean = np.asarray(frame, dtype=np.int16)
            out.append((clean, t))
        return out


def erle_db(mic: np.ndarray, cleaned: np.ndarray) -> float:
    """Echo return loss enhancement over an echo-only stretch: 10 log10(E[mic^2] / E[out^2])."""
    e_in = float(np.mean(np.asarray(mic, dtype=np.float64) ** 2))
    e_out = float(np.mean(np.asarray(cleaned, dtype=np.float64) ** 2))
    if e_out <= 0:
        return math.inf
    return 10 * math.log10(max(e_in, 1e-12) / e_out)
