"""Cut the loops a short-context Whisper decode falls into.

Decoding a mel of a few hundred ms plus zero padding, Whisper tends to run on past the audio by
repeating what it heard: "Stop. Stop.", "Yeah yeah yeah", "What causes the tides? What causes".
Those echoes are not speech, and a partial that ends "... tides? What causes" looks like a turn in
progress to an end-of-turn detector. `cut_repeats` keeps the text up to where it starts over:

- a restart of the opening words at a sentence boundary, or of at least two of them anywhere
  ("Hold on. Hold" -> "Hold on.", "what caused what caused what" -> "what caused");
- a leading run of one word stutters no more often than the sound allows: a word takes at least
  `min_word_s` ("Yeah yeah" from 0.3 s of sound -> "Yeah"; "Right, right." from 0.9 s stays);
- more words than `max_words_per_s` of sound could hold are cut back to the last sentence end
  within that bound, if there is one ("Wait, what's that? What is the" from 1.2 s -> "Wait, what's
  that?": a new sentence made up in the padding).

Words compare case- and punctuation-blind, and a word matches a longer one it starts (ok/okay).
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.?!…]+[\"')\]]*$")


def _norm(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


def _same(a: str, b: str) -> bool:
    a, b = _norm(a), _norm(b)
    if not a or not b:
        return a == b
    return a == b or (min(len(a), len(b)) >= 2 and (a.startswith(b) or b.startswith(a)))


def _restarts(words: list[str], k: int) -> bool:
    """words[k:] repeats the opening words[:len - k] (the text starts over at k)."""
    tail = words[k:]
    return bool(tail) and all(_same(w, words[i]) for i, w in enumerate(tail))


def cut_repeats(text: str, sound_s: float = float("inf"), min_word_s: float = 0.3,
                max_words_per_s: float = 4.0) -> str:
    """`text` without the repetition a runaway decode appended (see the module docstring).
    `sound_s`: seconds of audio with sound behind the text (bounds a one-word stutter)."""
    words = text.split()
    if len(words) < 2:
        return text.strip()
    # a leading stutter of one word: at most one copy per min_word_s of sound
    run = 1
    while run < len(words) and _same(words[run], words[0]):
        run += 1
    allowed = max(1, int(sound_s / min_word_s)) if sound_s != float("inf") else run
    if run > allowed:
        words = words[:allowed] if run == len(words) else words[:allowed] + words[run:]
    # the opening phrase starting over
    for k in range(1, len(words)):
        if k == 1 and _same(words[0], words[1]):
            continue  # a stutter the sound allows (handled above)
        at_boundary = bool(_SENTENCE_END.search(words[k - 1]))
        if _restarts(words, k) and (at_boundary or len(words) - k >= 2):
            words = words[:k]
            break
    # too many words for the sound: back to the last sentence end the sound could hold
    bound = max(2, int(sound_s * max_words_per_s)) if sound_s != float("inf") else len(words)
    if len(words) > bound:
        ends = [i + 1 for i, w in enumerate(words[:bound]) if _SENTENCE_END.search(w)]
        if ends:
            words = words[:ends[-1]]
    return " ".join(words)
