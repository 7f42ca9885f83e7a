"""Estimated word timings for backends that return only audio (OpenAI speech, the espeak-ng CLI).

How: find the speech in the audio (10 ms frames above an energy floor), treat gaps of at least
`min_pause_ms` as pauses, give each token a share of the speech proportional to a rough spoken
length (letters; digits and symbols count as the words they are read as), and snap the token
boundary nearest each pause (preferring a boundary after punctuation) onto that pause.
This is an estimate; its error against exact timings is measured in evaluation/tts_timing.py.
"""

from __future__ import annotations

import re

import numpy as np

from icp.words import WordTiming, split_words

FRAME_MS = 10.0
_PUNCT_END = re.compile(r"[,.;:!?…)\]\"']$")


def speech_frames(samples: np.ndarray, sample_rate: int, rel_floor: float = 0.03) -> np.ndarray:
    """Boolean per 10 ms frame: is there speech (RMS above a floor relative to the loudest frame)."""
    hop = max(1, int(sample_rate * FRAME_MS / 1000))
    n = len(samples) // hop
    if n == 0:
        return np.zeros(0, dtype=bool)
    frames = np.asarray(samples[: n * hop], dtype=np.float64).reshape(n, hop)
    rms = np.sqrt((frames**2).mean(axis=1))
    floor = max(rel_floor * float(rms.max()), 30.0)  # 30/32768 ~ -61 dBFS: digital silence
    return rms > floor


def token_weight(token: str) -> float:
    """Rough spoken length of a token, in letters."""
    letters = sum(c.isalpha() for c in token)
    digits = sum(c.isdigit() for c in token)
    symbols = sum(c in "$%&@#+=/*" for c in token)
    return 1.0 + letters + 4.0 * digits + 5.0 * symbols


def speech_runs(samples: np.ndarray, sample_rate: int, min_pause_ms: float) -> list[tuple[float, float]]:
    """(start_ms, end_ms) of stretches of speech separated by pauses of at least `min_pause_ms`."""
    voiced = speech_frames(samples, sample_rate)
    runs: list[tuple[float, float]] = []
    idx = np.flatnonzero(voiced)
    if idx.size == 0:
        return runs
    start = prev = int(idx[0])
    min_gap = int(min_pause_ms / FRAME_MS)
    for f in idx[1:]:
        f = int(f)
        if f - prev > min_gap:
            runs.append((start * FRAME_MS, (prev + 1) * FRAME_MS))
            start = f
        prev = f
    runs.append((start * FRAME_MS, (prev + 1) * FRAME_MS))
    return runs


def estimate_word_timings(
    text: str, samples: np.ndarray, sample_rate: int, min_pause_ms: float = 120.0
) -> tuple[WordTiming, ...]:
    tokens = split_words(text)
    duration_ms = len(samples) / sample_rate * 1000.0
    if not tokens:
        return ()
    runs = speech_runs(samples, sample_rate, min_pause_ms) or [(0.0, duration_ms)]
    weights = np.array([token_weight(t) for t in tokens])
    speech_ms = np.array([e - s for s, e in runs])
    # Compressed timeline (pauses removed): token boundaries vs. where each pause falls.
    bounds = np.cumsum(weights)[:-1] / weights.sum() * speech_ms.sum()
    pause_at = np.cumsum(speech_ms)[:-1]
    cuts: list[tuple[int, int]] = []  # (boundary index k: tokens < k before the pause, run index)
    last_k = 0
    for j, at in enumerate(pause_at):
        if last_k >= len(tokens) - 1:
            break
        ks = np.arange(last_k + 1, len(tokens))
        cost = np.abs(bounds[ks - 1] - at)
        cost -= np.array([0.5 * speech_ms.sum() / len(tokens) if _PUNCT_END.search(tokens[k - 1]) else 0.0 for k in ks])
        k = int(ks[int(np.argmin(cost))])
        cuts.append((k, j + 1))
        last_k = k
    # Place each group of tokens proportionally over its stretch of real time (pauses inside kept).
    groups = [(0, 0)] + cuts
    spans: list[tuple[float, float]] = []
    for g, (k0, r0) in enumerate(groups):
        k1, r1 = (groups[g + 1] if g + 1 < len(groups) else (len(tokens), len(runs)))
        t0, t1 = runs[r0][0], runs[r1 - 1][1]
        w = weights[k0:k1]
        edges = t0 + np.concatenate([[0.0], np.cumsum(w)]) / w.sum() * (t1 - t0)
        spans.extend(zip(edges[:-1], edges[1:]))
    return tuple(
        WordTiming(tok, float(min(s, duration_ms)), float(min(e, duration_ms))) for tok, (s, e) in zip(tokens, spans)
    )
