"""OpenAI's speech endpoint (`/v1/audio/speech`) through the `openai` client.

Audio: requested as raw PCM (24 kHz s16le mono, OpenAI's documented `pcm` format) or WAV, then
resampled to the device rate. Word timings: ESTIMATED. The endpoint returns audio only, so timings
come from `server.tts.estimate` (speech found by energy, shared out by spoken length, boundaries
snapped to pauses); the error is measured in evaluation/tts_timing.py. Never logs the API key.
"""

from __future__ import annotations

import os

import numpy as np

from icp.words import WordTiming, split_words
from server.tts.base import DEFAULT_SAMPLE_RATE, Synthesis, TTSError, check_timings, resample, to_pcm16
from server.tts.espeak import wav_to_samples
from server.tts.estimate import estimate_word_timings

OPENAI_PCM_RATE = 24000


class OpenAISpeechTTS:
    name = "openai"
    exact = False

    def __init__(
        self,
        model: str = "gpt-4o-mini-tts",
        voice: str = "alloy",
        base_url: str | None = None,
        api_key: str | None = None,
        response_format: str = "pcm",
        pcm_rate: int = OPENAI_PCM_RATE,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        timeout: float = 30.0,
    ) -> None:
        try:
            import openai
        except ImportError as exc:  # pragma: no cover
            raise TTSError("the openai package is missing: pip install 'segue[server]'") from exc
        if response_format not in ("pcm", "wav"):
            raise TTSError("response_format must be 'pcm' or 'wav'")
        key = api_key or os.environ.get("OPENAI_API_KEY") or ("not-needed" if base_url else None)
        if key is None:
            raise TTSError("no API key: set OPENAI_API_KEY or pass api_key (or a base_url of a local server)")
        self._client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=1)
        self.model, self.voice, self.response_format = model, voice, response_format
        self.pcm_rate = pcm_rate
        self.sample_rate = sample_rate

    def __repr__(self) -> str:  # no key in reprs or logs
        return f"OpenAISpeechTTS(model={self.model!r}, voice={self.voice!r}, base_url={str(self._client.base_url)!r})"

    def synthesise(self, text: str) -> Synthesis:
        import openai

        tokens = split_words(text)
        if not tokens:
            return Synthesis(b"", self.sample_rate, ())
        try:
            response = self._client.audio.speech.create(
                model=self.model, voice=self.voice, input=text, response_format=self.response_format  # type: ignore[arg-type]
            )
            data = response.read()
        except openai.OpenAIError as exc:
            raise TTSError(f"speech request failed: {type(exc).__name__}: {exc}") from exc
        if self.response_format == "wav":
            samples, rate = wav_to_samples(data)
        else:
            samples, rate = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2"), self.pcm_rate
        words = estimate_word_timings(text, samples, rate)
        out = resample(samples.astype(np.float64), rate, self.sample_rate)
        duration_ms = out.size / self.sample_rate * 1000.0
        words = tuple(WordTiming(w.word, min(w.start_ms, duration_ms), min(w.end_ms, duration_ms)) for w in words)
        check_timings(text, words, duration_ms)
        return Synthesis(to_pcm16(out), self.sample_rate, words)
