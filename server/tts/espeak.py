"""espeak-ng TTS with word starts reported by espeak-ng itself.

Exact: through libespeak-ng (ctypes, synchronous mode) espeak-ng emits a WORD event for each word
it speaks, with the word's character position in the text and its audio position (ms) in the
output. Those give each token's start as espeak placed it.
Estimated: a token's end is the start of the next spoken word, less the silence before it (10 ms
energy frames), so pauses after commas are gaps, not word. When only the `espeak-ng` program is
present (no library), the audio comes from `espeak-ng --stdout` and all timings are estimated
(`server.tts.estimate`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import shutil
import subprocess
import threading
import wave
from pathlib import Path

import numpy as np

from icp.words import WordTiming, split_words
from server.tts.base import DEFAULT_SAMPLE_RATE, Synthesis, TTSError, check_timings, resample, to_pcm16
from server.tts.estimate import FRAME_MS, estimate_word_timings, speech_frames, token_weight

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_RATE = 1


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def find_libespeak() -> str | None:
    for name in ("espeak-ng", "libespeak-ng.so.1"):
        found = ctypes.util.find_library(name) if "." not in name else None
        if found:
            return found
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/arm-linux-gnueabihf", "/usr/lib"):
        p = Path(d) / "libespeak-ng.so.1"
        if p.exists():
            return str(p)
    return None


class _Library:
    """The process-wide espeak-ng library: one initialisation, one synthesis at a time."""

    _instance: _Library | None = None
    _create_lock = threading.Lock()

    def __init__(self, path: str) -> None:
        self.lib = ctypes.CDLL(path)
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, 0)
        if self.rate <= 0:
            raise TTSError(f"espeak_Initialize failed ({self.rate})")
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int]] = []  # (text position, length, audio ms)
        self._callback = _CALLBACK(self._on_synth)  # keep a reference: ctypes does not
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> _Library | None:
        with cls._create_lock:
            if cls._instance is None:
                path = find_libespeak()
                if path is None:
                    return None
                cls._instance = _Library(path)
            return cls._instance

    def _on_synth(self, wav, n, events) -> int:  # type: ignore[no-untyped-def]
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_WORD:
                self._events.append((ev.text_position, ev.length, ev.audio_position))
            i += 1
        return 0

    def synth(self, text: str, voice: str, rate_wpm: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        with self.lock:
            self._chunks, self._events = [], []
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise TTSError(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(_RATE, rate_wpm, 0)
            data = text.encode("utf-8") + b"\0"
            err = self.lib.espeak_Synth(
                data, ctypes.c_size_t(len(data)), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            if err != 0:
                raise TTSError(f"espeak_Synth failed ({err})")
            self.lib.espeak_Synchronize()
            audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
            return audio, list(self._events)


def _token_char_spans(text: str) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for tok in split_words(text):
        start = text.index(tok, pos)
        spans.append((start, start + len(tok)))
        pos = start + len(tok)
    return spans


class EspeakTTS:
    name = "espeak"

    def __init__(
        self, voice: str = "en-us", rate_wpm: int = 175, sample_rate: int = DEFAULT_SAMPLE_RATE, use_library: bool = True
    ) -> None:
        self.voice = voice
        self.rate_wpm = rate_wpm
        self.sample_rate = sample_rate
        self._lib = _Library.get() if use_library else None
        self._cli = shutil.which("espeak-ng")
        if self._lib is None and self._cli is None:
            raise TTSError("espeak-ng is not installed: apt-get install espeak-ng")
        self.exact = self._lib is not None

    def synthesise(self, text: str) -> Synthesis:
        tokens = split_words(text)
        if not tokens:
            return Synthesis(b"", self.sample_rate, ())
        if self._lib is not None:
            audio, events = self._lib.synth(text, self.voice, self.rate_wpm)
            native = self._lib.rate
            words = self._timings_from_events(text, audio, native, events)
        else:
            audio, native = self._synth_cli(text)
            words = estimate_word_timings(text, audio, native)
        out = resample(audio.astype(np.float64), native, self.sample_rate)
        duration_ms = out.size / self.sample_rate * 1000.0
        words = tuple(WordTiming(w.word, min(w.start_ms, duration_ms), min(w.end_ms, duration_ms)) for w in words)
        check_timings(text, words, duration_ms)
        return Synthesis(to_pcm16(out), self.sample_rate, words)

    def _synth_cli(self, text: str) -> tuple[np.ndarray, int]:
        assert self._cli is not None
        proc = subprocess.run(
            [self._cli, "--stdout", "-v", self.voice, "-s", str(self.rate_wpm), "--", text],
            capture_output=True, check=False, timeout=60,
        )
        if proc.returncode != 0:
            raise TTSError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}")
        return wav_to_samples(proc.stdout)

    @staticmethod
    def _timings_from_events(
        text: str, audio: np.ndarray, rate: int, events: list[tuple[int, int, int]]
    ) -> tuple[WordTiming, ...]:
        """Token times from espeak's WORD events (1-based character position, audio ms).

        A token may get several events ("42" -> forty, two) or none ("the" merged into "in the",
        a lone dash). Each token with an event starts a group; event-less tokens join the group
        before them and share its time by spoken length; tokens with nothing to say get zero length.
        """
        tokens = split_words(text)
        duration_ms = len(audio) / rate * 1000.0
        voiced = speech_frames(audio, rate)
        last_voiced = (np.flatnonzero(voiced)[-1] + 1) * FRAME_MS if voiced.any() else duration_ms
        char_spans = _token_char_spans(text)
        first_event: list[float | None] = [None] * len(tokens)
        for pos, _length, ms in events:
            for k, (s, e) in enumerate(char_spans):
                if s <= pos - 1 < e:
                    if first_event[k] is None:
                        first_event[k] = float(ms)
                    break
        heads = [k for k, t in enumerate(first_event) if t is not None]
        if not heads:  # no events at all: estimate from the audio
            return estimate_word_timings(text, audio, rate)
        heads[0] = 0  # tokens before the first event join the first group
        spans: list[tuple[float, float]] = []
        for g, k0 in enumerate(heads):
            k1 = heads[g + 1] if g + 1 < len(heads) else len(tokens)
            t0 = first_event[k0] if first_event[k0] is not None else 0.0
            t1 = first_event[k1] if k1 < len(tokens) else last_voiced
            assert t0 is not None and t1 is not None
            t1 = _trim_trailing_silence(voiced, t0, max(t0, min(t1, last_voiced)))
            weights = [token_weight(t) if any(c.isalnum() for c in t) else 0.0 for t in tokens[k0:k1]]
            total = sum(weights) or 1.0
            at = t0
            for w in weights:
                end = at + (t1 - t0) * w / total
                spans.append((at, end))
                at = end
        out: list[WordTiming] = []
        prev_end = 0.0
        for tok, (s, e) in zip(tokens, spans):
            s = min(max(s, prev_end), duration_ms)
            e = min(max(e, s), duration_ms)
            out.append(WordTiming(tok, s, e))
            prev_end = e
        return tuple(out)


def _trim_trailing_silence(voiced: np.ndarray, start_ms: float, end_ms: float) -> float:
    f0, f1 = int(start_ms // FRAME_MS), int(np.ceil(end_ms / FRAME_MS))
    seg = voiced[f0:f1]
    idx = np.flatnonzero(seg)
    if idx.size == 0:
        return end_ms
    return float(max(start_ms, min(end_ms, (f0 + idx[-1] + 1) * FRAME_MS)))


def wav_to_samples(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit mono WAV bytes to (int16 samples, rate). espeak-ng writes an unknown length on a pipe."""
    with wave.open(io.BytesIO(data)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise TTSError("expected 16-bit mono WAV")
        rate = w.getframerate()
    # The header's data length may be 0x7fffffff when streamed: read from the data chunk on.
    idx = data.find(b"data")
    pcm = data[idx + 8 :] if idx >= 0 else b""
    return np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2"), rate
