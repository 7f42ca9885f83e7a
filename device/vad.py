"""Voice activity detection: a speech probability per fixed-size frame, and an onset detector.

`webrtc` (webrtcvad-wheels, 10/20/30 ms frames, microseconds per frame) is the default: cheap
enough to run on every mic frame of a Pi. `silero` (its ONNX model under onnxruntime, 32 ms frames)
is more robust to noise and music at about 0.3 ms per frame. Both sit behind `Vad`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

import numpy as np

DEFAULT_SILERO_MODEL = Path(__file__).resolve().parent.parent / "models" / "openwakeword" / "silero_vad.onnx"


@dataclass(frozen=True)
class VadSettings:
    backend: str = "webrtc"        # webrtc | silero
    aggressiveness: int = 3        # webrtc: 0 (lenient) .. 3 (strict)
    frame_ms: int = 20             # webrtc: 10, 20 or 30; silero always uses 32
    threshold: float = 0.5         # probability at or above which a frame is speech
    silero_model: Optional[Path] = None  # default: models/openwakeword/silero_vad.onnx or the silero-vad wheel's
    onset_frames: int = 3          # consecutive speech frames that make an onset
    offset_frames: int = 25        # consecutive non-speech frames that end speech
    pause_frames: int = 5          # non-speech frames inside speech that make a pause (a possible turn end)


class Vad(Protocol):
    frame_samples: int

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability (0..1) of one frame of exactly `frame_samples` int16 samples."""
        ...

    def reset(self) -> None: ...


class WebRtcVad:
    def __init__(self, sample_rate: int = 16000, frame_ms: int = 20, aggressiveness: int = 3) -> None:
        import webrtcvad

        if frame_ms not in (10, 20, 30):
            raise ValueError("webrtc VAD frames are 10, 20 or 30 ms")
        self._vad = webrtcvad.Vad(aggressiveness)
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000

    def probability(self, frame: np.ndarray) -> float:
        return 1.0 if self._vad.is_speech(np.asarray(frame, dtype="<i2").tobytes(), self.sample_rate) else 0.0

    def reset(self) -> None:
        pass


def find_silero_model(explicit: Optional[Path] = None) -> Path:
    """The silero ONNX file: explicit, the project's models dir, or inside the silero-vad wheel (not imported: it needs torch)."""
    candidates = [explicit, DEFAULT_SILERO_MODEL]
    spec = importlib.util.find_spec("silero_vad")
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc) / "data" / "silero_vad.onnx")
    for c in candidates:
        if c is not None and Path(c).is_file():
            return Path(c)
    raise FileNotFoundError("silero_vad.onnx not found (set vad.silero_model)")


class SileroVad:
    """Silero VAD (v4 ONNX: input, sr, h, c) with its recurrent state carried across frames."""

    def __init__(self, sample_rate: int = 16000, model: Optional[Path] = None, threads: int = 1) -> None:
        import onnxruntime as ort

        if sample_rate != 16000:
            raise ValueError("silero VAD here runs at 16 kHz")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._sess = ort.InferenceSession(str(find_silero_model(model)), opts, providers=["CPUExecutionProvider"])
        names = {i.name for i in self._sess.get_inputs()}
        self._v5 = "state" in names
        self.frame_samples = 512
        self._sr = np.array(sample_rate, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        if self._v5:
            self._state = np.zeros((2, 1, 128), dtype=np.float32)
        else:
            self._h = np.zeros((2, 1, 64), dtype=np.float32)
            self._c = np.zeros((2, 1, 64), dtype=np.float32)

    def probability(self, frame: np.ndarray) -> float:
        x = (np.asarray(frame, dtype=np.float32) / 32768.0).reshape(1, -1)
        if self._v5:
            out, self._state = self._sess.run(None, {"input": x, "sr": self._sr, "state": self._state})
        else:
            out, self._h, self._c = self._sess.run(None, {"input": x, "sr": self._sr, "h": self._h, "c": self._c})
        return float(out.reshape(-1)[0])


def make_vad(settings: VadSettings, sample_rate: int = 16000) -> Vad:
    if settings.backend == "webrtc":
        return WebRtcVad(sample_rate, settings.frame_ms, settings.aggressiveness)
    if settings.backend == "silero":
        return SileroVad(sample_rate, settings.silero_model)
    raise ValueError(f"unknown VAD backend {settings.backend!r} (webrtc, silero)")


@dataclass(frozen=True)
class SpeechOnset:
    at: float  # stream time of the first frame of the speech run


@dataclass(frozen=True)
class SpeechOffset:
    at: float  # stream time just after the last speech frame


@dataclass(frozen=True)
class SpeechSuspect:
    at: float  # the first speech-like frame of a run that is not an onset yet


@dataclass(frozen=True)
class SpeechDismiss:
    at: float  # start of a suspected run that broke off before it made an onset
    frames: int


@dataclass(frozen=True)
class SpeechPause:
    at: float  # speech in progress went quiet for `pause_frames` (end of the last speech frame)


@dataclass(frozen=True)
class SpeechResume:
    at: float  # speech again after a `SpeechPause`, before the offset


VadEvent = SpeechOnset | SpeechOffset | SpeechSuspect | SpeechDismiss | SpeechPause | SpeechResume


class OnsetDetector:
    """`onset_frames` consecutive speech frames make an onset; `offset_frames` non-speech end it.

    Between those, the finer events a turn-taking policy needs. Before an onset: the first frame of a
    run that is speech *or merely suspicious* (`suspect`: louder than the echo it could be, whatever
    the VAD says; a fricative "s" or the attack of a vowel is suspicious a frame or two before the VAD
    calls it speech) gives `SpeechSuspect` (pause on it: the onset may never come), and a run that dies
    down for `dismiss_frames` before its onset gives `SpeechDismiss` (it was echo or a click). Inside
    speech: a quiet of `pause_frames` gives `SpeechPause` (the turn may be over, if the words say so)
    and speech again `SpeechResume`.
    """

    def __init__(self, onset_frames: int = 3, offset_frames: int = 25, pause_frames: int = 5,
                 dismiss_frames: int = 3) -> None:
        self.onset_frames = onset_frames
        self.offset_frames = offset_frames
        self.pause_frames = pause_frames
        self.dismiss_frames = max(1, dismiss_frames)
        self.in_speech = False
        self._run = 0
        self._run_start = 0.0
        self._last_speech_end = 0.0
        self._paused = False
        self._suspect_at: Optional[float] = None  # first frame of the suspicious run (None: no run)
        self._suspect_frames = 0
        self._quiet = 0  # frames since the suspicious run last looked like anything

    def update(self, speech: bool, t: float, frame_s: float, suspect: Optional[bool] = None) -> VadEvent | None:
        """Feed one frame's decisions (`t` = its start time; `suspect` defaults to `speech`); returns an
        event when something changes."""
        if not self.in_speech:
            return self._before_onset(speech, speech if suspect is None else (suspect or speech), t, frame_s)
        if speech:
            self._run = 0
            self._last_speech_end = t + frame_s
            if self._paused:
                self._paused = False
                return SpeechResume(t)
            return None
        self._run += 1
        if self._run >= self.offset_frames:
            self.in_speech, self._run, self._paused = False, 0, False
            return SpeechOffset(self._last_speech_end)
        if self._run == self.pause_frames and not self._paused:
            self._paused = True
            return SpeechPause(self._last_speech_end)
        return None

    def _before_onset(self, speech: bool, suspect: bool, t: float, frame_s: float) -> VadEvent | None:
        if speech:
            if self._run == 0:
                self._run_start = t
            self._run += 1
            if self._run >= self.onset_frames:
                self.in_speech, self._run, self._paused = True, 0, False
                self._suspect_at, self._suspect_frames, self._quiet = None, 0, 0
                self._last_speech_end = t + frame_s
                return SpeechOnset(self._run_start)
        else:
            self._run = 0
        if suspect:
            self._quiet = 0
            self._suspect_frames += 1
            if self._suspect_at is None:
                self._suspect_at = t
                return SpeechSuspect(t)
            return None
        if self._suspect_at is not None:
            self._quiet += 1
            if self._quiet >= self.dismiss_frames:
                at, frames = self._suspect_at, self._suspect_frames
                self._suspect_at, self._suspect_frames, self._quiet = None, 0, 0
                return SpeechDismiss(at, frames)
        return None

    def reset(self) -> None:
        self.in_speech = False
        self._run = 0
        self._paused = False
        self._suspect_at, self._suspect_frames, self._quiet = None, 0, 0
