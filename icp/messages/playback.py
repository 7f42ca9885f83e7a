"""Playback: segments announced down, control down, cursor reports up."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from icp.dispositions import INTERRUPTION_DISPOSITIONS, Disposition
from icp.errors import ProtocolError
from icp.messages import rules
from icp.messages.base import Body, Direction
from icp.messages.common import CURSOR, MAX_SAMPLE, Cursor, ordered_words
from icp.messages.session import SAMPLE_RATE
from icp.words import WordTiming, split_words


class PlaybackEvent(StrEnum):
    HEARTBEAT = "heartbeat"
    SEGMENT_END = "segment_end"
    PAUSED = "paused"
    RESUMED = "resumed"
    FLUSHED = "flushed"
    IDLE = "idle"


class Action(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    FLUSH = "flush"
    LISTEN = "listen"
    STOP_LISTENING = "stop_listening"


@dataclass(frozen=True, slots=True)
class PlaybackReport(Body):
    TYPE: ClassVar[str] = "playback"
    DIRECTION: ClassVar[Direction] = Direction.UP
    RULES: ClassVar[dict[str, rules.Rule]] = {
        "event": rules.enum(PlaybackEvent),
        "cursor": rules.optional(CURSOR),
        "queued_ms": rules.number(0, 1e9),
        "stream_ms": rules.number(0, 1e12),
    }
    event: PlaybackEvent
    cursor: Cursor | None
    queued_ms: float = 0.0
    stream_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Segment(Body):
    TYPE: ClassVar[str] = "segment"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    RULES: ClassVar[dict[str, rules.Rule]] = {
        "segment": rules.integer(1, 2**32 - 1),
        "item": rules.ident(),
        "thread": rules.ident(),
        "text": rules.text(),
        "words": ordered_words,
        "bridge_words": rules.integer(0, rules.MAX_WORDS),
        "sample_rate": SAMPLE_RATE,
        "samples": rules.integer(1, MAX_SAMPLE),
        "prev": rules.integer(0, 2**32 - 1),
    }
    segment: int
    item: str
    thread: str
    text: str
    words: tuple[WordTiming, ...]
    bridge_words: int
    sample_rate: int
    samples: int
    prev: int = 0  # the segment sent to this device just before this one since the last flush (0: none)

    def check(self) -> None:
        seg = self
        if len(seg.words) != len(split_words(seg.text)):
            raise ProtocolError("words", "must have one timing per whitespace-separated word of text")
        if seg.prev >= seg.segment:
            raise ProtocolError("prev", "must be an earlier segment (or 0)")
        if seg.bridge_words > len(seg.words):
            raise ProtocolError("bridge_words", "must not exceed the number of words")
        duration_ms = seg.samples * 1000.0 / seg.sample_rate
        if seg.words and seg.words[-1].end_ms > duration_ms + 1.0:
            raise ProtocolError("words", "timings run past the end of the audio")


@dataclass(frozen=True, slots=True)
class Control(Body):
    TYPE: ClassVar[str] = "control"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    RULES: ClassVar[dict[str, rules.Rule]] = {
        "action": rules.enum(Action),
        "reason": rules.text(64),
        "disposition": rules.optional(rules.enum(Disposition, INTERRUPTION_DISPOSITIONS)),
    }
    action: Action
    reason: str = ""  # for humans and logs; never parsed
    # The disposition this action carries out: `flush` for BRANCH, MODIFY or CANCEL, `resume` for ABSORB;
    # None for every other control (pause on speech, listen, a flush to resync or re-send audio).
    disposition: Disposition | None = None

    def check(self) -> None:
        if self.disposition is Disposition.ABSORB and self.action is not Action.RESUME:
            raise ProtocolError("disposition", "ABSORB goes with action resume")
        if self.disposition is not None and self.disposition is not Disposition.ABSORB \
                and self.action is not Action.FLUSH:
            raise ProtocolError("disposition", f"{self.disposition.value} goes with action flush")
