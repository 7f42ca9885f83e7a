"""What the device machine asks its app to do. Pure data; values already within the wire's limits.

`Send*` commands are only emitted while the link is up (the machine decides what is lost offline);
the app builds the wire message, adding only what lives in I/O (the playback cursor, the queue depth).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Optional, Union

from icp.dispositions import Hint
from icp.messages.playback import PlaybackEvent
from icp.messages.session import DeviceStatus, EventType
from icp.messages.speech import WakeSource


class Orb(StrEnum):
    """What the status light shows (device.gpio maps these to colours)."""
    ERROR = "error"
    OFFLINE = "offline"
    MUTED = "muted"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    BRANCH_HELD = "branch_held"
    IDLE = "idle"


@dataclass(frozen=True)
class PausePlayback:
    pass


@dataclass(frozen=True)
class ResumePlayback:
    pass


@dataclass(frozen=True)
class FlushPlayback:
    pass


@dataclass(frozen=True)
class SendInterrupt:
    utterance_id: str
    onset_s: float  # >= 0
    hint: Optional[Hint] = None  # the app adds the cursor that PausePlayback returned


@dataclass(frozen=True)
class SendUtterance:
    utterance_id: str
    text: str  # at most the wire's MAX_TEXT characters
    final: bool
    hint: Optional[Hint] = None
    words: Optional[tuple] = None  # at most the wire's MAX_WORDS timings


@dataclass(frozen=True)
class SendWake:
    source: WakeSource
    score: Optional[float]


@dataclass(frozen=True)
class SendPlayback:
    event: PlaybackEvent
    cursor: Optional[tuple[int, int]] = None  # given for segment_end; else the app reads playback's


@dataclass(frozen=True)
class SendState:
    status: DeviceStatus
    muted: bool
    held_threads: int


@dataclass(frozen=True)
class SendHello:
    pass


@dataclass(frozen=True)
class SendEvent:
    event_type: EventType


@dataclass(frozen=True)
class StartCapture:
    """Stream mic audio from audio time `from_s` on (pre-roll included) into the recogniser.
    `over_speech`: the capture is a barge-in over the agent's own speech, where a short sound is
    most often a backchannel (the recogniser may listen for one: `[whisper] over_speech_prompt`)."""
    utterance_id: str
    from_s: float
    over_speech: bool = False


@dataclass(frozen=True)
class FinishCapture:
    """End the capture and send its final. `prepared`: no speech since a `PrepareFinal` of this
    capture, so the pass it started covers every word and may be the final."""
    utterance_id: str
    prepared: bool = False


@dataclass(frozen=True)
class PrepareFinal:
    """Start the final pass over the capture so far, before the turn's silence is over: the user
    has been quiet a while and the words did not end the turn, so the ordinary silence will (or
    speech resumes, and the pass is dropped). The final then costs the rest of the silence, not the
    silence plus the pass."""
    utterance_id: str


@dataclass(frozen=True)
class CancelCapture:
    utterance_id: str


@dataclass(frozen=True)
class QuickTranscript:
    """Transcribe the capture so far now, quickly (a short-context pass), and report it as an
    `AsrPartial(quick=True)`: the words the end-of-turn decision looks at."""
    utterance_id: str


@dataclass(frozen=True)
class SetListening:
    """Which mic consumers run: the wake word detector and the recogniser's feed (mute, state)."""
    wake_word: bool
    asr: bool


@dataclass(frozen=True)
class SetOrb:
    orb: Orb


@dataclass(frozen=True)
class Restart:
    """Restart the process cleanly (dashboard `down/restart`)."""


@dataclass(frozen=True)
class ReopenAudio:
    """Try to open the sound card again (an `AudioRestored` follows if it works)."""


@dataclass(frozen=True)
class ExitProcess:
    code: int
    reason: str


@dataclass(frozen=True)
class Ignored:
    """An event that does not belong in the current state (logged at debug; never an exception)."""
    event: object
    reason: str


Command = Union[PausePlayback, ResumePlayback, FlushPlayback, SendInterrupt, SendUtterance, SendWake, SendPlayback,
                SendState, SendHello, SendEvent, StartCapture, FinishCapture, PrepareFinal, CancelCapture,
                QuickTranscript,
                SetListening, SetOrb, Restart, ReopenAudio, ExitProcess, Ignored]
SEND_COMMANDS = (SendInterrupt, SendUtterance, SendWake, SendPlayback, SendState, SendHello, SendEvent)
