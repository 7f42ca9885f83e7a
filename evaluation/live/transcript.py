"""After the run: where the user's voice is in `mic.wav`, and an ASR transcript of `ear.wav`.

Both are read off the recordings, not from anything the device or the engine said:
- the user's speech start/end: the synthesised PCM located in the mic recording by cross-correlation
  (the room also carries the speaker's echo, which does not correlate with the user's voice);
- what the ear heard, in words: faster-whisper tiny.en (the bundled model, offline) over each stretch
  of agent audio, with word timestamps, so a cut can be checked against the words really heard.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

log = logging.getLogger(__name__)

ONSET_PEAK = 0.05  # speech starts at the first 10 ms frame whose peak passes this fraction of the utterance's


@dataclass(frozen=True)
class Located:
    start: float  # ear-time seconds of the first loud sample of the speech at the mic
    end: float  # of the last loud sample
    score: float  # normalised correlation at the match (1 = exact copy)


def _onset_offset(pcm: np.ndarray, rate: int) -> tuple[int, int]:
    frame = max(1, rate // 100)
    peak = float(np.abs(pcm).max()) if len(pcm) else 0.0
    n = len(pcm) // frame
    loud = [i for i in range(n) if np.abs(pcm[i * frame : (i + 1) * frame]).max() > ONSET_PEAK * peak]
    if not loud:
        return 0, len(pcm)
    return loud[0] * frame, (loud[-1] + 1) * frame


def _match(hay: np.ndarray, needle: np.ndarray) -> tuple[int, float]:
    """Best offset of `needle` in `hay` and its normalised correlation there."""
    corr = fftconvolve(hay, needle[::-1], mode="valid")
    k = int(np.argmax(corr))
    denom = float(np.linalg.norm(hay[k : k + len(needle)]) * np.linalg.norm(needle)) or 1.0
    return k, float(corr[k]) / denom


def _edge(hay: np.ndarray, piece: np.ndarray, guess: int, slack: int, min_score: float) -> int | None:
    """Where `piece` (an edge of the utterance) sits in `hay` within `slack` samples of `guess`."""
    a, b = max(0, guess - slack), min(len(hay), guess + len(piece) + slack)
    if b - a < len(piece) or not len(piece):
        return None
    k, score = _match(hay[a:b], piece)
    return a + k if score >= min_score else None


def locate(mic: np.ndarray, pcm: np.ndarray, rate: int, mic_offset: float, expected: float,
           before_s: float = 0.5, after_s: float = 4.0, edge_s: float = 0.25, edge_slack_s: float = 0.5,
           edge_score: float = 0.6) -> Located | None:
    """Find `pcm` in `mic` near ear time `expected` (pacat starts 0-1.5 s after it is launched).

    The whole utterance is matched first; then its first and last `edge_s` of voice are matched again
    on their own, within `edge_slack_s` of where the whole match put them. The player (`pacat`) can
    stall mid-utterance on a loaded machine: the voice then reaches the mic in two pieces, the whole
    match aligns with the longer one (a low score), and its start was off by the stall (measured:
    190 ms late, so the device's correct barge-in looked like it came before the user spoke)."""
    lo = max(0, int((expected - mic_offset - before_s) * rate))
    hi = min(len(mic), int((expected - mic_offset + after_s) * rate) + len(pcm))
    hay = mic[lo:hi].astype(np.float32)
    needle = pcm.astype(np.float32)
    if len(hay) < len(needle) or not len(needle):
        return None
    k, score = _match(hay, needle)
    on, off = _onset_offset(pcm, rate)
    first, last = k + on, k + off
    e, slack = int(edge_s * rate), int(edge_slack_s * rate)
    if off - on > 2 * e:
        head = _edge(hay, needle[on : on + e], k + on, slack, edge_score)
        tail = _edge(hay, needle[off - e : off], k + off - e, slack, edge_score)
        first = head if head is not None else first
        last = tail + e if tail is not None else last
    return Located((lo + first) / rate + mic_offset, (lo + last) / rate + mic_offset, score)


@dataclass(frozen=True)
class AsrWord:
    w: str
    start: float  # ear-time seconds
    end: float
    p: float


def transcribe_ear(ear: np.ndarray, rate: int, spans: list[tuple[float, float]], join_gap_s: float = 1.0,
                   ) -> list[AsrWord]:
    """Whisper tiny.en over each stretch of agent audio (spans merged across gaps < join_gap_s)."""
    from device.asr.whisper_asr import load_whisper_model
    from device.models import whisper_model_path

    if not spans:
        return []
    chunks: list[list[float]] = []
    for s, e in sorted(spans):
        if chunks and s - chunks[-1][1] < join_gap_s and e - chunks[-1][0] < 25.0:
            chunks[-1][1] = max(chunks[-1][1], e)
        else:
            chunks.append([s, e])
    model = load_whisper_model(whisper_model_path(), "int8", 2)
    out: list[AsrWord] = []
    for s, e in chunks:
        a, b = max(0, int((s - 0.1) * rate)), min(len(ear), int((e + 0.2) * rate))
        audio = ear[a:b].astype(np.float32) / 32768.0
        if rate != 16000:
            import soxr

            audio = soxr.resample(audio, rate, 16000)
        segments, _ = model.transcribe(audio, language="en", beam_size=5, word_timestamps=True, vad_filter=False,
                                       condition_on_previous_text=False)
        for seg in segments:
            for w in seg.words or []:
                out.append(AsrWord(w.word.strip(), a / rate + float(w.start), a / rate + float(w.end),
                                   round(float(w.probability), 3)))
    return out


def save_transcript(path: Path, words: list[AsrWord]) -> None:
    path.write_text(json.dumps([{**asdict(w), "start": round(w.start, 3), "end": round(w.end, 3)} for w in words],
                               indent=0) + "\n")
