"""Wake word detection with openwakeword 0.6.0 on ONNX Runtime, fed from the microphone stream.

Why this shape:

- openwakeword's `download_models()` needs the internet and its tflite path breaks under numpy 2, so
  the model is built with explicit ONNX paths (see `device.models`).
- openwakeword scores one 80 ms frame (1280 samples) at a time; larger chunks are folded into one
  max score and smaller ones delay the score. We buffer internally and always hand it exactly one
  frame, so every score has an exact position on the audio timeline and callers may feed any size.
- The refractory period is counted in samples fed, not wall-clock time: a detection keeps firing for
  several consecutive frames, and in simulation (virtual sound card, faster than real time) wall
  time would mean nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.audio.frames import as_int16

from device.models import ModelSettings, openwakeword_dir, openwakeword_feature_models, wakeword_model_path

SAMPLE_RATE = 16000
FRAME_SAMPLES = 1280  # 80 ms, openwakeword's native step


@dataclass(frozen=True)
class WakeWordSettings:
    models: tuple[str, ...] = ("hey_jarvis",)  # names looked up in model_dir, or .onnx paths
    threshold: float = 0.5  # score (0..1) at or above which a frame is a detection
    refractory_s: float = 2.0  # audio time after a detection during which no other one is reported
    model_dir: Path | None = None  # default: device.models.openwakeword_dir()
    model_settings: ModelSettings = ModelSettings()
    onnx_threads: int = 1  # per ONNX session; the Pi has 4 cores and ASR wants most of them


@dataclass(frozen=True)
class WakeWordDetection:
    model: str  # openwakeword's name for the model, the file stem (e.g. "hey_jarvis_v0.1")
    score: float
    end_sample: int  # samples fed since construction when the detecting frame ended

    @property
    def audio_time_s(self) -> float:
        return self.end_sample / SAMPLE_RATE


class WakeWordDetector:
    """Feed 16 kHz mono int16 PCM in chunks of any size; get a detection when a wake word is said.

    Not thread-safe: call from one thread (the mic reader or a worker it feeds).
    """

    def __init__(self, settings: WakeWordSettings = WakeWordSettings()) -> None:
        from openwakeword.model import Model  # heavy import, kept out of module import

        self.settings = settings
        directory = Path(settings.model_dir) if settings.model_dir else openwakeword_dir(settings.model_settings)
        paths = [str(wakeword_model_path(m, directory)) for m in settings.models]
        mel, emb = openwakeword_feature_models(directory)
        self._model = Model(
            wakeword_models=paths,
            inference_framework="onnx",
            melspec_model_path=str(mel),
            embedding_model_path=str(emb),
            ncpu=settings.onnx_threads,
        )
        self.model_names: tuple[str, ...] = tuple(self._model.models.keys())
        self._refractory = int(settings.refractory_s * SAMPLE_RATE)
        self._pending = np.zeros(0, dtype=np.int16)
        self._samples = 0  # total samples handed to the model
        self._quiet_until = 0  # no detection for frames ending before this sample
        self.last_scores: dict[str, float] = {name: 0.0 for name in self.model_names}

    @property
    def samples_fed(self) -> int:
        return self._samples + len(self._pending)

    def feed(self, pcm: np.ndarray | bytes) -> WakeWordDetection | None:
        """Process a chunk; return the first detection in it, if any (the refractory period then
        suppresses any later frame of the same chunk unless `refractory_s` is 0)."""
        data = as_int16(pcm)
        if len(self._pending):
            data = np.concatenate([self._pending, data])
        n_full = len(data) // FRAME_SAMPLES * FRAME_SAMPLES
        self._pending = data[n_full:].copy()
        found: WakeWordDetection | None = None
        for start in range(0, n_full, FRAME_SAMPLES):
            det = self._frame(data[start : start + FRAME_SAMPLES])
            if det is not None and found is None:
                found = det
        return found

    def _frame(self, frame: np.ndarray) -> WakeWordDetection | None:
        scores = self._model.predict(frame)
        self._samples += FRAME_SAMPLES
        self.last_scores = {k: float(v) for k, v in scores.items()}
        if self._samples < self._quiet_until:
            return None
        name, score = max(self.last_scores.items(), key=lambda kv: kv[1])
        if score < self.settings.threshold:
            return None
        self._quiet_until = self._samples + self._refractory
        return WakeWordDetection(model=name, score=score, end_sample=self._samples)

    def reset(self) -> None:
        """Forget buffered audio, model state and the refractory window (e.g. after the mic was
        paused). The sample count keeps running so detection times stay monotonic."""
        self._model.reset()
        self._samples += len(self._pending)
        self._pending = np.zeros(0, dtype=np.int16)
        self._quiet_until = 0
        self.last_scores = {name: 0.0 for name in self.model_names}
