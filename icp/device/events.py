"""What happens to a device, as events for its machine (`icp.device.machine`). Pure data.

The device app turns callbacks (audio, VAD, wake word, ASR, buttons, MQTT, playback) into these;
`at` fields are audio-clock times, `now` is passed to `DeviceMachine.handle`. Fields that the wire
spells as enums are enums here too (strings are converted on construction, so `ControlReceived("flush")`
and `ControlReceived(Action.FLUSH)` are the same event).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Optional, Union

from icp.dispositions import Disposition, Hint
from icp.messages.playback import Action
from icp.messages.speech import WakeSource


def _enum(obj: object, name: str, kind: type) -> None:
    value = getattr(obj, name)
    if value is not None and not isinstance(value, kind):
        object.__setattr__(obj, name, kind(value))


class DropReason(StrEnum):
    FLUSH = "flush"  # the engine (or the device) flushed the queue: reported as `flushed` already
    GAP = "gap"      # a segment's audio came with a hole: what follows is dropped until a flush
    STARVED = "starved"  # a segment's audio stopped coming (lost): it and what follows are dropped


# ---- audio / speech ----
@dataclass(frozen=True)
class SpeechStarted:
    at: float  # VAD onset, audio time


@dataclass(frozen=True)
class SpeechEnded:
    at: float  # end of the last speech frame


@dataclass(frozen=True)
class SpeechSuspected:
    """The first speech-like frame of a run (not yet an onset): enough to pause optimistically."""
    at: float  # start of that frame, audio time


@dataclass(frozen=True)
class SpeechDismissed:
    """A suspected run broke off before it made an onset: it was not speech (echo, a click)."""
    at: float  # start of the suspected run
    frames: int  # how many speech-like frames it had


@dataclass(frozen=True)
class SpeechPaused:
    """Speech in progress has been quiet for a few frames (the VAD's offset is not due yet): the
    moment a turn may be over, when the words say so."""
    at: float  # end of the last speech frame


@dataclass(frozen=True)
class SpeechResumed:
    """Speech again after a `SpeechPaused`, before the VAD's offset."""
    at: float


@dataclass(frozen=True)
class WakeDetected:
    source: WakeSource = WakeSource.WAKE_WORD
    score: Optional[float] = None
    at: Optional[float] = None  # audio time of the detection (None: now, as for a button)

    def __post_init__(self) -> None:
        _enum(self, "source", WakeSource)


@dataclass(frozen=True)
class TextHeard:
    """An ASR result injected whole (text mode: the evaluation harness)."""
    text: str
    final: bool
    hint: Optional[Hint] = None

    def __post_init__(self) -> None:
        _enum(self, "hint", Hint)


@dataclass(frozen=True)
class AsrPartial:
    utterance_id: str
    text: str
    audio_ms: float = 0.0  # capture audio the hypothesis covers (from the capture's start)
    quick: bool = False    # a quick (short-context) pass asked for by `QuickTranscript`
    turn_audio: Optional[float] = None  # with a quick pass: P(turn over) from the audio model, if any


@dataclass(frozen=True)
class AsrFinal:
    utterance_id: str
    text: str
    words: tuple = ()  # icp.words.WordTiming, ms from the capture's first sample


@dataclass(frozen=True)
class AsrFailed:
    utterance_id: str
    error: str


@dataclass(frozen=True)
class ComponentFailed:
    """A part of the device stopped working (the recogniser could not load, ...): the orb says so."""
    component: str
    error: str


# ---- buttons and dashboard ----
@dataclass(frozen=True)
class TalkPressed:
    at: float


@dataclass(frozen=True)
class CancelPressed:
    at: float


@dataclass(frozen=True)
class MuteSet:
    muted: bool


@dataclass(frozen=True)
class RestartRequested:
    pass


# ---- playback ----
@dataclass(frozen=True)
class SegmentQueued:
    segment: int


@dataclass(frozen=True)
class SegmentFinished:
    segment: int
    samples: int


@dataclass(frozen=True)
class PlaybackIdle:
    pass


@dataclass(frozen=True)
class SegmentsDropped:
    reason: DropReason

    def __post_init__(self) -> None:
        _enum(self, "reason", DropReason)


# ---- the engine and the link ----
@dataclass(frozen=True)
class ControlReceived:
    action: Action
    reason: str = ""  # for logs only, never parsed
    disposition: Optional[Disposition] = None  # the wire's typed `control.disposition`

    def __post_init__(self) -> None:
        _enum(self, "action", Action)
        _enum(self, "disposition", Disposition)


@dataclass(frozen=True)
class EngineStateReceived:
    state: str
    held_threads: int = 0


@dataclass(frozen=True)
class LinkUp:
    pass


@dataclass(frozen=True)
class LinkDown:
    pass


# ---- the sound card ----
@dataclass(frozen=True)
class AudioLost:
    reason: str


@dataclass(frozen=True)
class AudioRestored:
    pass


@dataclass(frozen=True)
class Tick:
    """Time passes. `audio_until`: the stream time up to which the mic audio has been analysed (the
    VAD's events up to there are in). A silence is only known up to there: a loop running behind the
    audio (a loaded machine) must not count audio it has not looked at yet as silence and end the
    user's turn in the middle of a sentence. None: no mic (text mode), the silence runs on `now`."""
    audio_until: Optional[float] = None


Event = Union[SpeechStarted, SpeechEnded, SpeechSuspected, SpeechDismissed, SpeechPaused, SpeechResumed,
              WakeDetected, TextHeard, AsrPartial, AsrFinal, AsrFailed, ComponentFailed, TalkPressed, CancelPressed,
              MuteSet, RestartRequested, SegmentQueued, SegmentFinished, PlaybackIdle, SegmentsDropped,
              ControlReceived, EngineStateReceived, LinkUp, LinkDown, AudioLost, AudioRestored, Tick]
