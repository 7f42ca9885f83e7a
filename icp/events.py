"""Events into the engine's state machine. Every event carries `now` (seconds, the caller's clock)."""

from __future__ import annotations

from dataclasses import dataclass

from icp.dispositions import Disposition, Hint
from icp.messages.common import Cursor
from icp.messages.playback import PlaybackEvent
from icp.words import WordTiming


@dataclass(frozen=True, slots=True)
class Event:
    now: float


@dataclass(frozen=True, slots=True)
class DeviceConnected(Event):
    new_session: bool = True  # the device process (re)started: its audio queue is gone
    sample_rate: int = 16000


@dataclass(frozen=True, slots=True)
class DeviceDisconnected(Event):
    pass


@dataclass(frozen=True, slots=True)
class WakeDetected(Event):
    pass


@dataclass(frozen=True, slots=True)
class UtterancePartial(Event):
    utterance_id: str
    text: str
    hint: Hint | None = None


@dataclass(frozen=True, slots=True)
class UtteranceFinal(Event):
    utterance_id: str
    text: str
    hint: Hint | None = None


@dataclass(frozen=True, slots=True)
class InterruptReported(Event):
    utterance_id: str
    cursor: Cursor | None
    hint: Hint | None = None


@dataclass(frozen=True, slots=True)
class PlaybackReported(Event):
    event: PlaybackEvent
    cursor: Cursor | None
    queued_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Classified(Event):
    request_id: str
    disposition: Disposition
    confidence: float = 1.0
    source: str = "lexical"


@dataclass(frozen=True, slots=True)
class GenerationText(Event):
    generation_id: str
    text: str


@dataclass(frozen=True, slots=True)
class GenerationFinished(Event):
    generation_id: str


@dataclass(frozen=True, slots=True)
class GenerationFailed(Event):
    generation_id: str
    error: str


@dataclass(frozen=True, slots=True)
class SegmentSynthesised(Event):
    segment_id: int
    samples: int
    sample_rate: int
    words: tuple[WordTiming, ...]


@dataclass(frozen=True, slots=True)
class SynthesisFailed(Event):
    segment_id: int
    error: str


@dataclass(frozen=True, slots=True)
class Tick(Event):
    pass


@dataclass(frozen=True, slots=True)
class ClassifyFailed(Event):
    """The classifier raised or gave up: fall back now instead of waiting out `classify_timeout_s`."""

    request_id: str
    error: str


@dataclass(frozen=True, slots=True)
class SegmentNotSent(Event):
    """The I/O layer could not send a segment the core asked it to send (its audio was missing): the
    core must not count it as sent, or the device's `prev` chain and the heard timeline go wrong."""

    segment_id: int
    error: str
