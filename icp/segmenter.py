"""Cutting streamed text into speakable segments.

Segments end at sentence ends; the first segment of an item is cut shorter (at a clause boundary)
so the first audio reaches the listener sooner. Cuts are only ever made at whitespace, so the words
of the segments are exactly the words of the whole text (the heard-word arithmetic relies on it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"[.!?;:](?:[\"')\]]*)\s+|\n+\s*")
_CLAUSE_END = re.compile(r"[,;:\u2014-](?:[\"')\]]*)\s+")


@dataclass(frozen=True, slots=True)
class SegmenterSettings:
    first_min_words: int = 3  # the first segment may end at a comma after this many words
    first_max_words: int = 10  # ...and is cut at a space after this many
    min_words: int = 4  # later segments end at a sentence end after this many words
    max_words: int = 30  # ...and are cut at a clause end or space after this many


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


def _count_words(text: str) -> int:
    return len(text.split())
