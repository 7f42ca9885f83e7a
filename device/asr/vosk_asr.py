"""Streaming ASR with vosk (Kaldi): the Pi's backend, real streaming at low CPU.

vosk segments an utterance itself at pauses (`AcceptWaveform` returns True); we keep those committed
pieces and join them with the live partial, so a Partial is always the whole hypothesis so far.
Models are large (the Korean one maps 250 MB), so one loaded model is shared per path.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.asr.base import SAMPLE_RATE, Final, NotStarted, Partial, as_int16
from icp.words import WordTiming

_models: dict[Path, Any] = {}
_models_lock = threading.Lock()


def load_vosk_model(path: Path) -> Any:
    """Load (once per process) the vosk model at `path`."""
    import vosk

    path = Path(path).resolve()
    with _models_lock:
        if path not in _models:
            vosk.SetLogLevel(-1)
            _models[path] = vosk.Model(str(path))
        return _models[path]


@dataclass(frozen=True)
class VoskSettings:
    model_path: Path  # a vosk model dir (see device.models.vosk_model_path)
    language: str = "en"


class VoskASR:
    backend = "vosk"

    def __init__(self, settings: VoskSettings) -> None:
        self.settings = settings
        self.language = settings.language
        self._model = load_vosk_model(settings.model_path)
        self._rec: Any = None
        self._words: list[WordTiming] = []
        self._texts: list[str] = []
        self._last_partial = ""
        self._samples = 0

    def start(self, over_speech: bool = False) -> None:  # vosk takes no prompt: the flag changes nothing
        import vosk

        self._rec = vosk.KaldiRecognizer(self._model, SAMPLE_RATE)
        self._rec.SetWords(True)
        self._words, self._texts, self._last_partial, self._samples = [], [], "", 0

    def feed(self, pcm: np.ndarray | bytes) -> list[Partial]:
        if self._rec is None:
            raise NotStarted("VoskASR.feed() before start()")
        data = as_int16(pcm)
        if not len(data):
            return []
        self._samples += len(data)
        if self._rec.AcceptWaveform(data.tobytes()):
            self._commit(json.loads(self._rec.Result()))
            live = ""
        else:
            live = json.loads(self._rec.PartialResult()).get("partial", "")
        text = " ".join(t for t in [*self._texts, live] if t)
        if text and text != self._last_partial:
            self._last_partial = text
            return [Partial(text=text, audio_ms=self._samples * 1000 / SAMPLE_RATE)]
        return []

    def finish(self) -> Final:
        if self._rec is None:
            raise NotStarted("VoskASR.finish() before start()")
        self._commit(json.loads(self._rec.FinalResult()))
        self._rec = None
        return Final(
            text=" ".join(self._texts),
            words=tuple(self._words),
            audio_ms=self._samples * 1000 / SAMPLE_RATE,
            backend=self.backend,
            language=self.language,
        )

    def _commit(self, result: dict[str, Any]) -> None:
        text = result.get("text", "").strip()
        if text:
            self._texts.append(text)
        for w in result.get("result", []):
            start, end = float(w["start"]) * 1000, float(w["end"]) * 1000
            self._words.append(WordTiming(word=w["word"], start_ms=start, end_ms=end))
