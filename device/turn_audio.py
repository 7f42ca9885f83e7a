"""Audio end of turn: P(the user has finished their turn) from how the last seconds of speech sound.

Text alone cannot tell "What causes the tides?" spoken to the end from the same words trailing off
mid-thought, and a quick transcript of cut speech ("what causes the") can still look finished to a
text scorer. Intonation, lengthening and the fall at the end of a phrase carry that information, so
the device can ask this model as well as `icp.turn_end` before it ends a turn on a short pause.

The model is Pipecat's Smart Turn v3.2 (`smart-turn-v3.2-cpu.onnx`, 8.7 MB, quantised for CPU): a
Whisper-tiny audio encoder with a one-logit head, trained by Daily on human speech in 23 languages
(pipecat-ai/smart-turn's README). Our only check is synthetic piper speech, where it is a weak judge
on its own (whole vs cut questions: AUC ~0.75, and a cut that ends with a falling, finished-sounding
tone scores as complete), so use it together with the text score, never alone. It ships inside the
`pipecat-ai` wheel on PyPI (BSD 2-Clause licence); `scripts/setup.sh` unpacks just the .onnx into
`models/smart_turn/`, and nothing is fetched at run time.

How it is fed (as `pipecat.audio.turn.smart_turn.local_smart_turn_v3` does in pipecat-ai 1.14.0):
the utterance's 16 kHz audio as float in [-1, 1], the LAST 8 s of it, zero-padded at the START when
shorter; the waveform normalised to zero mean and unit variance (over the padded 8 s); then
Whisper's log-mel features (80 mels, 400-point FFT, hop 160 -> 80 x 800, clamped to max - 8 and
scaled (x + 4) / 4) as `input_features` (float32, 1 x 80 x 800); the output `logits` (1 x 1) is
already a sigmoid probability. Pipecat includes the trailing pause its VAD waited for (0.2 s by
default), so feed the pause too: audio up to the moment of the decision.

The features come from faster-whisper's `FeatureExtractor` (already a device dependency) rather
than a copy of Pipecat's numpy version: on the same audio they agree to 3e-6. The int8 model is
sensitive to such tiny differences (its output moves by up to ~0.02 under 3e-6 feature noise), so
figures can differ from Pipecat's in the second decimal, never in kind.

Cost: the window is fixed, so every call costs the same whatever the utterance's length: features
~7 ms plus one encoder pass ~45-60 ms on one thread of the 2-core x86 dev box (p50 of a whole call
112 ms with the box loaded by other work; a Pi is slower still, not measured). Loading takes ~0.3 s
and ~55 MB of memory (31 MB for the session, 25 MB more after the first run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from device.models import ModelSettings, smart_turn_model_path

SAMPLE_RATE = 16000
WINDOW_S = 8
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_S  # 128000: the model's fixed 8 s input
_NORM_EPS = 1e-7  # the variance floor of Whisper's waveform normalisation (transformers' value)


class SmartTurn:
    """Smart Turn v3.2 on onnxruntime: `probability(pcm)` = P(the turn is complete).

    `model_path` None finds the file through `device.models.smart_turn_model_path` (a missing file
    raises `ModelNotFound` naming models/smart_turn and scripts/setup.sh). `threads` is
    onnxruntime's intra-op thread count: one keeps it from starving the audio path on a Pi.
    One instance may be shared by threads (onnxruntime's `run` is thread-safe).
    """

    def __init__(self, model_path: str | Path | None = None, threads: int = 1) -> None:
        path = Path(model_path) if model_path is not None else smart_turn_model_path(ModelSettings())
        if model_path is not None and not path.is_file():
            path = smart_turn_model_path(ModelSettings(smart_turn_model=path))  # raises the clear error
        # Imported here: onnxruntime and faster-whisper are device extras, heavy to import, and only
        # needed when audio end of turn is switched on.
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        opts = ort.SessionOptions()
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = max(1, int(threads))
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.model_path = path
        self._session: Any = ort.InferenceSession(str(path), sess_options=opts,
                                                  providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name  # "input_features"
        self._features = FeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE,
                                          hop_length=160, chunk_length=WINDOW_S, n_fft=400)

    def features(self, pcm16k_int16: np.ndarray) -> np.ndarray:
        """The model's input for this audio: float32, 80 x 800 (the last 8 s, padded at the start)."""
        pcm = np.asarray(pcm16k_int16)
        if pcm.ndim != 1:
            raise ValueError(f"expected mono 1-D audio, got shape {pcm.shape}")
        if np.issubdtype(pcm.dtype, np.integer):
            x = pcm.astype(np.float32) / 32768.0
        else:
            x = pcm.astype(np.float32)  # already float in [-1, 1]
        x = x[-WINDOW_SAMPLES:]
        if x.size < WINDOW_SAMPLES:
            x = np.pad(x, (WINDOW_SAMPLES - x.size, 0))
        x = (x - x.mean()) / np.sqrt(x.var() + _NORM_EPS)
        # padding=0: the window is exactly 8 s, so 801 STFT frames, the last dropped -> 800.
        return np.asarray(self._features(x, padding=0), dtype=np.float32)

    def probability(self, pcm16k_int16: np.ndarray) -> float:
        """P(the turn is complete) from the last <= 8 s of the utterance (16 kHz mono int16)."""
        feats = self.features(pcm16k_int16)[None]
        out = self._session.run(None, {self._input: feats})[0]
        return float(np.asarray(out).reshape(-1)[0])
