"""Streaming ASR with faster-whisper: the fallback where no vosk model for the language is at hand.

Whisper is not a streaming model, so streaming is emulated: every `partial_interval_s` of new audio
the whole buffer so far is re-transcribed greedily (no timestamps, cheap), and `finish()` runs one
proper pass with beam search and word timestamps. Whisper pads every window to 30 s, so a partial
costs about the same however short the buffer is: the interval is measured in audio fed, not wall
time, and is the knob that trades partial latency for CPU; past `max_partial_audio_s` partials stop
(each would cost more than the audio it adds) and only the final pass runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.asr.base import SAMPLE_RATE, Final, NotStarted, Partial, as_int16
from device.models import ModelSettings, whisper_model_path
from icp.words import WordTiming

_models: dict[tuple[str, str, int], Any] = {}
_models_lock = threading.Lock()


def load_whisper_model(path: Path, compute_type: str, cpu_threads: int) -> Any:
    """Load (once per process per configuration) a faster-whisper model from a local dir."""
    from faster_whisper import WhisperModel

    key = (str(Path(path).resolve()), compute_type, cpu_threads)
    with _models_lock:
        if key not in _models:
            _models[key] = WhisperModel(key[0], device="cpu", compute_type=compute_type, cpu_threads=cpu_threads,
                                        local_files_only=True)
        return _models[key]


@dataclass(frozen=True)
class WhisperSettings:
    model_path: Path | None = None  # None: device.models.whisper_model_path() (bundled tiny.en)
    model_settings: ModelSettings = ModelSettings()
    language: str = "en"
    compute_type: str = "int8"
    cpu_threads: int = 2
    partials: bool = True
    partial_interval_s: float = 1.0  # audio between partial re-transcriptions
    min_partial_audio_s: float = 0.5  # no partial before this much audio
    max_partial_audio_s: float = 10.0  # no partials past this much audio (each costs more); final covers all
    beam_size: int = 5  # for the final pass; partials are greedy
    vad_filter: bool = False  # the device's own VAD already cut the utterance
    silence_peak: int = 64  # int16 peak below which audio is silence: Whisper says "You" to silence


class WhisperASR:
    backend = "faster-whisper"

    def __init__(self, settings: WhisperSettings = WhisperSettings()) -> None:
        self.settings = settings
        self.language = settings.language
        path = Path(settings.model_path) if settings.model_path else whisper_model_path(settings.model_settings)
        self._model = load_whisper_model(path, settings.compute_type, settings.cpu_threads)
        if settings.language != "en" and not self._model.model.is_multilingual:
            raise ValueError(f"whisper model at {path} is English-only; language {settings.language!r} "
                             "needs a multilingual whisper model or a vosk model")
        self._chunks: list[np.ndarray] | None = None
        self._samples = 0
        self._next_partial = 0
        self._last_partial = ""
        self._peak = 0

    def start(self) -> None:
        self._chunks, self._samples, self._last_partial, self._peak = [], 0, "", 0
        first = max(self.settings.min_partial_audio_s, self.settings.partial_interval_s)
        self._next_partial = int(first * SAMPLE_RATE)

    def feed(self, pcm: np.ndarray | bytes) -> list[Partial]:
        if self._chunks is None:
            raise NotStarted("WhisperASR.feed() before start()")
        data = as_int16(pcm)
        if not len(data):
            return []
        self._chunks.append(data.copy())
        self._samples += len(data)
        self._peak = max(self._peak, int(np.abs(data.astype(np.int32)).max()))
        s = self.settings
        too_long = self._samples > s.max_partial_audio_s * SAMPLE_RATE
        if not s.partials or too_long or self._samples < self._next_partial or self._peak < s.silence_peak:
            return []
        self._next_partial = self._samples + int(self.settings.partial_interval_s * SAMPLE_RATE)
        segments, _ = self._model.transcribe(
            self._audio(), language=self.language, beam_size=1, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=self.settings.vad_filter,
        )
        text = " ".join(seg.text.strip() for seg in segments).strip()
        if text and text != self._last_partial:
            self._last_partial = text
            return [Partial(text=text, audio_ms=self._samples * 1000 / SAMPLE_RATE)]
        return []

    def finish(self) -> Final:
        if self._chunks is None:
            raise NotStarted("WhisperASR.finish() before start()")
        audio = self._audio()
        self._chunks = None
        words: list[WordTiming] = []
        texts: list[str] = []
        if len(audio) and self._peak >= self.settings.silence_peak:
            segments, _ = self._model.transcribe(
                audio, language=self.language, beam_size=self.settings.beam_size, word_timestamps=True,
                condition_on_previous_text=False, vad_filter=self.settings.vad_filter,
            )
            for seg in segments:
                texts.append(seg.text.strip())
                for w in seg.words or []:
                    if w.word.strip():
                        start, end = float(w.start) * 1000, float(w.end) * 1000
                        words.append(WordTiming(word=w.word.strip(), start_ms=start, end_ms=end))
        return Final(text=" ".join(t for t in texts if t), words=tuple(words),
                     audio_ms=self._samples * 1000 / SAMPLE_RATE, backend=self.backend, language=self.language)

    def _audio(self) -> np.ndarray:
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0

