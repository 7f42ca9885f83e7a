"""Words and their timings: the unit in which "heard" is counted.

A word is a whitespace-separated token of the text, exactly as `split_words` cuts it. Every TTS
backend returns one timing per such token, so a segment's timings index the same words the
conversation stores.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WordTiming:
    word: str
    start_ms: float  # from the start of the segment's audio
    end_ms: float

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


def split_words(text: str) -> list[str]:
    return text.split()


def heard_fraction(word: WordTiming, played_ms: float) -> float:
    """How much of the word has reached the ear when `played_ms` of the segment has played."""
    if played_ms <= word.start_ms:
        return 0.0
    if played_ms >= word.end_ms or word.end_ms <= word.start_ms:
        return 1.0
    return (played_ms - word.start_ms) / (word.end_ms - word.start_ms)
