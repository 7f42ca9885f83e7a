"""The engine's state machine for one device session: the one place that decides behaviour.

Events in, commands out, time passed in (`event.now`); no I/O, no clock. States and their legal
transitions are enumerated below; an event that does not belong in the current state is a logged no-op
(an `Ignored` command), never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from icp import commands as C
from icp import events as E
from icp.classifier import is_bare_stop
from icp.context import DEFAULT_SYSTEM_PROMPT, build_messages
from icp.conversation import AssistantItem, Conversation, SentSegment, ThreadStatus
from icp.dispositions import ClassifyRequest, Disposition, Hint
from icp.messages.common import Cursor
from icp.messages.playback import Action, PlaybackEvent, Segment
from icp.segmenter import SegmenterSettings, next_cut
from icp.strategies import Icp, Strategy
from icp.words import WordTiming, split_words


class State(StrEnum):
    OFFLINE = "offline"  # no device connected
    IDLE = "idle"  # nothing playing or pending (held threads may wait)
    LISTENING = "listening"  # the user is talking to an idle device
    THINKING = "thinking"  # a reply is being generated, no audio sent yet
    SPEAKING = "speaking"  # reply audio is playing
    INTERRUPTED = "interrupted"  # the device paused on speech; waiting for the user's final words
    CLASSIFYING = "classifying"  # waiting for the classifier's disposition


S = State
TRANSITIONS: frozenset[tuple[State, State]] = frozenset(
    {
        (S.OFFLINE, S.IDLE), (S.OFFLINE, S.THINKING), (S.OFFLINE, S.SPEAKING),
        (S.OFFLINE, S.LISTENING), (S.OFFLINE, S.INTERRUPTED), (S.OFFLINE, S.CLASSIFYING),
        (S.IDLE, S.LISTENING), (S.IDLE, S.CLASSIFYING), (S.IDLE, S.THINKING),
        (S.LISTENING, S.CLASSIFYING), (S.LISTENING, S.IDLE), (S.LISTENING, S.THINKING),
        (S.CLASSIFYING, S.THINKING), (S.CLASSIFYING, S.SPEAKING), (S.CLASSIFYING, S.IDLE),
        (S.THINKING, S.SPEAKING), (S.THINKING, S.INTERRUPTED), (S.THINKING, S.IDLE),
        (S.SPEAKING, S.INTERRUPTED), (S.SPEAKING, S.IDLE), (S.SPEAKING, S.THINKING),
        (S.INTERRUPTED, S.CLASSIFYING), (S.INTERRUPTED, S.SPEAKING), (S.INTERRUPTED, S.THINKING),
        (S.INTERRUPTED, S.IDLE),
    }
    | {(s, S.OFFLINE) for s in State if s is not S.OFFLINE}
)
ALWAYS = (E.DeviceConnected, E.PlaybackReported, E.GenerationText, E.GenerationFinished,
          E.GenerationFailed, E.SegmentSynthesised, E.SynthesisFailed, E.Tick)
SPEECH = (E.UtterancePartial, E.UtteranceFinal)
ACCEPTS: dict[State, tuple[type[E.Event], ...]] = {
    S.OFFLINE: ALWAYS,
    S.IDLE: ALWAYS + SPEECH + (E.DeviceDisconnected, E.WakeDetected),
    S.LISTENING: ALWAYS + SPEECH + (E.DeviceDisconnected, E.WakeDetected),
    S.THINKING: ALWAYS + SPEECH + (E.DeviceDisconnected, E.InterruptReported),
    S.SPEAKING: ALWAYS + SPEECH + (E.DeviceDisconnected, E.InterruptReported),
    S.INTERRUPTED: ALWAYS + SPEECH + (E.DeviceDisconnected, E.InterruptReported),
    S.CLASSIFYING: ALWAYS + (E.DeviceDisconnected, E.Classified, E.UtterancePartial),
}

AFFIRMATIVE = re.compile(r"^\W*(yes|yeah|yep|sure|please|ok(ay)?|go ahead|go on)\b", re.I)


class AutoResume(StrEnum):
    AUTO = "auto"  # after a side answer, resume the held thread when the user stays quiet
    ASK = "ask"  # ask whether to go back; a yes resumes
    OFF = "off"  # wait for "go back"


@dataclass(frozen=True, slots=True)
class EngineSettings:
    heard_threshold: float = 0.5  # a word is heard when more than this fraction of it has played
    lookahead_ms: float = 4000.0  # audio synthesised/sent ahead of the heard cursor
    auto_resume: AutoResume = AutoResume.AUTO
    auto_resume_delay_s: float = 2.5
    interrupt_timeout_s: float = 8.0  # no final words after an interrupt: treat it as a backchannel
    listen_timeout_s: float = 15.0  # a wake or words, then no final utterance: back to idle
    classify_timeout_s: float = 3.0
    bridge: str = "Right, as I was saying,"
    ask_phrase: str = "Shall I go back to what I was saying?"
    failure_phrase: str = "Sorry, I could not answer that just now."
    max_tokens: int = 400
    background_max_words: int = 250  # a held parent's generation may finish this far past its cursor
    lost_audio_s: float = 3.0  # audio sent this long ago that an idle device never played was lost
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    segmenter: SegmenterSettings = SegmenterSettings()

    def __post_init__(self) -> None:
        if not 0.0 <= self.heard_threshold < 1.0:
            raise ValueError("heard_threshold must be in [0, 1)")
        if self.lookahead_ms <= 0:
            raise ValueError("lookahead_ms must be positive")


@dataclass
class Generation:
    id: str
    item: str


@dataclass
class PendingSegment:
    id: int
    item: str
    first_word: int
    text: str
    bridge_words: int = 0
    samples: int = 0
    sample_rate: int = 0
    words: tuple[WordTiming, ...] = ()
    attempts: int = 0


@dataclass
class Session:
    """One device's engine session. `handle(event)` is the only entry point."""

    device_id: str
    settings: EngineSettings = field(default_factory=EngineSettings)
    strategy: Strategy = field(default_factory=Icp)
    state: State = State.OFFLINE
    conv: Conversation = field(default_factory=Conversation)
    active_thread: str | None = None
    voice_item: str | None = None  # the item whose audio is being produced
    generations: dict[str, Generation] = field(default_factory=dict)  # running ones only
    to_synth: list[PendingSegment] = field(default_factory=list)
    in_flight: PendingSegment | None = None
    ready: list[PendingSegment] = field(default_factory=list)
    next_segment: int = 1
    last_sent: int | None = None  # the segment sent last since the last flush (the next `prev`);
    # None: the device's chain is unknown (this engine restarted), so the first send flushes first
    utterance_id: str | None = None
    utterance_hint: Hint | None = None
    classify_id: str | None = None
    classify_text: str = ""
    classify_speaking: bool = False
    deadlines: dict[str, float] = field(default_factory=dict)
    before_offline: State = State.IDLE
    awaiting_yes: bool = False
    now: float = 0.0  # the latest time an event brought
    _out: list[C.Command] = field(default_factory=list)

    # ----------------------------------------------------------------------------------------
    def handle(self, event: E.Event) -> list[C.Command]:
        self._out = []
        name = type(event).__name__
        if not isinstance(event, ACCEPTS[self.state]):
            self._ignore(event, f"not legal in state {self.state.value}")
            return self._out
        before = self.state
        self.now = max(self.now, event.now)
        getattr(self, f"_on_{name}")(event)
        self._check_deadlines()
        self._pump()
        if self.state != before:
            self._out.insert(0, C.Transition(before.value, name, self.state.value))
        return self._out

    # -- helpers --------------------------------------------------------------------------------
    def _emit(self, *cmds: C.Command) -> None:
        self._out.extend(cmds)

    def _ignore(self, event: E.Event | str, reason: str) -> None:
        name = event if isinstance(event, str) else type(event).__name__
        self._out.append(C.Ignored(name, reason))

    def _goto(self, state: State) -> None:
        if state == self.state:
            return
        if (self.state, state) not in TRANSITIONS:  # a bug in this module, never a wire input
            raise AssertionError(f"illegal transition {self.state} -> {state}")
        self.state = state
        self._publish_state()

    def _publish_state(self) -> None:
        self._emit(C.PublishState(self.state.value, len(self.conv.held_threads())))

    def _persist(self) -> None:
        self._emit(C.Persist(self.snapshot()))

    def _new_generation(self, item: AssistantItem, max_tokens: int | None = None) -> None:
        gen = Generation(self.conv.new_id("g"), item.id)
        self.generations[gen.id] = gen
        messages = build_messages(self.conv, self.strategy, self.settings.system_prompt, exclude_item=item.id)
        self._emit(C.StartGeneration(gen.id, tuple(messages), max_tokens or self.settings.max_tokens))

    def _generation_for(self, item_id: str) -> Generation | None:
        return next((g for g in self.generations.values() if g.item == item_id), None)

    def _cancel_generation(self, item_id: str) -> None:
        gen = self._generation_for(item_id)
        if gen is not None:
            del self.generations[gen.id]  # later text for it is ignored as "not running"
            self.conv.item(item_id).complete = True
            self._emit(C.CancelGeneration(gen.id))

    # -- connection ----------------------------------------------------------------------------
    def _on_DeviceConnected(self, ev: E.DeviceConnected) -> None:
        if ev.new_session:
            self.last_sent = 0  # a new device process starts its segment chain empty
        if self.state is S.OFFLINE:
            self.state = self.before_offline  # back to where the connection dropped
        if ev.new_session and self.conv.playing_item() is not None:
            # The device process restarted: what it had queued is gone. Hold what was playing.
            self._stop_voice(hold=True, reason="RESTART")
            self._goto(S.IDLE)
        self._publish_state()

    def _on_DeviceDisconnected(self, ev: E.DeviceDisconnected) -> None:
        self.before_offline = self.state
        self._goto(S.OFFLINE)

    # -- the user talking -------------------------------------------------------------------------
    def _on_WakeDetected(self, ev: E.WakeDetected) -> None:
        self.deadlines.pop("auto_resume", None)
        self.deadlines["listen"] = ev.now + self.settings.listen_timeout_s
        self._goto(S.LISTENING)

    def _on_UtterancePartial(self, ev: E.UtterancePartial) -> None:
        self.deadlines.pop("auto_resume", None)
        if self.state in (S.IDLE, S.LISTENING):
            self.deadlines["listen"] = ev.now + self.settings.listen_timeout_s
            self._goto(S.LISTENING)
        elif self.state in (S.THINKING, S.SPEAKING):
            # Speech the device did not flag as an interruption (no barge-in there): pause it now.
            self._begin_interruption(ev.utterance_id, ev.hint, ev.now)
            self._emit(C.DeviceControl(Action.PAUSE, "speech while speaking"))
        if ev.hint is not None:
            self.utterance_hint = ev.hint

    def _on_InterruptReported(self, ev: E.InterruptReported) -> None:
        if ev.cursor is not None:
            self.conv.apply_cursor(ev.cursor.segment, ev.cursor.sample, self.settings.heard_threshold)
        if self.state is S.INTERRUPTED:
            if ev.hint is not None:
                self.utterance_hint = ev.hint
            return  # a duplicate or a refinement of the same interruption
        self._begin_interruption(ev.utterance_id, ev.hint, ev.now)

    def _begin_interruption(self, utterance_id: str, hint: Hint | None, now: float) -> None:
        self.utterance_id = utterance_id
        self.utterance_hint = hint
        self.deadlines["interrupt"] = now + self.settings.interrupt_timeout_s
        self._goto(S.INTERRUPTED)

    def _on_UtteranceFinal(self, ev: E.UtteranceFinal) -> None:
        self.deadlines.pop("auto_resume", None)
        hint = ev.hint or self.utterance_hint
        speaking = self.state in (S.THINKING, S.SPEAKING, S.INTERRUPTED)
        if self.state in (S.THINKING, S.SPEAKING):
            self._begin_interruption(ev.utterance_id, hint, ev.now)
            self._emit(C.DeviceControl(Action.PAUSE, "speech while speaking"))
        self.deadlines.pop("interrupt", None)
        text = ev.text.strip()
        if not text and hint is None:
            # Noise the VAD took for speech, or nothing recognised.
            if speaking:
                self._apply(ev.utterance_id, "", Disposition.ABSORB, Disposition.ABSORB, 1.0, "empty", ev.now)
            else:
                self._goto(S.IDLE)
            return
        if hint is Hint.CANCEL:
            d = Disposition.CANCEL if speaking else Disposition.DROP
            self._apply(ev.utterance_id, text, d, d, 1.0, "hint", ev.now)
            return
        if not speaking and self.awaiting_yes and AFFIRMATIVE.match(text):
            self._apply(ev.utterance_id, text, Disposition.RESUME, Disposition.RESUME, 1.0, "ask", ev.now)
            return
        self.classify_id = ev.utterance_id
        self.classify_text = text
        self.classify_speaking = speaking
        self.deadlines["classify"] = ev.now + self.settings.classify_timeout_s
        self._goto(S.CLASSIFYING)
        self._emit(C.Classify(ev.utterance_id, ClassifyRequest(text, self._last_heard_sentence(), speaking, hint)))

    def _last_heard_sentence(self) -> str:
        for entry in reversed(self.conv.log):
            if isinstance(entry, AssistantItem) and entry.heard:
                heard = " ".join(entry.words[: entry.heard])
                parts = re.split(r"(?<=[.!?])\s+", heard)
                return parts[-1] if parts[-1] else heard
        return ""

    def _on_Classified(self, ev: E.Classified) -> None:
        if ev.request_id != self.classify_id:
            self._ignore(ev, f"stale classification for {ev.request_id!r}")
            return
        self.deadlines.pop("classify", None)
        self._apply(ev.request_id, self.classify_text, ev.disposition, None, ev.confidence, ev.source, ev.now)

    # -- dispositions -------------------------------------------------------------------------
    def _apply(self, utterance_id: str, text: str, classified: Disposition, applied: Disposition | None,
               confidence: float, source: str, now: float) -> None:
        speaking = self.classify_speaking if self.state is S.CLASSIFYING else self.state is S.INTERRUPTED
        self.classify_id = None
        self.utterance_hint = None
        self.awaiting_yes = False
        d = applied or self.strategy.apply(classified, speaking)
        # A disposition that does not fit the moment is mapped to the nearest one that does.
        if speaking and d in (Disposition.RESUME, Disposition.DROP, Disposition.NEW):
            d = {Disposition.RESUME: Disposition.ABSORB, Disposition.DROP: Disposition.CANCEL,
                 Disposition.NEW: Disposition.CANCEL}[d]
        if not speaking and d in (Disposition.BRANCH, Disposition.MODIFY, Disposition.ABSORB):
            d = Disposition.NEW
        if not speaking and d is Disposition.CANCEL:
            d = Disposition.DROP if is_bare_stop(text) else Disposition.NEW
        if d is Disposition.RESUME and self.conv.nearest_held(self.active_thread) is None:
            d = Disposition.NEW
        self._emit(C.DispositionApplied(utterance_id, text, classified, d, confidence, source))
        getattr(self, f"_do_{d.value.lower()}")(text, now)
        self._persist()

    def _do_absorb(self, text: str, now: float) -> None:
        self._emit(C.DeviceControl(Action.RESUME, "ABSORB"))
        self._goto(S.SPEAKING if self.conv.playing_item() or self.ready else S.THINKING)

    def _do_branch(self, text: str, now: float) -> None:
        parent_id = self.active_thread
        self._stop_voice(hold=True, reason="BRANCH")
        child = self.conv.new_thread(parent_id)
        self.active_thread = child.id
        self._start_reply(child.id, text)

    def _do_modify(self, text: str, now: float) -> None:
        thread = self.active_thread or self.conv.new_thread(None).id
        self._stop_voice(hold=False, reason="MODIFY")
        self._cancel_all_for_thread(thread)
        self.active_thread = thread
        self._start_reply(thread, text)

    def _do_cancel(self, text: str, now: float) -> None:
        if self.active_thread:
            self._stop_voice(hold=False, reason="CANCEL")
            self._cancel_all_for_thread(self.active_thread)
            self.conv.threads[self.active_thread].status = ThreadStatus.CANCELLED
        if is_bare_stop(text):
            self.active_thread = None
            self._goto(S.IDLE)
        else:
            thread = self.conv.new_thread(None)
            self.active_thread = thread.id
            self._start_reply(thread.id, text)

    def _do_new(self, text: str, now: float) -> None:
        if self.active_thread and self.conv.threads[self.active_thread].status is ThreadStatus.ACTIVE:
            self.conv.threads[self.active_thread].status = ThreadStatus.DONE
        thread = self.conv.new_thread(None)
        self.active_thread = thread.id
        self._start_reply(thread.id, text)

    def _do_drop(self, text: str, now: float) -> None:
        for thread in self.conv.held_threads():
            thread.status = ThreadStatus.CANCELLED
            self._cancel_all_for_thread(thread.id)
        self._goto(S.IDLE)

    def _do_resume(self, text: str, now: float) -> None:
        self.deadlines.pop("auto_resume", None)
        thread = self.conv.nearest_held(self.active_thread)
        if thread is None or thread.held_item is None:
            return self._do_new(text, now)
        # Threads nested under the one resumed are finished.
        for t in self.conv.threads.values():
            if t.status is ThreadStatus.ACTIVE and t.id != thread.id:
                t.status = ThreadStatus.DONE
        held = self.conv.item(thread.held_item)
        word = thread.resume_word
        remainder = held.text_from_word(word)
        thread.status = ThreadStatus.ACTIVE
        self.active_thread = thread.id
        gen = self._generation_for(held.id)
        if not remainder.strip() and gen is None:
            # Nothing generated is left unheard: let the model continue from what was heard.
            item = self.conv.add_item(thread.id)
            self._voice(item)
            self._new_generation(item)
            self._goto(S.THINKING)
            return
        bridge = self.settings.bridge.strip()
        item = self.conv.add_item(thread.id, f"{bridge} {remainder}" if bridge else remainder,
                                  bridge_words=len(split_words(bridge)), resumes=held.id)
        item.complete = gen is None
        if gen is not None:
            gen.item = item.id  # the parent's generation goes on into the resumed item
        self._emit(C.ResumePlanned(thread.id, held.id, word, item.id))
        self._voice(item)
        self._segment(item)
        self._goto(S.THINKING)

    def _start_reply(self, thread: str, text: str) -> None:
        self.conv.add_user_turn(thread, text)
        item = self.conv.add_item(thread)
        self._voice(item)
        self._new_generation(item)
        self._goto(S.THINKING)

    # -- voicing --------------------------------------------------------------------------------
    def _voice(self, item: AssistantItem) -> None:
        self.voice_item = item.id

    def _stop_voice(self, hold: bool, reason: str) -> None:
        """Stop the audio of the current reply at the heard cursor; hold its thread or not."""
        item_id = self.voice_item
        self._flush(reason)
        dropped = self.conv.drop_unplayed()
        discard = dropped + [s.id for s in self.ready] + [s.id for s in self.to_synth]
        if self.in_flight is not None:
            discard.append(self.in_flight.id)
        self.to_synth, self.ready, self.in_flight = [], [], None
        self.voice_item = None
        if discard:
            self._emit(C.DiscardAudio(tuple(discard)))
        if item_id is None:
            return
        item = self.conv.item(item_id)
        if item.heard < len(item.words) or not item.complete:
            item.cut = True
        thread = self.conv.threads[item.thread]
        if hold:
            thread.status = ThreadStatus.HELD
            thread.held_item = item.id
            thread.resume_word = self.strategy.resume_word(self.conv, item)
            gen = self._generation_for(item.id)
            if gen is not None and len(item.words) - thread.resume_word >= self.settings.background_max_words:
                self._cancel_generation(item.id)
        else:
            self._cancel_generation(item.id)

    def _flush(self, reason: str) -> None:
        self._emit(C.DeviceControl(Action.FLUSH, reason))
        self.last_sent = 0

    def _cancel_all_for_thread(self, thread_id: str) -> None:
        for gen in list(self.generations.values()):
            if self.conv.item(gen.item).thread == thread_id:
                self._cancel_generation(gen.item)

    def _segment(self, item: AssistantItem) -> None:
        while True:
            rest = item.text[item.segmented_chars :]
            first = item.segmented_words == 0
            cut = next_cut(rest, first, item.complete, self.settings.segmenter)
            if cut is None:
                return
            chunk = rest[:cut]
            words = split_words(chunk)
            item.segmented_chars += cut
            if not words:
                continue
            bridge = max(0, min(item.bridge_words - item.segmented_words, len(words)))
            self.to_synth.append(PendingSegment(self.next_segment, item.id, item.segmented_words, " ".join(words), bridge))
            self.next_segment += 1
            item.segmented_words += len(words)

    def _pump(self) -> None:
        """Synthesise and send within the lookahead of the heard cursor."""
        if self.state is S.OFFLINE or self.state in (S.INTERRUPTED, S.CLASSIFYING):
            return
        ahead = self.conv.unheard_ms() + sum(s.samples * 1000.0 / s.sample_rate for s in self.ready)
        if self.in_flight is None and self.to_synth and ahead < self.settings.lookahead_ms:
            self.in_flight = self.to_synth.pop(0)
            self._emit(C.Synthesise(self.in_flight.id, self.in_flight.text))
        while self.ready and self.conv.unheard_ms() < self.settings.lookahead_ms:
            if self.last_sent is None:
                self._flush("SYNC")
            seg = self.ready.pop(0)
            item = self.conv.item(seg.item)
            self.conv.segments.append(
                SentSegment(seg.id, seg.item, seg.first_word, seg.words, seg.samples, seg.sample_rate,
                            sent_at=self.now)
            )
            self._emit(C.SendSegment(Segment(seg.id, item.id, item.thread, seg.text, seg.words, seg.bridge_words,
                                             seg.sample_rate, seg.samples, prev=self.last_sent or 0)))
            self.last_sent = seg.id
            if self.state is S.THINKING:
                self._goto(S.SPEAKING)
        self._maybe_reply_done()

    def _maybe_reply_done(self) -> None:
        if self.state not in (S.SPEAKING, S.THINKING) or self.voice_item is None:
            return
        item = self.conv.item(self.voice_item)
        if not item.complete or item.text[item.segmented_chars :].strip():
            return
        if self.to_synth or self.ready or self.in_flight or self.conv.playing_item() is not None:
            return
        self.voice_item = None
        thread = self.conv.threads[item.thread]
        parent = self.conv.threads.get(thread.parent) if thread.parent else None
        if parent is not None and parent.status is ThreadStatus.HELD:
            thread.status = ThreadStatus.DONE
            self.active_thread = parent.id
            self._goto(S.IDLE)
            if self.settings.auto_resume is AutoResume.AUTO and self.strategy.name != "cancel-restart":
                self.deadlines["auto_resume"] = self.now + self.settings.auto_resume_delay_s
            elif self.settings.auto_resume is AutoResume.ASK:
                self.awaiting_yes = True
                ask = self.conv.add_item(parent.id, self.settings.ask_phrase)
                ask.complete = True
                self._voice(ask)
                self._segment(ask)
                self._goto(S.THINKING)
        else:
            self._goto(S.IDLE)
        self._emit(C.DeviceControl(Action.LISTEN, "reply done"))
        self._persist()

    # -- generation and synthesis -----------------------------------------------------------------
    def _on_GenerationText(self, ev: E.GenerationText) -> None:
        gen = self.generations.get(ev.generation_id)
        if gen is None:
            self._ignore(ev, f"generation {ev.generation_id!r} is not running")
            return
        item = self.conv.item(gen.item)
        item.text += ev.text
        if item.id == self.voice_item:
            self._segment(item)
            self._pump()
        else:
            thread = self.conv.threads[item.thread]
            if thread.status is ThreadStatus.HELD and thread.held_item == item.id:
                if len(item.words) - thread.resume_word >= self.settings.background_max_words:
                    self._cancel_generation(item.id)

    def _on_GenerationFinished(self, ev: E.GenerationFinished) -> None:
        gen = self.generations.get(ev.generation_id)
        if gen is None:
            self._ignore(ev, f"generation {ev.generation_id!r} is not running")
            return
        del self.generations[gen.id]
        item = self.conv.item(gen.item)
        item.complete = True
        if item.id == self.voice_item:
            if not item.words:
                item.text = self.settings.failure_phrase
            self._segment(item)
        self._persist()

    def _on_GenerationFailed(self, ev: E.GenerationFailed) -> None:
        gen = self.generations.get(ev.generation_id)
        if gen is None:
            self._ignore(ev, f"generation {ev.generation_id!r} is not running")
            return
        del self.generations[gen.id]
        item = self.conv.item(gen.item)
        item.complete = True
        if item.id == self.voice_item and not item.words:
            item.text = self.settings.failure_phrase
        if item.id == self.voice_item:
            self._segment(item)

    def _on_SegmentSynthesised(self, ev: E.SegmentSynthesised) -> None:
        seg = self.in_flight
        if seg is None or seg.id != ev.segment_id:
            self._ignore(ev, f"segment {ev.segment_id} is not being synthesised")
            self._emit(C.DiscardAudio((ev.segment_id,)))
            return
        if len(ev.words) != len(split_words(seg.text)) or ev.samples <= 0:
            self._emit(C.DiscardAudio((ev.segment_id,)))
            self._synthesis_failed(ev, "its word timings do not match its words")
            return
        self.in_flight = None
        seg.samples, seg.sample_rate, seg.words = ev.samples, ev.sample_rate, tuple(ev.words)
        self.ready.append(seg)

    def _on_SynthesisFailed(self, ev: E.SynthesisFailed) -> None:
        if self.in_flight is None or self.in_flight.id != ev.segment_id:
            self._ignore(ev, f"segment {ev.segment_id} is not being synthesised")
            return
        self._synthesis_failed(ev, ev.error)

    def _synthesis_failed(self, ev: E.Event, why: str) -> None:
        """Try once more; then the reply stops before this segment. Its words are never skipped over
        (the heard timeline is a prefix: a later segment heard must not imply unspoken words heard)."""
        seg = self.in_flight
        assert seg is not None
        self.in_flight = None
        if seg.attempts < 1:
            seg.attempts += 1
            self.to_synth.insert(0, seg)
            self._ignore(ev, f"segment {seg.id} could not be synthesised ({why}); trying again")
            return
        self._ignore(ev, f"segment {seg.id} could not be synthesised ({why}); the reply stops before it")
        item = self.conv.item(seg.item)
        later = [s.id for s in self.to_synth if s.item == item.id]
        self.to_synth = [s for s in self.to_synth if s.item != item.id]
        if later:
            self._emit(C.DiscardAudio(tuple(later)))
        self._cancel_generation(item.id)
        item.cut = True
        item.segmented_chars = len(item.text)  # nothing more of it will be voiced

    # -- playback -------------------------------------------------------------------------------
    def _on_PlaybackReported(self, ev: E.PlaybackReported) -> None:
        # A `flushed` report needs nothing more: the engine dropped what it flushed when it asked.
        if ev.cursor is not None:
            self.conv.apply_cursor(ev.cursor.segment, ev.cursor.sample, self.settings.heard_threshold)
        if ev.queued_ms == 0 and ev.event in (PlaybackEvent.IDLE, PlaybackEvent.HEARTBEAT, PlaybackEvent.FLUSHED):
            self._recover_lost_audio(ev.cursor)

    def _recover_lost_audio(self, cursor: Cursor | None) -> None:
        """The device has nothing queued, yet audio sent long enough ago was never played: it was lost
        (a dropped connection, a gap). Flush whatever may still be in flight, and re-synthesise the
        reply from its first word not fully heard.

        Only a current report counts: one whose cursor is behind what is already known is stale.
        """
        started = [s for s in self.conv.segments if s.heard_samples > 0]
        if started and (cursor is None or cursor.segment < started[-1].id):
            return
        unplayed = [s for s in self.conv.segments if not s.dropped and s.heard_samples < s.samples]
        if not unplayed or self.now - unplayed[0].sent_at < self.settings.lost_audio_s:
            return
        self._ignore("PlaybackReported", f"segments {[s.id for s in unplayed]} never played: "
                     "re-sending from the heard cursor")
        self._flush("RESEND")
        for seg in unplayed:
            seg.dropped = True
        for item_id in {seg.item for seg in unplayed} - {self.voice_item}:
            self.conv.item(item_id).cut = True
        if self.voice_item is None:
            return
        item = self.conv.item(self.voice_item)
        stale = [s.id for s in self.ready + self.to_synth]
        if self.in_flight is not None:
            stale.append(self.in_flight.id)
        self.ready, self.to_synth, self.in_flight = [], [], None
        if stale:
            self._emit(C.DiscardAudio(tuple(stale)))
        word = self.conv.resume_point(item)
        item.segmented_words = word
        item.segmented_chars = self.conv.word_offset(item, word)
        self._segment(item)

    # -- time -----------------------------------------------------------------------------------
    def _on_Tick(self, ev: E.Tick) -> None:
        pass

    DEADLINE_STATES = {"interrupt": S.INTERRUPTED, "classify": S.CLASSIFYING, "auto_resume": S.IDLE,
                       "listen": S.LISTENING}

    def _check_deadlines(self) -> None:
        """Fire due timeouts. A deadline whose state has passed is dropped; while offline, it waits."""
        if self.state is S.OFFLINE:
            return
        for name, when in sorted(self.deadlines.items(), key=lambda kv: kv[1]):
            if name not in self.deadlines:
                continue
            if self.state is not self.DEADLINE_STATES[name]:
                del self.deadlines[name]
                continue
            if self.now < when:
                continue
            del self.deadlines[name]
            if name == "interrupt":
                self._apply(self.utterance_id or "timeout", "", Disposition.ABSORB, Disposition.ABSORB, 0.0,
                            "timeout", self.now)
            elif name == "listen":
                self._ignore("Tick", "listening timed out without a final utterance")
                self._goto(S.IDLE)
            elif name == "classify":
                fallback = Disposition.ABSORB if self.classify_speaking else Disposition.NEW
                self._apply(self.classify_id or "timeout", self.classify_text, fallback, fallback, 0.0,
                            "timeout", self.now)
            else:
                self._apply("auto-resume", "", Disposition.RESUME, Disposition.RESUME, 1.0, "auto", self.now)

    # -- persistence ----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """What survives a restart: the tree, heard cursors and unheard tails (not in-flight I/O)."""
        return {
            "device_id": self.device_id,
            "strategy": self.strategy.name,
            "conversation": self.conv.to_dict(),
            "active_thread": self.active_thread,
            "next_segment": self.next_segment,
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any], settings: EngineSettings, strategy: Strategy) -> "Session":
        """A session after a restart: nothing is playing or generating, held threads can be resumed."""
        session = cls(snapshot["device_id"], settings, strategy)
        session.conv = Conversation.from_dict(snapshot["conversation"])
        session.active_thread = snapshot.get("active_thread")
        session.next_segment = int(snapshot.get("next_segment", 1))
        for seg in session.conv.segments:
            if seg.heard_samples < seg.samples:
                seg.dropped = True
        for entry in session.conv.log:
            if isinstance(entry, AssistantItem) and not entry.complete:
                entry.complete, entry.cut = True, True
        return session
