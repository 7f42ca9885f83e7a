"""Types shared by several message families: the heard cursor and word timings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from icp.errors import ProtocolError
from icp.messages import rules
from icp.words import WordTiming

MAX_SAMPLE = 2**31


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """Samples of `segment` that have reached the ear (see docs/protocol.md, "The heard cursor")."""

    segment: int
    sample: int


CURSOR = rules.obj(
    {"segment": rules.integer(1, 2**32 - 1), "sample": rules.integer(0, MAX_SAMPLE)}, Cursor
)


def _word(path: str, value: Any) -> WordTiming:
    fields = rules.check_fields(
        path,
        value if isinstance(value, dict) else _not_object(path, value),
        {"w": rules.text(64, 1), "start_ms": rules.number(0, 1e8), "end_ms": rules.number(0, 1e8)},
    )
    if fields["end_ms"] < fields["start_ms"]:
        raise ProtocolError(path + ".end_ms", "must not be before start_ms")
    return WordTiming(fields["w"], fields["start_ms"], fields["end_ms"])


def _not_object(path: str, value: Any) -> dict[str, Any]:
    raise ProtocolError(path, f"must be an object, got {type(value).__name__}")


WORDS = rules.list_of(_word, rules.MAX_WORDS)


def ordered_words(path: str, value: Any) -> tuple[WordTiming, ...]:
    """Word timings in order and not overlapping: what a segment must carry."""
    words: tuple[WordTiming, ...] = WORDS(path, value)
    for i in range(1, len(words)):
        if words[i].start_ms < words[i - 1].end_ms - 1e-6:
            raise ProtocolError(f"{path}[{i}].start_ms", "words must be in order and not overlap")
    return words


def word_to_json(word: WordTiming) -> dict[str, Any]:
    return {"w": word.word, "start_ms": word.start_ms, "end_ms": word.end_ms}
