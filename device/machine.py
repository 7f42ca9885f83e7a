"""The device's own state machine: events in, commands out, time passed in. No I/O here.

It is the one place on the device that decides. Callbacks (audio, MQTT, wake word, ASR, buttons)
turn what happened into an event; the app executes the commands that come back. The decision that
matters most: speech onset while speaking -> pause locally at once and report `interrupt` (the app
fills in the exact cursor that `pause` returns), without waiting for the engine.

Listening with a recogniser (`MachineSettings.asr`): the machine opens a *capture* (the app streams
echo-cancelled mic audio into the ASR worker) after a wake, a talk press, a barge-in onset, or an
onset while the engine listens for a follow-up, and closes it when the user has stopped talking
(`end_silence_s` after the VAD's speech offset) or after `max_utterance_s`. Partials and the final
come back as `AsrPartial` / `AsrFinal` events and leave as `utterance` messages. Without a
recogniser (text mode: the evaluation harness), `TextHeard` plays that role and no capture opens.

Mute: no wake, no capture, no barge-in while muted (the app also stops feeding the models).
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
    at: Optional[float] = None  # audio time of the detection (None: now, as for a button)


@dataclass(frozen=True)
class TextHeard:
    """An ASR result (or an injected one in text mode)."""
    text: str
    final: bool
    hint: Optional[str] = None


@dataclass(frozen=True)
class AsrPartial:
    """The recogniser's hypothesis so far for capture `utterance_id`."""
    utterance_id: str
    text: str


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
class TalkPressed:
    """The talk button, short press."""
    at: float


@dataclass(frozen=True)
class CancelPressed:
    """The talk button held: the user wants the current reply (or turn) cancelled."""
    at: float


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
    reason: str = ""  # for logs only
    disposition: Optional[str] = None  # the wire's typed `control.disposition` (BRANCH, MODIFY, CANCEL, ABSORB)


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


@dataclass(frozen=True)
class MuteSet:
    muted: bool


@dataclass(frozen=True)
class RestartRequested:
    pass


@dataclass(frozen=True)
class AudioLost:
    """The sound card stopped working (the backend's `failure()`)."""
    reason: str


@dataclass(frozen=True)
class AudioRestored:
    """A reopen succeeded: the card works again."""


@dataclass(frozen=True)
class Tick:
    pass


Event = Union[AudioLost, AudioRestored, SpeechStarted, SpeechEnded, WakeDetected, TextHeard, AsrPartial, AsrFinal, AsrFailed, TalkPressed,
              CancelPressed, SegmentQueued, SegmentFinished, PlaybackIdle, SegmentsDropped, ControlReceived,
              EngineStateReceived, LinkUp, LinkDown, MuteSet, RestartRequested, Tick]


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
    words: Optional[tuple] = None  # word timings of a recognised final


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
    error: bool = False  # the sound card is gone: the wire status is `error`


@dataclass(frozen=True)
class SendHello:
    pass


@dataclass(frozen=True)
class SendEvent:
    """A dashboard `event`: `wake`, `interrupt_branch`, `interrupt_modify`, ..."""
    event_type: str


@dataclass(frozen=True)
class StartCapture:
    """Stream mic audio from stream time `from_s` on (pre-roll included) into the recogniser."""
    utterance_id: str
    from_s: float


@dataclass(frozen=True)
class FinishCapture:
    """The user has finished: run the final pass; an `AsrFinal` will follow."""
    utterance_id: str


@dataclass(frozen=True)
class CancelCapture:
    """Drop the capture; no result is wanted."""
    utterance_id: str


@dataclass(frozen=True)
class Restart:
    """Restart the process cleanly (dashboard `down/restart`)."""


@dataclass(frozen=True)
class ReopenAudio:
    """Try to open the sound card again (an `AudioRestored` follows if it works)."""


@dataclass(frozen=True)
class ExitProcess:
    """Give up: exit with `code` so that the service manager restarts the process."""
    code: int
    reason: str


Command = Union[ReopenAudio, ExitProcess, PausePlayback, ResumePlayback, FlushPlayback, SendInterrupt, SendUtterance, SendWake,
                SendPlayback, SendState, SendHello, SendEvent, StartCapture, FinishCapture, CancelCapture, Restart]


@dataclass(frozen=True)
class MachineSettings:
    heartbeat_s: float = 1.0        # playback heartbeats while speaking or paused
    bargein: bool = True            # speech onset while speaking pauses and interrupts
    listen_timeout_s: float = 8.0   # listening with no speech falls back to idle
    asr: bool = False               # a recogniser is wired in: open captures (else text mode)
    wake_while_speaking: bool = False  # a wake word while speaking interrupts like a barge-in
    end_silence_s: float = 0.7      # silence after speech that ends an utterance
    max_utterance_s: float = 15.0   # a capture is finished after this long whatever the VAD says
    min_speech_s: float = 0.3       # speech shorter than this after a wake is the wake word's tail
    preroll_s: float = 0.3          # audio before an onset handed to the recogniser
    wake_question_gap_s: float = 1.5  # a speech run that began within this of the wake phrase's end,
    #                                   still going at the detection, is the question: captured whole
    audio_retry_s: float = 1.0      # a lost sound card is reopened this often...
    audio_give_up_s: float = 30.0   # ...and the process exits (for systemd to restart it) after this long
    audio_exit_code: int = 74       # EX_IOERR


@dataclass
class Machine:
    settings: MachineSettings = field(default_factory=MachineSettings)
    state: State = State.IDLE
    muted: bool = False
    online: bool = False
    utterance_id: Optional[str] = None
    capture: Optional[str] = None     # utterance whose audio streams into the recogniser
    finishing: Optional[str] = None   # utterance whose final pass is running
    hint: Optional[str] = None        # hint for the open utterance (talk button held)
    _utterances: int = 0
    _last_heartbeat: float = 0.0
    _listen_since: float = 0.0
    _speaking_before_mute: bool = False
    _capture_since: float = 0.0
    _run_start: Optional[float] = None    # onset of the speech run in progress during a capture
    _silence_since: Optional[float] = None  # end of the user's last speech in the capture
    _spoke: bool = False
    _interrupt_open: bool = False  # an interrupt was sent and its disposition has not come back
    audio_error: Optional[str] = None  # why the sound card is not working (None: it works)
    _speech_on: Optional[float] = None   # onset of the VAD's speech run in progress (None: silence)
    _speech_off: Optional[float] = None  # end of the last finished speech run
    _audio_lost_since: float = 0.0
    _audio_retry_at: float = 0.0

    def handle(self, event: Event, now: float) -> list[Command]:
        out: list[Command] = []
        before = (self.state, self.muted, self.audio_error is None)
        self._handle(event, now, out)
        if (self.state, self.muted, self.audio_error is None) != before:
            out.append(SendState(self.state, self.muted, self.audio_error is not None))
        return out

    def _audio(self, ev: Event, now: float, out: list[Command]) -> None:
        """A card that is gone: report it, drop what was in progress, retry, give up after a while."""
        st = self.settings
        if isinstance(ev, AudioLost):
            if self.audio_error is not None:
                return
            self.audio_error = ev.reason
            self._audio_lost_since = now
            self._audio_retry_at = now + st.audio_retry_s
            self._abandon_utterance(out)
            self.state = State.IDLE
            out.append(SendEvent("audio_lost"))
        elif isinstance(ev, AudioRestored):
            if self.audio_error is None:
                return
            self.audio_error = None
            out.append(SendEvent("audio_restored"))
            out.append(SendPlayback("heartbeat"))
        elif isinstance(ev, Tick) and self.audio_error is not None:
            if now - self._audio_lost_since >= st.audio_give_up_s:
                out.append(ExitProcess(st.audio_exit_code, f"sound card lost for {now - self._audio_lost_since:.0f} s: "
                                       f"{self.audio_error}"))
            elif now >= self._audio_retry_at:
                self._audio_retry_at = now + st.audio_retry_s
                out.append(ReopenAudio())

    def _new_utterance(self, now: float) -> str:
        self._utterances += 1
        self.utterance_id = f"u{self._utterances}-{int(now * 1000)}"
        self.hint = None
        return self.utterance_id

    # ---- captures ----
    def _start_capture(self, from_s: float, now: float, out: list[Command], speech_at: Optional[float]) -> None:
        if not self.settings.asr or self.utterance_id is None:
            return
        if self.capture is not None:
            out.append(CancelCapture(self.capture))
        self.capture = self.utterance_id
        self._capture_since = now
        self._run_start = speech_at
        self._silence_since = None
        self._spoke = False
        out.append(StartCapture(self.capture, max(0.0, from_s)))

    def _finish_capture(self, out: list[Command]) -> None:
        if self.capture is None:
            return
        self.finishing = self.capture
        out.append(FinishCapture(self.capture))
        self.capture = None

    def _abandon_utterance(self, out: list[Command]) -> None:
        """Drop the capture; close the utterance with an empty final so the engine is not left waiting."""
        uid = self.capture or self.finishing
        if self.capture is not None:
            out.append(CancelCapture(self.capture))
        self.capture = self.finishing = None
        if uid is not None:
            out.append(SendUtterance(uid, "", True, self.hint))
            if self.utterance_id == uid:
                self.utterance_id = None
        self.hint = None

    def _barge_in(self, at: float, now: float, out: list[Command], hint: Optional[str] = None) -> None:
        self.state = State.PAUSED
        out.append(PausePlayback())
        uid = self._new_utterance(now)
        self.hint = hint
        self._interrupt_open = True
        out.append(SendInterrupt(uid, at, hint))
        self._start_capture(at - self.settings.preroll_s, now, out, speech_at=at)

    def _final(self, uid: str, text: str, words: Optional[tuple], out: list[Command]) -> None:
        out.append(SendUtterance(uid, text, True, self.hint, words))
        if self.utterance_id == uid:
            self.utterance_id = None
        self.hint = None
        if self.state in (State.LISTENING, State.IDLE):
            self.state = State.THINKING if text.strip() else State.IDLE

    def _wake(self, source: str, score: Optional[float], now: float, out: list[Command],
              at: Optional[float] = None) -> None:
        """Listen from the wake word's detection on: `at` is its audio time, earlier than `now` when the
        loop runs behind the audio (a loaded CPU); starting the capture at `now` would cut off the
        first words of a question said right after the wake word."""
        self.state = State.LISTENING
        self._listen_since = now
        self.utterance_id = None
        if self.capture is not None:
            out.append(CancelCapture(self.capture))
            self.capture = None
        out.append(SendWake(source, score))
        out.append(SendEvent("wake"))
        if self.settings.asr:
            self._new_utterance(now)
            start = now if at is None else min(now, at)
            speech_at = None
            on, off = self._speech_on, self._speech_off
            if (at is not None and on is not None and off is not None and on > off
                    and at - off <= self.settings.wake_question_gap_s):
                # The detector fired after the wake phrase had ended and a new run had begun: the
                # question is already under way. Start at its onset (with pre-roll, never reaching
                # back into the wake phrase), as it counts as the user's speech.
                start = max(off, on - self.settings.preroll_s)
                speech_at = on
            self._start_capture(start, now, out, speech_at=speech_at)
            self._capture_since = start  # audio time: SpeechEnded.at is compared with it

    def _handle(self, ev: Event, now: float, out: list[Command]) -> None:
        s = self.state
        if isinstance(ev, (AudioLost, AudioRestored)) or (isinstance(ev, Tick) and self.audio_error is not None):
            self._audio(ev, now, out)
            if not isinstance(ev, Tick):
                return
        if isinstance(ev, SpeechStarted):
            self._speech_on = ev.at
        elif isinstance(ev, SpeechEnded):
            self._speech_on, self._speech_off = None, ev.at
        if isinstance(ev, LinkUp):
            self.online = True
            out.append(SendHello())
            out.append(SendState(self.state, self.muted, self.audio_error is not None))
            out.append(SendPlayback("heartbeat"))  # the cursor as it stands after an outage
        elif isinstance(ev, LinkDown):
            self.online = False  # playback goes on from the buffer
        elif isinstance(ev, MuteSet):
            if ev.muted and not self.muted:
                self._abandon_utterance(out)
                if self.state == State.LISTENING:
                    self.state = State.IDLE
            self.muted = ev.muted
        elif isinstance(ev, RestartRequested):
            out.append(Restart())
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
                self._barge_in(ev.at, now, out)
            elif s == State.LISTENING and self.utterance_id is None:
                self._new_utterance(now)
                self._start_capture(ev.at - self.settings.preroll_s, now, out, speech_at=ev.at)
            elif self.capture is not None:
                self._run_start = ev.at
                self._silence_since = None
        elif isinstance(ev, SpeechEnded):
            if self.capture is not None:
                # A run whose onset we saw during the capture counts whatever its length; speech that
                # was already going on when the capture opened (the wake word's tail) only when long.
                counts = self._run_start is not None or ev.at - self._capture_since >= self.settings.min_speech_s
                self._run_start = None
                if self._spoke or counts:
                    self._spoke = True
                    self._silence_since = ev.at
        elif isinstance(ev, WakeDetected):
            if self.muted:
                return
            if s in (State.SPEAKING, State.PAUSED):
                if s == State.SPEAKING and ev.source == "wake_word" and self.settings.wake_while_speaking:
                    out.append(SendEvent("wake"))
                    self._barge_in(now, now, out)
                return
            self._wake(ev.source, ev.score, now, out, ev.at)
        elif isinstance(ev, TalkPressed):
            if self.muted or s == State.PAUSED:
                return
            if s == State.SPEAKING:  # the user asks for the floor: like a barge-in, whatever bargein says
                self._barge_in(ev.at, now, out)
            else:
                self._wake("button", None, now, out)
        elif isinstance(ev, CancelPressed):
            if s in (State.SPEAKING, State.THINKING):
                if s == State.SPEAKING:
                    self.state = State.PAUSED
                    out.append(PausePlayback())
                if self.capture is not None:
                    out.append(CancelCapture(self.capture))
                    self.capture = None
                uid = self._new_utterance(now)
                self._interrupt_open = True
                out.append(SendInterrupt(uid, ev.at, "cancel"))
                self.hint = "cancel"
                self._final(uid, "", None, out)
            elif self.utterance_id is not None or self.capture is not None or self.finishing is not None:
                self.hint = "cancel"
                if self.capture is None and self.finishing is None:  # text mode: nothing else will close it
                    self._final(self.utterance_id or self._new_utterance(now), "", None, out)
                elif self.capture is not None and not self._spoke:
                    self._abandon_utterance(out)
                    if self.state == State.LISTENING:
                        self.state = State.IDLE
                # else: the user is talking; the final carries the hint
            elif s == State.LISTENING:
                self.state = State.IDLE
        elif isinstance(ev, TextHeard):
            if self.muted:
                return
            if s == State.SPEAKING:  # text mode: words arrive with no VAD onset before them
                self.state = State.PAUSED
                out.append(PausePlayback())
                self._interrupt_open = True
                out.append(SendInterrupt(self._new_utterance(now), now, ev.hint))
            if self.utterance_id is None:
                self._new_utterance(now)
            if self.capture is not None and self.capture == self.utterance_id:  # injected text wins
                out.append(CancelCapture(self.capture))
                self.capture = None
            hint = ev.hint or self.hint
            out.append(SendUtterance(self.utterance_id, ev.text, ev.final, hint))
            if ev.final:
                self.utterance_id = None
                self.hint = None
                if self.state in (State.LISTENING, State.IDLE):
                    self.state = State.THINKING
        elif isinstance(ev, AsrPartial):
            if ev.utterance_id in (self.capture, self.finishing) and ev.text and not self.muted:
                out.append(SendUtterance(ev.utterance_id, ev.text, False, self.hint))
        elif isinstance(ev, AsrFinal):
            if ev.utterance_id not in (self.capture, self.finishing):
                return  # a cancelled capture's late result
            if self.capture == ev.utterance_id:
                self.capture = None
            self.finishing = None
            self._final(ev.utterance_id, ev.text, tuple(ev.words) or None, out)
        elif isinstance(ev, AsrFailed):
            if ev.utterance_id in (self.capture, self.finishing):
                self.capture = self.finishing = None
                self._final(ev.utterance_id, "", None, out)
        elif isinstance(ev, ControlReceived):
            a = ev.action
            disposition = ev.disposition
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
                if self.capture is None and self.finishing is None:
                    self.utterance_id = None
                self.state = State.LISTENING
                self._listen_since = now
            elif a == "stop_listening" and s == State.LISTENING:
                if self.capture is not None:
                    out.append(CancelCapture(self.capture))
                    self.capture = None
                self.state = State.IDLE
            # Only a disposition for an interruption this device reported counts.
            if disposition is not None and a in ("resume", "flush") and self._interrupt_open:
                self._interrupt_open = False
                out.append(SendEvent(f"interrupt_{disposition.lower()}"))
        elif isinstance(ev, EngineStateReceived):
            # The engine went idle without a reply for us (a bare stop, "never mind", nothing said):
            # stop showing "thinking".
            if ev.state == "idle" and s == State.THINKING and self.capture is None and self.finishing is None:
                self.state = State.IDLE
        elif isinstance(ev, Tick):
            if s in (State.SPEAKING, State.PAUSED) and now - self._last_heartbeat >= self.settings.heartbeat_s:
                self._last_heartbeat = now
                out.append(SendPlayback("heartbeat"))
            if self.capture is not None:
                st = self.settings
                if self._silence_since is not None and self._run_start is None and now - self._silence_since >= st.end_silence_s:
                    self._finish_capture(out)
                elif now - self._capture_since >= st.max_utterance_s:
                    self._finish_capture(out)
                elif (not self._spoke and self._run_start is None and s == State.LISTENING
                      and now - self._capture_since > st.listen_timeout_s):
                    self._abandon_utterance(out)
                    self.state = State.IDLE
            if s == State.LISTENING and self.utterance_id is None and now - self._listen_since > self.settings.listen_timeout_s:
                self.state = State.IDLE
