"""Cutting streamed text into speakable segments.

Segments end at sentence ends; the first segment of an item is cut shorter (at a clause boundary,
or, failing one, at the first phrase boundary: before a word that opens a new phrase, such as
"with", "because" or "and", after a few words) so the first audio reaches the listener sooner: the
LLM has fewer tokens to write and the TTS fewer words to synthesise before anything can play. A
phrase boundary is where a speaker may breathe, so the seam between two separately synthesised
segments falls where a listener expects a small break anyway. Cuts are only ever made at whitespace, so the words
of the segments are exactly the words of the whole text (the heard-word arithmetic relies on it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"[.!?;:](?:[\"')\]]*)\s+|\n+\s*")
_CLAUSE_END = re.compile(r"[,;:\u2014-](?:[\"')\]]*)\s+")
# Words that open a new phrase (prepositions, conjunctions, relative words): a first segment may end
# just before one. Only whole words followed by more text count (the word must be complete).
PHRASE_OPENERS: frozenset[str] = frozenset(
    """
    with without for from to into onto in on at about after before because since until unless
    while when where which who whose whom that so but and or than as if though although like
    during through between among by via per against toward towards
    """.split()
)
_WORD_THEN_SPACE = re.compile(r"\s+([A-Za-z']+)(?=\s)")  # the next space is left for the next word


@dataclass(frozen=True, slots=True)
class SegmenterSettings:
    first_min_words: int = 3  # the first segment may end at a comma after this many words
    first_max_words: int = 10  # ...and is cut at a space after this many
    min_words: int = 4  # later segments end at a sentence end after this many words
    max_words: int = 30  # ...and are cut at a clause end or space after this many
    # The first segment may end before a phrase opener (`PHRASE_OPENERS`) once it has this many
    # words (0: never; the first segment then waits for a clause or sentence end).
    first_phrase_words: int = 4


def next_cut(text: str, first: bool, final: bool, settings: SegmenterSettings = SegmenterSettings()) -> int | None:
    """Character index where the next segment of `text` ends, or None to wait for more text.

    `final`: the generation has finished, so whatever remains is a segment.
    """
    if not text.strip():
        return None
    min_words = settings.first_min_words if first else settings.min_words
    max_words = settings.first_max_words if first else settings.max_words
    candidates = [
        m.end() for m in _SENTENCE_END.finditer(text) if final or _count_words(text[: m.end()]) >= min_words
    ]
    if first:
        candidates += [
            m.end() for m in _CLAUSE_END.finditer(text) if _count_words(text[: m.end()]) >= min_words
        ]
        if settings.first_phrase_words > 0:
            candidates += _phrase_cuts(text, settings.first_phrase_words)
    if candidates:
        return min(candidates)
    # A long run with no sentence end: cut at a clause end or space after max_words complete words.
    spaces = [m.end() for m in re.finditer(r"\s+", text)]
    complete = [end for end in spaces if _count_words(text[:end]) <= max_words]
    if len(complete) >= max_words and complete:
        clauses = [m.end() for m in _CLAUSE_END.finditer(text) if m.end() <= complete[-1]]
        if clauses and _count_words(text[: clauses[-1]]) >= min_words:
            return clauses[-1]
        return complete[-1]
    if final:
        return len(text)
    return None


def _phrase_cuts(text: str, min_words: int) -> list[int]:
    """Cut points just before a complete phrase-opening word, with at least `min_words` before it.

    The cut index is where the opener starts, so the whitespace stays with the first part (the
    segments still concatenate to the text)."""
    cuts = []
    for m in _WORD_THEN_SPACE.finditer(text):
        if m.group(1).lower() in PHRASE_OPENERS and _count_words(text[: m.start(1)]) >= min_words:
            cuts.append(m.start(1))
    return cuts


def _count_words(text: str) -> int:
    return len(text.split())
