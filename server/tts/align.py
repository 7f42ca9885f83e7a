"""Map a synthesiser's phoneme stream back to the text's whitespace tokens.

espeak-ng (which piper uses for phonemes) does not keep one phoneme word per text token: it merges
("in the" -> "ɪnðə"), splits ("42" -> "fˈɔːɹɾi tˈuː") and reads symbols ("$" -> "dˈɑːlɚ", after the
number). So each token is phonemized on its own, and that labelled reference is aligned to the
phonemes actually spoken (edit distance, vectorised per row) to give every spoken phoneme a token.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SEPARATORS = frozenset(" ,.;:!?\"'()[]-—–…")


def edit_alignment(a: Sequence[str], b: Sequence[str]) -> list[int]:
    """For each item of `a`, the index of the `b` item it aligns to (match/substitution) or -1."""
    n, m = len(a), len(b)
    result = [-1] * n
    if n == 0 or m == 0:
        return result
    symbols = {s: k for k, s in enumerate(set(a) | set(b))}
    av = np.array([symbols[s] for s in a])
    bv = np.array([symbols[s] for s in b])
    d = np.zeros((n + 1, m + 1), dtype=np.int32)
    d[0] = np.arange(m + 1)
    cols = np.arange(m + 1, dtype=np.int32)
    for i in range(1, n + 1):
        temp = np.empty(m + 1, dtype=np.int32)
        temp[0] = i
        temp[1:] = np.minimum(d[i - 1, 1:] + 1, d[i - 1, :-1] + (bv != av[i - 1]))
        d[i] = np.minimum.accumulate(temp - cols) + cols
    i, j = n, m
    while i > 0 and j > 0:
        cost = int(a[i - 1] != b[j - 1])
        if d[i, j] == d[i - 1, j - 1] + cost:
            result[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif d[i, j] == d[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return result


def label_phonemes(spoken: Sequence[str], token_phonemes: Sequence[Sequence[str]]) -> list[int]:
    """Token index for every spoken phoneme symbol; -1 for separators (spaces, punctuation pauses).

    `token_phonemes[k]` is token k phonemized alone. Spoken symbols that align to nothing take the
    token of their neighbours in the same spoken word, so a merged word splits where the reference
    says and an unexpected phoneme never starts a new token.
    """
    ref: list[str] = []
    ref_token: list[int] = []
    for k, phonemes in enumerate(token_phonemes):
        for p in phonemes:
            if p not in SEPARATORS:
                ref.append(p)
                ref_token.append(k)
    idx = [i for i, p in enumerate(spoken) if p not in SEPARATORS]
    aligned = edit_alignment([spoken[i] for i in idx], ref)
    labels = [-1] * len(spoken)
    for i, j in zip(idx, aligned):
        if j >= 0:
            labels[i] = ref_token[j]
    # Fill unaligned phonemes from their spoken word (a run without separators).
    word_start = 0
    for end in range(len(spoken) + 1):
        if end < len(spoken) and spoken[end] not in SEPARATORS:
            continue
        run = list(range(word_start, end))
        word_start = end + 1
        if not run:
            continue
        known = [labels[i] for i in run if labels[i] >= 0]
        if not known:
            continue
        last = known[0]
        for i in run:
            if labels[i] >= 0:
                last = labels[i]
            else:
                labels[i] = last
    # Whole spoken words that aligned to nothing join the token before them (or after, at the start).
    prev = -1
    for i, p in enumerate(spoken):
        if p in SEPARATORS:
            continue
        if labels[i] < 0:
            labels[i] = prev if prev >= 0 else _next_label(labels, spoken, i)
        prev = labels[i]
    # Keep labels monotone (the alignment is; the fills above could only repeat neighbours).
    top = -1
    for i, lab in enumerate(labels):
        if lab >= 0:
            top = max(top, lab)
            labels[i] = top
    return labels


def _next_label(labels: list[int], spoken: Sequence[str], i: int) -> int:
    for j in range(i + 1, len(spoken)):
        if spoken[j] not in SEPARATORS and labels[j] >= 0:
            return labels[j]
    return 0


def token_spans(labels: Sequence[int], ends: Sequence[float], starts: Sequence[float], n_tokens: int) -> list[tuple[float, float]]:
    """(start, end) per token from labelled phonemes with their own start/end times.

    Tokens with no phonemes (a lone dash) get a zero-length span where they fall.
    """
    spans: list[tuple[float, float] | None] = [None] * n_tokens
    for lab, s, e in zip(labels, starts, ends):
        if lab < 0:
            continue
        cur = spans[lab]
        spans[lab] = (s, e) if cur is None else (cur[0], e)
    out: list[tuple[float, float]] = []
    prev_end = 0.0
    for k in range(n_tokens):
        cur = spans[k]
        if cur is None:
            nxt = next((sp[0] for sp in spans[k + 1 :] if sp is not None), None)
            at = prev_end if nxt is None or k > 0 else nxt
            cur = (at, at)
        start = max(cur[0], prev_end)
        end = max(cur[1], start)
        out.append((start, end))
        prev_end = end
    return out
