"""What the user says: wake, utterance partials and finals, interruptions."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from icp.dispositions import Hint
from icp.messages import rules
from icp.messages.base import Body, Direction
from icp.messages.common import CURSOR, WORDS, Cursor
from icp.words import WordTiming


class WakeSource(StrEnum):
    WAKE_WORD = "wake_word"
    BUTTON = "button"


HINT = rules.optional(rules.enum(Hint))


@dataclass(frozen=True, slots=True)
class Wake(Body):
    TYPE: ClassVar[str] = "wake"
    DIRECTION: ClassVar[Direction] = Direction.UP
    RULES: ClassVar[dict[str, rules.Rule]] = {
        "source": rules.enum(WakeSource),
        "score": rules.optional(rules.number(0, 1)),
    }
    source: WakeSource
    score: float | None = None


@dataclass(frozen=True, slots=True)
class Utterance(Body):
    TYPE: ClassVar[str] = "utterance"
    DIRECTION: ClassVar[Direction] = Direction.UP
    RULES: ClassVar[dict[str, rules.Rule]] = {
        "utterance_id": rules.ident(),
        "final": rules.boolean(),
        "text": rules.text(),
        "words": rules.optional(WORDS),
        "hint": HINT,
    }
    utterance_id: str
    final: bool
    text: str
    words: tuple[WordTiming, ...] | None = None
    hint: Hint | None = None


@dataclass(frozen=True, slots=True)
class Interrupt(Body):
    TYPE: ClassVar[str] = "interrupt"
    DIRECTION: ClassVar[Direction] = Direction.UP
    RULES: ClassVar[dict[str, rules.Rule]] = {
        "utterance_id": rules.ident(),
        "cursor": rules.optional(CURSOR),
        "onset_ms": rules.number(0, 1e12),
        "hint": HINT,
    }
    utterance_id: str
    cursor: Cursor | None
    onset_ms: float
    hint: Hint | None = None
