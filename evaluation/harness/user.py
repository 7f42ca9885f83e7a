"""The virtual user: says each scripted turn when its `after` condition holds at the ear.

Conditions are judged from the listener's ground truth (the ear tap), never from the engine's view.
How the words reach the device depends on the mode:

- `TextVoice`: the ASR result is injected at the moment speech would start and end (duration from
  the word count). At the onset the device acts as on a real barge-in (`SpeechStarted`: if it is
  playing it pauses locally and sends `interrupt` with its cursor); a partial follows, then the final.
- `AudioVoice`: the words are synthesised in the user's own voice (`evaluation.harness.voice`: piper
  where installed, never the agent's espeak-ng voice) at the card's rate and mixed into the virtual
  microphone (with the card's echo path); the device's real resampler/AEC/VAD/barge-in detect the
  onset, and faster-whisper transcribes the cleaned audio between the VAD's onset and offset
  (`SEGMENT_RULE`: with a pre-roll before and a tail after, as the device's own capture has). Simulated
  time waits while the recogniser runs, so recognition compute does not count in the latencies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from device import machine as dm
from device.app import DeviceApp
from device.audio.virtual import VirtualCard
from device.vad import SpeechOffset, SpeechOnset
from evaluation.harness.trace import Trace, TurnRecord, item_heard, item_heard_ms
from evaluation.scenario import Scenario
from icp.messages import Interrupt, Utterance


# (pre-roll, tail) in s around the VAD's onset/offset handed to the recogniser (was (0.25, 0.1)). The
# VAD's onset comes at most 42 ms after the first sample of piper speech (108 ms for espeak-ng), so
# 0.2 s keeps the first word; a longer pre-roll in a barge-in drags in the agent's residual echo,
# which Whisper turns into words ("You set a timer ..."). The tail keeps the last word's decay.
# Chosen on `python -m evaluation.hearing`'s 20 questions (the same data it is reported on: not held
# out); the differences between 0.1 and 0.3 s there are two or three words in 208.
SEGMENT_RULE = (0.2, 0.3)


class Voice(Protocol):
    def begin(self, turn: TurnRecord, text: str, now: float, duration: float) -> None: ...

    def step(self, now: float) -> bool:
        """Advance; True once the final words have gone to the device."""
        ...

    def busy(self) -> bool: ...


class _SentWatch:
    """Reads what the device published since the last look (interrupts, utterances)."""

    def __init__(self, device: DeviceApp) -> None:
        self.device = device
        self._last: Any = None

    def mark(self) -> None:
        self._last = self.device.sent[-1] if self.device.sent else None

    def new(self) -> list[Any]:
        sent = list(self.device.sent)
        if not sent or sent[-1] is self._last:
            return []
        i = len(sent) - 1
        while i >= 0 and sent[i] is not self._last:
            i -= 1
        self._last = sent[-1]
        return sent[i + 1 :]


def _absorb(turn: TurnRecord, bodies: list[Any]) -> None:
    for body in bodies:
        if isinstance(body, Interrupt) and not turn.interrupted:
            turn.interrupted = True
            turn.interrupt_cursor = body.cursor
            turn.utterance_id = body.utterance_id
        elif isinstance(body, Utterance) and body.final:
            turn.utterance_id = body.utterance_id


class TextVoice:
    def __init__(self, device: DeviceApp) -> None:
        self.device = device
        self.watch = _SentWatch(device)
        self._turn: TurnRecord | None = None
        self._text = ""
        self._partial_at = self._final_at = 0.0
        self._partial_sent = False

    def begin(self, turn: TurnRecord, text: str, now: float, duration: float) -> None:
        self._turn, self._text = turn, text
        self._partial_at, self._final_at = now + min(0.3, duration / 2), now + duration
        self._partial_sent = False
        self.watch.mark()
        if self.device.state is dm.State.IDLE:
            self.device.wake("button")  # an idle device needs its wake word (here: the talk button)
        self.device.inject_speech_onset(now)
        _absorb(turn, self.watch.new())

    def step(self, now: float) -> bool:
        turn = self._turn
        assert turn is not None
        if not self._partial_sent and now >= self._partial_at:
            words = self._text.split()
            self.device.inject_text(" ".join(words[: max(1, len(words) // 2)]), final=False)
            self._partial_sent = True
        if now >= self._final_at:
            self.device.inject_text(self._text, final=True)
            turn.text_heard = self._text
            _absorb(turn, self.watch.new())
            self._turn = None
            return True
        _absorb(turn, self.watch.new())
        return False

    def busy(self) -> bool:
        return False


class AudioVoice:
    """Speech through the microphone, the device's own VAD and a real recogniser."""

    def __init__(self, device: DeviceApp, card: VirtualCard, sample_rate: int) -> None:
        from device.asr.whisper_asr import WhisperASR

        self.device, self.card, self.sample_rate = device, card, sample_rate
        self.asr = WhisperASR()
        self.watch = _SentWatch(device)
        self._clean: list[tuple[float, np.ndarray]] = []
        self._vad: list[SpeechOnset | SpeechOffset] = []
        original = device.mic.capture

        def capture(pcm: np.ndarray, t: float) -> list[SpeechOnset | SpeechOffset]:
            events = original(pcm, t)
            self._vad.extend(events)
            return events

        device.mic.capture = capture  # type: ignore[method-assign]  # observe the real VAD's decisions
        device.mic.listeners.append(lambda clean, t: self._clean.append((t, clean.copy())))
        self._turn: TurnRecord | None = None
        self._onset: float | None = None
        self._deadline = 0.0
        self._worker: threading.Thread | None = None
        self._result: str | None = None

    def speech(self, text: str) -> np.ndarray:
        from evaluation.harness.voice import synthesize_user

        return synthesize_user(text, self.sample_rate)

    def begin(self, turn: TurnRecord, text: str, now: float, duration: float) -> None:
        self._turn, self._onset, self._result = turn, None, None
        self.watch.mark()
        if self.device.state is dm.State.IDLE:
            self.device.wake("button")
        pcm = self.speech(text)
        self.card.add_mic(pcm, at_s=now)
        self._deadline = now + len(pcm) / self.sample_rate + 2.0
        self._vad.clear()
        self._clean = [c for c in self._clean if c[0] >= now - 1.0]

    def _transcribe(self, start: float, end: float) -> None:
        pre, tail = SEGMENT_RULE
        audio = [pcm for t, pcm in self._clean if start - pre <= t <= end + tail]
        pcm = np.concatenate(audio) if audio else np.zeros(1600, dtype=np.int16)
        try:
            self.asr.start()
            self.asr.feed(pcm)
            self._result = self.asr.finish().text.strip()
        except Exception as exc:  # noqa: BLE001 - reported as the turn's text
            self._result = ""
            raise RuntimeError(f"ASR failed: {exc}") from exc

    def step(self, now: float) -> bool:
        turn = self._turn
        assert turn is not None
        _absorb(turn, self.watch.new())
        if self._worker is not None:
            if self._worker.is_alive():
                return False
            self._worker = None
            text = self._result or ""
            turn.text_heard = text
            self.device.inject_text(text, final=True)
            _absorb(turn, self.watch.new())
            self._turn = None
            return True
        for ev in self._vad:
            if isinstance(ev, SpeechOnset) and self._onset is None:
                self._onset = ev.at
                self.device.inject_text("", final=False)  # the recogniser has started: a first partial
            elif isinstance(ev, SpeechOffset) and self._onset is not None:
                self._start_asr(self._onset, ev.at)
        self._vad.clear()
        if self._worker is None and now >= self._deadline:
            self._start_asr(self._onset if self._onset is not None else turn.start, now)
        return False

    def _start_asr(self, start: float, end: float) -> None:
        self._worker = threading.Thread(target=self._transcribe, args=(start, end), daemon=True)
        self._worker.start()

    def busy(self) -> bool:
        return self._worker is not None and self._worker.is_alive()


class VirtualUser:
    def __init__(self, scenario: Scenario, options: Any, trace: Trace, device: DeviceApp,
                 engine_state: Callable[[], str], voice: Voice, session: Callable[[], Any]) -> None:
        self.scenario, self.options, self.trace, self.device = scenario, options, trace, device
        self.engine_state, self.voice, self.session = engine_state, voice, session
        self.index = 0
        self.speaking: TurnRecord | None = None
        self.prev_end = 0.0
        self.prev_said: TurnRecord | None = None
        self.waiting_since = 0.0
        self.quiet_since: float | None = None
        self.finished = False

    # -- ground-truth conditions ---------------------------------------------------------------------
    def _current_item(self, now: float) -> str | None:
        last = self.trace.ear.last_heard(now)
        return self.trace.item_of(last[0]) if last else None

    def _agent_done(self, now: float, settle: bool = False) -> bool:
        """Idle engine, nothing left to play, and the previous turn's disposition applied."""
        quiet = self.engine_state() == "idle" and not self.device.playback.has_queued()
        if quiet and self.prev_said is not None and self.prev_said.utterance_id is not None:
            quiet = self.trace.disposition_for(self.prev_said.utterance_id) is not None
        if quiet and settle:
            quiet = not self.session().deadlines
        if not quiet:
            self.quiet_since = None
            return False
        if self.quiet_since is None:
            self.quiet_since = now
        return now - self.quiet_since >= (0.5 if settle else self.options.reaction_s)

    def _reply_playing(self, now: float) -> str | None:
        """The reply now playing: the item of the latest agent audio at the ear, if some of it has
        reached the ear since the previous turn ended (a reply interrupted by that turn and never
        resumed is not "now playing"; one that went on after a backchannel is)."""
        last = self.trace.ear.last_agent_time(now)
        if last is None or last < self.prev_end:
            return None
        return self._current_item(now)

    def _holds(self, kind: str, value: float, now: float) -> bool:
        """`heard_words`/`heard_ms` count from the start of the reply now playing (SCENARIOS.md), not
        from the previous turn: after a backchannel at word 18, `heard_words: 55` is word 55 of the
        reply. A resumed reply is its own item: its words count from the first after the bridge
        phrase (`item_heard` leaves the bridge out), its milliseconds from its first sample."""
        if kind == "wait_s":
            return now >= self.prev_end + value
        if kind == "reply_done":
            return self._agent_done(now)
        item = self._reply_playing(now)
        if item is None:
            return False
        if kind == "heard_ms":
            return item_heard_ms(self.trace, item, now) >= value
        return item_heard(self.trace, item, now) >= value

    def _narrate(self, record: TurnRecord, now: float) -> None:
        assert self.options.on_event is not None
        if record.playing_item is not None:
            words = self.trace.items_text(record.playing_item).split()
            n = item_heard(self.trace, record.playing_item, now, content_only=False)
            heard = " ".join(words[max(0, n - 8) : n])
            self.options.on_event(f"{now:7.2f}s  heard      ... {heard}  <- the listener's last heard words")
        self.options.on_event(f"{now:7.2f}s  USER       {record.say!r}"
                              + ("  (interrupting)" if record.agent_speaking else ""))

    # -- the loop ----------------------------------------------------------------------------------
    def step(self, now: float) -> None:
        if self.finished:
            return
        if self.speaking is not None:
            if self.voice.step(now):
                turn = self.speaking
                turn.end = now
                turn.last_segment_before = max(self.trace.segments, default=0)
                self.speaking, self.prev_said, self.prev_end, self.waiting_since = None, turn, now, now
                self.quiet_since = None
            return
        turns = self.scenario.turns
        if self.index >= len(turns):
            if self._agent_done(now, settle=True):
                self.finished = True
            elif now - self.waiting_since > self.options.settle_timeout_s:
                self.trace.errors.append(f"the agent did not finish within {self.options.settle_timeout_s:.0f} s "
                                         f"after the last turn (engine state {self.engine_state()})")
                self.finished = True
            return
        turn = turns[self.index]
        if turn.after is not None and not self._holds(turn.after.kind, turn.after.value, now):
            if now - self.waiting_since > self.options.turn_timeout_s:
                self.trace.errors.append(f"turns[{self.index}]: after {{{turn.after.describe()}}} did not hold within "
                                         f"{self.options.turn_timeout_s:.0f} s (engine state {self.engine_state()})")
                self.finished = True
            return
        index = self.index
        self.index += 1
        self.quiet_since = None
        if turn.say is None:
            self.prev_end = self.waiting_since = now
            return
        record = TurnRecord(index, turn.say, turn.expect, start=now)
        record.agent_speaking = self.device.playback.is_playing()
        last = self.trace.ear.last_agent_time(now)
        record.playing_item = self._current_item(now) if last is not None and now - last < 0.1 else None
        self.trace.turns.append(record)
        if self.options.on_event:
            self._narrate(record, now)
        duration = max(0.4, len(turn.say.split()) / self.options.words_per_s)
        self.voice.begin(record, turn.say, now, duration)
        self.speaking = record
