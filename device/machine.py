"""The device's own state machine: events in, commands out, time passed in. No I/O here.

It is the one place on the device that decides. Callbacks (audio, MQTT, wake word, ASR) turn what
happened into an event; the app executes the commands that come back. The decision that matters
most: speech onset while speaking -> pause locally at once and report `interrupt` (the app fills in
the exact cursor that `pause` returns), without waiting for the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional, Union


class State(str, Enum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    PAUSED = "paused"
    MUTED = "muted"


# ---- events ----
@dataclass(frozen=True)
class SpeechStarted:
    at: float  # onset, stream time


@dataclass(frozen=True)
class SpeechEnded:
    at: float


@dataclass(frozen=True)
class WakeDetected:
    source: str = "wake_word"  # wake_word | button
    score: Optional[float] = None


@dataclass(frozen=True)
class TextHeard:
    """An ASR result (or an injected one in text mode)."""
    text: str
    final: bool
    hint: Optional[str] = None


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
    reason: str


@dataclass(frozen=True)
class ControlReceived:
    action: str  # pause | resume | flush | listen | stop_listening
    reason: str = ""


@dataclass(frozen=True)
class LinkUp:
    pass


@dataclass(frozen=True)
class LinkDown:
    pass


@dataclass(frozen=True)
class MuteSet:
    muted: bool


@dataclass(frozen=True)
class Tick:
    pass


Event = Union[SpeechStarted, SpeechEnded, WakeDetected, TextHeard, SegmentQueued, SegmentFinished, PlaybackIdle,
              SegmentsDropped, ControlReceived, LinkUp, LinkDown, MuteSet, Tick]


# ---- commands ----
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
    onset_s: float
    hint: Optional[str] = None  # the app adds the cursor returned by PausePlayback


@dataclass(frozen=True)
class SendUtterance:
    utterance_id: str
    text: str
    final: bool
    hint: Optional[str] = None


@dataclass(frozen=True)
class SendWake:
    source: str
    score: Optional[float]


@dataclass(frozen=True)
class SendPlayback:
    event: str  # heartbeat | segment_end | paused | resumed | flushed | idle
    cursor: Optional[tuple[int, int]] = None  # given for segment_end; else the app reads playback's


@dataclass(frozen=True)
class SendState:
    state: State
    muted: bool


@dataclass(frozen=True)
class SendHello:
    pass


Command = Union[PausePlayback, ResumePlayback, FlushPlayback, SendInterrupt, SendUtterance, SendWake,
                SendPlayback, SendState, SendHello]


@dataclass(frozen=True)
class MachineSettings:
    heartbeat_s: float = 1.0        # playback heartbeats while speaking or paused
    bargein: bool = True            # speech onset while speaking pauses and interrupts
    listen_timeout_s: float = 8.0   # listening with no speech falls back to idle


@dataclass
class Machine:
    settings: MachineSettings = field(default_factory=MachineSettings)
    state: State = State.IDLE
    muted: bool = False
    online: bool = False
    utterance_id: Optional[str] = None
    _utterances: int = 0
    _last_heartbeat: float = 0.0
    _listen_since: float = 0.0
    _speaking_before_mute: bool = False

    def handle(self, event: Event, now: float) -> list[Command]:
        out: list[Command] = []
        before = (self.state, self.muted)
        self._handle(event, now, out)
        if (self.state, self.muted) != before:
            out.append(SendState(self.state, self.muted))
        return out

    def _new_utterance(self, now: float) -> str:
        self._utterances += 1
        self.utterance_id = f"u{self._utterances}-{int(now * 1000)}"
        return self.utterance_id

    def _handle(self, ev: Event, now: float, out: list[Command]) -> None:
        s = self.state
        if isinstance(ev, LinkUp):
            self.online = True
            out.append(SendHello())
            out.append(SendState(self.state, self.muted))
            out.append(SendPlayback("heartbeat"))  # the cursor as it stands after an outage
        elif isinstance(ev, LinkDown):
            self.online = False  # playback goes on from the buffer
        elif isinstance(ev, MuteSet):
            self.muted = ev.muted
        elif isinstance(ev, SegmentQueued):
            if s in (State.IDLE, State.THINKING, State.LISTENING):
                self.state = State.SPEAKING
        elif isinstance(ev, SegmentFinished):
            out.append(SendPlayback("segment_end", (ev.segment, ev.samples)))
        elif isinstance(ev, PlaybackIdle):
            out.append(SendPlayback("idle"))
            if s == State.SPEAKING:
                self.state = State.IDLE
        elif isinstance(ev, SegmentsDropped):
            out.append(SendPlayback("flushed"))
        elif isinstance(ev, SpeechStarted):
            if self.muted:
                return
            if s == State.SPEAKING and self.settings.bargein:
                self.state = State.PAUSED
                out.append(PausePlayback())
                out.append(SendInterrupt(self._new_utterance(now), ev.at))
            elif s == State.LISTENING and self.utterance_id is None:
                self._new_utterance(now)
        elif isinstance(ev, WakeDetected):
            if self.muted or s in (State.SPEAKING, State.PAUSED):
                return
            self.state = State.LISTENING
            self._listen_since = now
            self.utterance_id = None
            out.append(SendWake(ev.source, ev.score))
        elif isinstance(ev, TextHeard):
            if self.muted:
                return
            if s == State.SPEAKING:  # text mode: words arrive with no VAD onset before them
                self.state = State.PAUSED
                out.append(PausePlayback())
                out.append(SendInterrupt(self._new_utterance(now), now, ev.hint))
            if self.utterance_id is None:
                self._new_utterance(now)
            out.append(SendUtterance(self.utterance_id, ev.text, ev.final, ev.hint))
            if ev.final:
                self.utterance_id = None
                if self.state in (State.LISTENING, State.IDLE):
                    self.state = State.THINKING
        elif isinstance(ev, ControlReceived):
            a = ev.action
            if a == "pause":
                out.append(PausePlayback())
                out.append(SendPlayback("paused"))
                if s == State.SPEAKING:
                    self.state = State.PAUSED
            elif a == "resume":
                out.append(ResumePlayback())
                out.append(SendPlayback("resumed"))
                if s in (State.PAUSED, State.THINKING, State.LISTENING, State.IDLE):
                    self.state = State.SPEAKING
            elif a == "flush":
                out.append(FlushPlayback())
                out.append(ResumePlayback())  # a flushed queue must not stay paused for the next reply
                out.append(SendPlayback("flushed"))
                if s in (State.SPEAKING, State.PAUSED):
                    self.state = State.THINKING
            elif a == "listen":
                self.state = State.LISTENING
                self._listen_since = now
            elif a == "stop_listening" and s == State.LISTENING:
                self.state = State.IDLE
        elif isinstance(ev, Tick):
            if s in (State.SPEAKING, State.PAUSED) and now - self._last_heartbeat >= self.settings.heartbeat_s:
                self._last_heartbeat = now
                out.append(SendPlayback("heartbeat"))
            if s == State.LISTENING and self.utterance_id is None and now - self._listen_since > self.settings.listen_timeout_s:
                self.state = State.IDLE
