"""The device's state machine: events in with `now`, commands out. The one place the device decides.

Callbacks (audio, VAD, wake word, ASR, buttons, MQTT, playback) become events (`icp.device.events`);
the app carries out the commands (`icp.device.commands`) and decides nothing. The decision that
matters most: speech onset while speaking -> pause locally at once and report `interrupt` (the app
adds the exact cursor that the pause returned), without waiting for the engine.

Decided here as well: what the orb shows (error > offline > muted > state, idle with held threads:
`branch_held`); which mic consumers run (no wake word and no recogniser while muted or without a
sound card; the wake word only while idle, or while speaking with `wake_while_speaking`); which
playback drops are reported (a gap; a flush was reported as `flushed` when it was ordered); that
nothing is sent while the link is down (the heartbeat after `LinkUp` gives the engine the cursor as
it stands); that every value sent is within the wire's limits; how a lost sound card is retried and
when the process gives up.

Dispatch is by a table keyed by event type (`HANDLERS`); the next state comes from
`icp.device.table.TABLE`. An event that does not apply (muted, stale, ...) yields an `Ignored`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from icp.device import commands as C
from icp.device import events as E
from icp.device.capture import Captures
from icp.device.turns import Turns
from icp.device.table import TABLE, Deadline, State, Step, Trigger
from icp.dispositions import Hint
from icp.turn_end import TurnEndSettings
from icp.messages.playback import Action, PlaybackEvent
from icp.messages.session import DeviceStatus, EventType
from icp.messages.speech import WakeSource

Orb = C.Orb


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
    wake_word: bool = False         # a wake word detector is wired in
    # Turn taking (issue 12). The defaults are segue's; `segue-bench turns` shows them beside a
    # baseline configured like Pipecat's and LiveKit's published defaults.
    optimistic_pause: bool = True   # pause on the first speech-like frame while speaking; resume if no onset
    suspect_max_s: float = 0.3      # a suspicion that is neither confirmed nor dismissed by then is dropped
    min_interruption_s: float = 0.0  # speech must last this long before it interrupts (0: the onset does)
    semantic_eot: bool = True       # end a turn by its words as well as its silence (`icp.turn_end`)
    eot_complete_silence_s: float = 0.25    # silence that ends a turn whose words look complete
    eot_command_silence_s: float = 0.5      # ...a short command or reply ("Thanks."), when listening
    eot_incomplete_silence_s: float = 1.6   # ...and one whose words look unfinished ("and", "the", "um")
    turn_end: TurnEndSettings = field(default_factory=TurnEndSettings)
    audio_complete_at: float = 0.5  # the audio model's P(turn over) that lets complete words end a turn
    final_from_quick: bool = True   # a turn ended by complete words sends their quick transcript as the final
    eot_fast_questions_only: bool = True  # the short silence only for a question ("?"); a short command
    #                                       waits eot_command_silence_s, anything else the ordinary silence
    # The recogniser starts the final pass this long before the silence would end the turn
    # (`PrepareFinal`), so the final is ready about when the silence is over (0: the pass starts then).
    final_lead_s: float = 0.45
    # A turn's silence counts only up to the mic audio analysed (`Tick.audio_until`) plus this: a loop
    # behind the audio by more (a loaded machine) waits for the audio instead of ending the turn.
    audio_lag_tolerance_s: float = 0.1


@dataclass
class DeviceMachine(Captures, Turns):
    settings: MachineSettings = field(default_factory=MachineSettings)
    state: State = State.IDLE
    muted: bool = False
    online: bool = False
    held_threads: int = 0             # from the engine's `engine_state`
    audio_error: Optional[str] = None  # why the sound card is not working (None: it works)
    errors: dict[str, str] = field(default_factory=dict)  # failed components (the orb shows `error`)
    utterance_id: Optional[str] = None
    capture: Optional[str] = None     # utterance whose audio streams into the recogniser
    finishing: Optional[str] = None   # utterance whose final pass is running
    hint: Optional[Hint] = None       # hint for the open utterance (talk button held)
    _utterances: int = 0
    _last_heartbeat: float = 0.0
    _listen_since: float = 0.0
    _capture_since: float = 0.0
    _capture_from: float = 0.0        # audio time the capture's audio starts at (pre-roll included)
    _run_start: Optional[float] = None    # onset of the speech run in progress during a capture
    _silence_since: Optional[float] = None  # end of the user's last speech in the capture
    _prepared: Optional[float] = None  # the `_silence_since` a `PrepareFinal` was sent in
    _spoke: bool = False
    _interrupt_open: bool = False  # an interrupt was sent and its disposition has not come back
    _speech_on: Optional[float] = None   # onset of the VAD's speech run in progress (None: silence)
    _speech_off: Optional[float] = None  # end of the last finished speech run
    _suspect_at: Optional[float] = None  # `now` of an optimistic pause awaiting its onset
    _eot: Optional[float] = None  # how complete the words before the current silence look (None: not known)
    _eot_text: str = ""           # the quick transcript `_eot` judged
    _partial_sent: tuple[str, str] = ("", "")  # (utterance, text) of the last partial sent: not twice
    _barge_pending: Optional[float] = None  # onset of speech that may interrupt once it lasts min_interruption_s
    false_pauses: int = 0             # optimistic pauses that were not speech (resumed)
    false_pause_s: float = 0.0        # their summed length
    _audio_lost_since: float = 0.0
    _audio_retry_at: float = 0.0
    _orb: Optional[Orb] = None
    _listening: Optional[C.SetListening] = None
    _out: list[C.Command] = field(default_factory=list)

    # ---- the one entry point ----
    def handle(self, event: E.Event, now: float) -> list[C.Command]:
        self._out = []
        before = (self.state, self.muted, self.audio_error is None, self.held_threads)
        if isinstance(event, (E.SpeechStarted, E.SpeechEnded)):
            self._track_speech(event)
        HANDLERS[type(event)](self, event, now)
        if (self.state, self.muted, self.audio_error is None, self.held_threads) != before:
            self._send_state()
        self._derived()
        out, self._out = self._out, []
        return out

    # ---- helpers for handlers ----
    def _go(self, trigger: Trigger) -> bool:
        """Move by the table; False (and no move) if the trigger has no cell in this state."""
        target = TABLE[self.state].get(trigger)
        if target is None:
            return False
        self.state = target
        return True

    def _emit(self, cmd: C.Command) -> None:
        self._out.append(cmd)

    def _send(self, cmd: C.Command) -> None:
        """A message for the engine; lost while the link is down (the link's own queue would deliver
        stale speech late; the state and the cursor are re-sent on `LinkUp`)."""
        if self.online:
            self._out.append(cmd)

    def _ignore(self, event: E.Event, reason: str) -> None:
        self._out.append(C.Ignored(event, reason))

    def _event(self, kind: str) -> None:
        self._send(C.SendEvent(EventType(kind)))

    def _send_state(self) -> None:
        status = (DeviceStatus.ERROR if self.audio_error is not None else DeviceStatus.MUTED if self.muted
                  else DeviceStatus(self.state.value))
        self._send(C.SendState(status, self.muted, self.held_threads))

    def _track_speech(self, ev: E.SpeechStarted | E.SpeechEnded) -> None:
        if isinstance(ev, E.SpeechStarted):
            self._speech_on = ev.at
        else:
            self._speech_on, self._speech_off = None, ev.at

    def orb(self) -> Orb:
        if self.errors or self.audio_error is not None:
            return Orb.ERROR
        if not self.online:
            return Orb.OFFLINE
        if self.muted:
            return Orb.MUTED
        if self.state in (State.LISTENING, State.PAUSED):
            return Orb.LISTENING
        if self.state is State.THINKING:
            return Orb.THINKING
        if self.state is State.SPEAKING:
            return Orb.SPEAKING
        return Orb.BRANCH_HELD if self.held_threads > 0 else Orb.IDLE

    def _derived(self) -> None:
        """Commands that follow from the state whatever the event: the orb and the mic consumers."""
        orb = self.orb()
        if orb != self._orb:
            self._orb = orb
            self._emit(C.SetOrb(orb))
        hearing = not self.muted and self.audio_error is None
        wake = hearing and self.settings.wake_word and (
            self.state is State.IDLE or (self.state is State.SPEAKING and self.settings.wake_while_speaking))
        listening = C.SetListening(wake_word=wake, asr=hearing)
        if listening != self._listening:
            self._listening = listening
            self._emit(listening)

    # ---- handlers, one per event type ----
    def _on_link_up(self, ev: E.LinkUp, now: float) -> None:
        self.online = True
        self._send(C.SendHello())
        self._send_state()
        self._send(C.SendPlayback(PlaybackEvent.HEARTBEAT))  # the cursor as it stands after an outage

    def _on_link_down(self, ev: E.LinkDown, now: float) -> None:
        self.online = False  # playback goes on from the buffer

    def _on_mute(self, ev: E.MuteSet, now: float) -> None:
        if ev.muted and not self.muted:
            self._abandon_utterance()
            self._go(E.MuteSet)
        self.muted = ev.muted

    def _on_restart(self, ev: E.RestartRequested, now: float) -> None:
        self._emit(C.Restart())

    def _on_segment_queued(self, ev: E.SegmentQueued, now: float) -> None:
        self._go(E.SegmentQueued)

    def _on_segment_finished(self, ev: E.SegmentFinished, now: float) -> None:
        self._send(C.SendPlayback(PlaybackEvent.SEGMENT_END, (ev.segment, ev.samples)))

    def _on_playback_idle(self, ev: E.PlaybackIdle, now: float) -> None:
        if self.state is not State.SPEAKING:  # the queue ran dry because it was flushed (or paused)
            return self._ignore(ev, "idle after a flush: reported as `flushed`")
        self._send(C.SendPlayback(PlaybackEvent.IDLE))
        self._go(E.PlaybackIdle)

    def _on_dropped(self, ev: E.SegmentsDropped, now: float) -> None:
        if ev.reason is E.DropReason.FLUSH:
            self._ignore(ev, "a flush is reported as `flushed` when it is ordered")
            return
        self._send(C.SendPlayback(PlaybackEvent.FLUSHED))

    def _on_speech_started(self, ev: E.SpeechStarted, now: float) -> None:
        if self.muted:
            return self._ignore(ev, "muted")
        if self.state is State.SPEAKING and self.settings.bargein:
            if self.settings.min_interruption_s > 0:
                self._barge_pending = ev.at  # interrupts only if it goes on (see _on_tick)
            else:
                self._suspect_at = None  # confirmed: the optimistic pause (if any) becomes the barge-in
                self._barge_in(ev.at, now)
        elif self.state is State.LISTENING and self.utterance_id is None:
            uid = self._new_utterance(now)
            self._start_capture(ev.at - self.settings.preroll_s, now, speech_at=ev.at)
            # Tell the engine at once that the user has begun (an empty partial): the recogniser's
            # first words come a second or more later, and meanwhile the engine's auto-resume would
            # start the held thread over the user's "okay, go back" (found in live mode).
            self._utterance(uid, "", False, self.hint)
        elif self.capture is not None:
            self._run_start = ev.at
            self._silence_since = None
        elif self.state is State.PAUSED and self.settings.asr:
            # The user goes on after their interruption's capture ended (a pause longer than the turn's
            # silence: "Wait, ... what is the crust?", live mode). Not a word of it may be lost: a new
            # utterance over the paused reply, announced at once with an empty partial as when listening.
            uid = self._new_utterance(now)
            self._start_capture(ev.at - self.settings.preroll_s, now, speech_at=ev.at, over_speech=True)
            self._utterance(uid, "", False, self.hint)

    def _on_speech_ended(self, ev: E.SpeechEnded, now: float) -> None:
        self._barge_pending = None
        if self.capture is None:
            return
        if self._silence_since is None or self._run_start is not None:
            self._speech_quiet(ev.at)

    def _speech_quiet(self, at: float) -> None:
        """The user stopped talking at `at` (a pause or the offset): the turn's silence counts from there."""
        # A run whose onset we saw during the capture counts whatever its length; speech that was
        # already going on when the capture opened (the wake word's tail) only when long.
        counts = self._run_start is not None or at - self._capture_since >= self.settings.min_speech_s
        self._run_start = None
        if self._spoke or counts:
            self._spoke = True
            self._silence_since = at

    def _on_wake(self, ev: E.WakeDetected, now: float) -> None:
        if self.muted:
            return self._ignore(ev, "muted")
        if self.state in (State.SPEAKING, State.PAUSED):
            if (self.state is State.SPEAKING and ev.source is WakeSource.WAKE_WORD
                    and self.settings.wake_while_speaking):
                self._event("wake")
                self._barge_in(now, now)
            return
        self._wake(ev.source, ev.score, now, ev.at)

    def _on_talk(self, ev: E.TalkPressed, now: float) -> None:
        if self.muted or self.state is State.PAUSED:
            return self._ignore(ev, "muted" if self.muted else "already paused")
        if self.state is State.SPEAKING:  # the user asks for the floor: like a barge-in, whatever bargein says
            self._barge_in(ev.at, now)
        else:
            self._wake(WakeSource.BUTTON, None, now)

    def _on_cancel(self, ev: E.CancelPressed, now: float) -> None:
        if self.state in (State.SPEAKING, State.THINKING):
            if self.state is State.SPEAKING:
                self._go(Step.BARGE_IN)
                self._emit(C.PausePlayback())
            if self.capture is not None:
                self._emit(C.CancelCapture(self.capture))
                self.capture = None
            uid = self._new_utterance(now)
            self._interrupt_open = True
            self._send(C.SendInterrupt(uid, max(0.0, ev.at), Hint.CANCEL))
            self.hint = Hint.CANCEL
            self._final(uid, "", None)
        elif self.utterance_id is not None or self.capture is not None or self.finishing is not None:
            self.hint = Hint.CANCEL
            if self.capture is None and self.finishing is None:  # text mode: nothing else will close it
                self._final(self.utterance_id or self._new_utterance(now), "", None)
            elif self.capture is not None and not self._spoke:
                self._abandon_utterance()
                self._go(Step.HEARD_NOTHING)
            # else: the user is talking; the final carries the hint
        else:
            self._go(Step.HEARD_NOTHING)

    def _on_text(self, ev: E.TextHeard, now: float) -> None:
        if self.muted:
            return self._ignore(ev, "muted")
        if self.state is State.SPEAKING:  # text mode: words arrive with no VAD onset before them
            self._go(Step.BARGE_IN)
            self._emit(C.PausePlayback())
            self._interrupt_open = True
            self._send(C.SendInterrupt(self._new_utterance(now), max(0.0, now), ev.hint))
        if self.utterance_id is None:
            self._new_utterance(now)
        if self.capture is not None and self.capture == self.utterance_id:  # injected text wins
            self._emit(C.CancelCapture(self.capture))
            self.capture = None
        self._utterance(self.utterance_id, ev.text, ev.final, ev.hint or self.hint)
        if ev.final:
            self.utterance_id = None
            self.hint = None
            self._go(Step.HEARD_WORDS)

    def _on_partial(self, ev: E.AsrPartial, now: float) -> None:
        if ev.utterance_id not in (self.capture, self.finishing) or not ev.text or self.muted:
            return self._ignore(ev, "not the open capture")
        if (ev.quick and ev.utterance_id == self.capture and self._silence_since is not None
                and self._capture_from + ev.audio_ms / 1000 >= self._silence_since - 0.05):  # covers the words
            self._eot = self._judge(ev.text, ev.turn_audio)
            self._eot_text = ev.text
        if self._partial_sent != (ev.utterance_id, ev.text):
            self._partial_sent = (ev.utterance_id, ev.text)
            self._utterance(ev.utterance_id, ev.text, False, self.hint)

    def _on_final(self, ev: E.AsrFinal, now: float) -> None:
        if ev.utterance_id not in (self.capture, self.finishing):
            return self._ignore(ev, "a cancelled capture's late result")
        if self.capture == ev.utterance_id:
            self.capture = None
        self.finishing = None
        self._final(ev.utterance_id, ev.text, tuple(ev.words) or None)

    def _on_asr_failed(self, ev: E.AsrFailed, now: float) -> None:
        if ev.utterance_id in (self.capture, self.finishing):
            if self.capture == ev.utterance_id:
                self.capture = None
            if self.finishing == ev.utterance_id:
                self.finishing = None
            self._final(ev.utterance_id, "", None)

    def _on_component_failed(self, ev: E.ComponentFailed, now: float) -> None:
        self.errors[ev.component] = ev.error

    def _on_control(self, ev: E.ControlReceived, now: float) -> None:
        a = ev.action
        if a is Action.PAUSE:
            self._emit(C.PausePlayback())
            self._send(C.SendPlayback(PlaybackEvent.PAUSED))
            self._go(Step.ENGINE_PAUSE)
        elif a is Action.RESUME:
            self._emit(C.ResumePlayback())
            self._send(C.SendPlayback(PlaybackEvent.RESUMED))
            self._go(Step.ENGINE_RESUME)
        elif a is Action.FLUSH:
            self._emit(C.FlushPlayback())
            self._emit(C.ResumePlayback())  # a flushed queue must not stay paused for the next reply
            self._send(C.SendPlayback(PlaybackEvent.FLUSHED))
            self._go(Step.ENGINE_FLUSH)
        elif a is Action.LISTEN:
            if self.capture is None and self.finishing is None:
                self.utterance_id = None
            self._go(Step.ENGINE_LISTEN)
            self._listen_since = now
        elif a is Action.STOP_LISTENING and self.state is State.LISTENING:
            if self.capture is not None:
                self._emit(C.CancelCapture(self.capture))
                self.capture = None
            self._go(Step.ENGINE_STOP_LISTENING)
        # Only a disposition for an interruption this device reported counts (the dashboard event).
        if ev.disposition is not None and a in (Action.RESUME, Action.FLUSH) and self._interrupt_open:
            self._interrupt_open = False
            self._event(f"interrupt_{ev.disposition.value.lower()}")

    def _on_engine_state(self, ev: E.EngineStateReceived, now: float) -> None:
        self.held_threads = max(0, ev.held_threads)
        # The engine went idle without a reply for us (a bare stop, "never mind", nothing said).
        if ev.state == "idle" and self.capture is None and self.finishing is None:
            self._go(Step.ENGINE_IDLE)

    def _on_audio_lost(self, ev: E.AudioLost, now: float) -> None:
        if self.audio_error is not None:
            return
        self.audio_error = ev.reason
        self._audio_lost_since = now
        self._audio_retry_at = now + self.settings.audio_retry_s
        self._abandon_utterance()
        self._go(E.AudioLost)
        self._event("audio_lost")

    def _on_audio_restored(self, ev: E.AudioRestored, now: float) -> None:
        if self.audio_error is None:
            return
        self.audio_error = None
        self._event("audio_restored")
        self._send(C.SendPlayback(PlaybackEvent.HEARTBEAT))

    def _on_tick(self, ev: E.Tick, now: float) -> None:
        st = self.settings
        if self.audio_error is not None:
            if now - self._audio_lost_since >= st.audio_give_up_s:
                self._emit(C.ExitProcess(st.audio_exit_code, f"sound card lost for {now - self._audio_lost_since:.0f} s: "
                                                            f"{self.audio_error}"))
            elif now >= self._audio_retry_at:
                self._audio_retry_at = now + st.audio_retry_s
                self._emit(C.ReopenAudio())
        if self.state in (State.SPEAKING, State.PAUSED) and now - self._last_heartbeat >= st.heartbeat_s:
            self._last_heartbeat = now
            self._send(C.SendPlayback(PlaybackEvent.HEARTBEAT))
        if self._suspect_at is not None and now - self._suspect_at >= st.suspect_max_s:
            self._dismiss(now)
        if self._barge_pending is not None:
            if self.state is not State.SPEAKING:
                self._barge_pending = None
            elif now - self._barge_pending >= st.min_interruption_s:
                at, self._barge_pending = self._barge_pending, None
                self._barge_in(at, now)
        # The silence of a turn is measured on the audio analysed so far; a lag of up to
        # `audio_lag_tolerance_s` is let pass (the mic's own delivery delay: tens of ms).
        heard = now if ev.audio_until is None else min(now, ev.audio_until + st.audio_lag_tolerance_s)
        self._capture_tick(now, heard)
        if (self.state is State.LISTENING and self.utterance_id is None
                and now - self._listen_since > st.listen_timeout_s):
            self._go(Deadline.LISTEN)


HANDLERS: dict[type, Callable[[DeviceMachine, object, float], None]] = {
    E.LinkUp: DeviceMachine._on_link_up, E.LinkDown: DeviceMachine._on_link_down,
    E.MuteSet: DeviceMachine._on_mute, E.RestartRequested: DeviceMachine._on_restart,
    E.SegmentQueued: DeviceMachine._on_segment_queued, E.SegmentFinished: DeviceMachine._on_segment_finished,
    E.PlaybackIdle: DeviceMachine._on_playback_idle, E.SegmentsDropped: DeviceMachine._on_dropped,
    E.SpeechStarted: DeviceMachine._on_speech_started, E.SpeechEnded: DeviceMachine._on_speech_ended,
    E.SpeechSuspected: DeviceMachine._on_speech_suspected, E.SpeechDismissed: DeviceMachine._on_speech_dismissed,
    E.SpeechPaused: DeviceMachine._on_speech_paused, E.SpeechResumed: DeviceMachine._on_speech_resumed,
    E.WakeDetected: DeviceMachine._on_wake, E.TalkPressed: DeviceMachine._on_talk,
    E.CancelPressed: DeviceMachine._on_cancel, E.TextHeard: DeviceMachine._on_text,
    E.AsrPartial: DeviceMachine._on_partial, E.AsrFinal: DeviceMachine._on_final,
    E.AsrFailed: DeviceMachine._on_asr_failed, E.ComponentFailed: DeviceMachine._on_component_failed,
    E.ControlReceived: DeviceMachine._on_control, E.EngineStateReceived: DeviceMachine._on_engine_state,
    E.AudioLost: DeviceMachine._on_audio_lost, E.AudioRestored: DeviceMachine._on_audio_restored,
    E.Tick: DeviceMachine._on_tick,
}
assert set(HANDLERS) == set(E.Event.__args__), "every device event has exactly one handler"  # type: ignore[attr-defined]
