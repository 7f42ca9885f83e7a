"""The virtual user in live mode: speaks each turn into the room when its `after` holds at the ear.

Everything it judges comes from outside the device and the engine: the ear recording (through
`LiveEarIndex`, aligned against the segments' PCM seen on the wire), the wire itself (the device's
`up/state`, `up/wake`, `up/utterance`; the engine's `down/state`), never from their internals.

`heard_words` counts words of the reply now playing from its start (after the bridge phrase for a
resumed reply), `heard_ms` its audio from its first sample (shared/SCENARIOS.md). An idle device
needs its wake word first: the user says "Hey Jarvis." and waits for the device's `wake` on the
wire before the turn's words (as a person does with a smart speaker).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from evaluation.harness.trace import Trace, TurnRecord, item_heard
from evaluation.live.ear import LiveEarIndex
from evaluation.live.room import Player, Room
from evaluation.live.wire import WireTap
from evaluation.scenario import Scenario

WAKE_PHRASE = "Hey Jarvis."


@dataclass
class Spoken:
    """One stretch of the user's voice played into the room (wall-clock start, samples)."""

    turn: int  # -1: the wake phrase
    text: str
    pcm: np.ndarray
    started: float  # monotonic, when pacat was started (the recording says when it really sounded)


@dataclass
class UserTiming:
    reaction_s: float = 0.3
    turn_timeout_s: float = 90.0
    settle_timeout_s: float = 60.0
    final_timeout_s: float = 12.0  # the device's final utterance after the user stopped
    wake_timeout_s: float = 4.0


@dataclass
class LiveUser:
    scenario: Scenario
    trace: Trace
    ear: LiveEarIndex
    wire: WireTap
    room: Room
    voice: Callable[[str, int], np.ndarray]
    ear_t0: Callable[[], float]  # monotonic time of ear sample 0
    timing: UserTiming = field(default_factory=UserTiming)
    spoken: list[Spoken] = field(default_factory=list)
    index: int = 0
    finished: bool = False
    _phase: str = "wait"  # wait | waking | speaking | final
    _player: Player | None = None
    _record: TurnRecord | None = None
    _phase_since: float = 0.0
    _wake_tries: int = 0  # the wake phrase said again when the device did not react
    _prev_end: float = 0.0  # ear time the previous turn's speech ended
    _waiting_since: float = 0.0
    _quiet_since: float | None = None
    _last_final_wall: float = 0.0

    # -- time -------------------------------------------------------------------------------------
    def now(self) -> float:
        """Ear time of the newest sample the ear index has looked at (conditions are judged there)."""
        return self.ear.position_s

    def ear_time(self, mono: float) -> float:
        return mono - self.ear_t0()

    # -- what the wire says ---------------------------------------------------------------------------
    def _device_state(self) -> str:
        ev = self.wire.last("state", "up")
        state = getattr(ev.body, "state", "unknown") if ev else "unknown"
        return str(getattr(state, "value", state))

    def _engine_state(self) -> str:
        ev = self.wire.last("state", "down")
        return str(getattr(ev.body, "state", "unknown")) if ev else "unknown"

    def _agent_audible(self, t: float, within: float = 0.15) -> bool:
        last = self.ear.last_agent_time(t + 1e-6)
        return last is not None and t - last < within

    def _current_item(self, t: float) -> str | None:
        last = self.ear.last_heard(t + 1e-6)
        return self.trace.item_of(last[0]) if last else None

    # -- conditions -------------------------------------------------------------------------------------
    def _agent_done(self, t: float, settle: bool = False) -> bool:
        """The engine says idle on the wire, the ear has been silent, nothing announced is left unplayed."""
        quiet = self._engine_state() == "idle" and not self._agent_audible(t, 0.3)
        if quiet:
            states = self.wire.of("state", "down", since=self._last_final_wall)
            quiet = bool(states) or time.monotonic() - self._last_final_wall > 3.0
        if not quiet:
            self._quiet_since = None
            return False
        if self._quiet_since is None:
            self._quiet_since = t
        return t - self._quiet_since >= (1.0 if settle else self.timing.reaction_s)

    def _holds(self, kind: str, value: float, t: float) -> bool:
        if kind == "wait_s":
            return t >= self._prev_end + value
        if kind == "reply_done":
            return self._agent_done(t)
        item = self._current_item(t)
        if item is None or not self._agent_audible(t, 0.5):
            return False
        if kind == "heard_ms":
            segs = self.trace.item_segments(item)
            heard = sum(self.ear.heard_samples(s.segment, t) for s in segs)
            return 1000.0 * heard / self.ear.sample_rate >= value
        return item_heard(self.trace, item, t) >= value

    # -- acting -------------------------------------------------------------------------------------------
    def _say(self, turn: int, text: str) -> Player:
        pcm = self.voice(text, self.room.sample_rate)
        player = self.room.play(pcm)
        self.spoken.append(Spoken(turn, text, pcm, player.started))
        return player

    def step(self) -> None:
        if self.finished:
            return
        t = self.now()
        wall = time.monotonic()
        if self._phase == "waking":
            assert self._player is not None and self._record is not None
            woke = self.wire.of("wake", "up", since=self._phase_since)
            if (not woke and self._player.done() and wall - self._player.started > self._player.duration + 1.5
                    and self._wake_tries < 2):
                # As a person would: say it again when the speaker did not react (the detector's score
                # on this voice can fall short of the threshold).
                self._wake_tries += 1
                self.trace.notes.append(f"turn {self._record.index + 1}: no wake after {WAKE_PHRASE!r}; "
                                        f"said it again ({self._wake_tries})")
                self._player = self._say(-1, WAKE_PHRASE)
                self._phase_since = wall
                return
            if (self._player.done() and woke) or wall - self._phase_since > self.timing.wake_timeout_s + 3:
                if not woke:
                    self.trace.notes.append(f"turn {self._record.index + 1}: no wake on the wire after "
                                            f"{WAKE_PHRASE!r}; speaking anyway")
                self._start_words(wall)
            return
        if self._phase == "speaking":
            assert self._player is not None and self._record is not None
            if self._player.done():
                self._record.end = self.ear_time(wall)
                self._prev_end = self._record.end
                self._phase, self._phase_since = "final", wall
            return
        if self._phase == "final":
            assert self._record is not None
            finals = [e for e in self.wire.of("utterance", "up", since=self._phase_since - 30)
                      if getattr(e.body, "final", False) and e.t >= self._record_wall]
            if finals or wall - self._phase_since > self.timing.final_timeout_s:
                if not finals:
                    self.trace.notes.append(f"turn {self._record.index + 1}: no final utterance on the wire "
                                            f"within {self.timing.final_timeout_s:.0f} s of the end of speech")
                self._record.last_segment_before = max(self.trace.segments, default=0)
                self._last_final_wall = finals[0].t if finals else wall
                self._phase, self._record, self._player = "wait", None, None
                self._waiting_since = t
                self._quiet_since = None
            return
        turns = self.scenario.turns
        if self.index >= len(turns):
            if self._agent_done(t, settle=True):
                self.finished = True
            elif t - self._waiting_since > self.timing.settle_timeout_s:
                self.trace.errors.append(f"the agent did not finish within {self.timing.settle_timeout_s:.0f} s "
                                         f"after the last turn (engine state {self._engine_state()})")
                self.finished = True
            return
        turn = turns[self.index]
        if turn.after is not None and not self._holds(turn.after.kind, turn.after.value, t):
            if t - self._waiting_since > self.timing.turn_timeout_s:
                self.trace.errors.append(f"turns[{self.index}]: after {{{turn.after.describe()}}} did not hold "
                                         f"within {self.timing.turn_timeout_s:.0f} s (engine state "
                                         f"{self._engine_state()}, device state {self._device_state()})")
                self.finished = True
            return
        index = self.index
        self.index += 1
        self._quiet_since = None
        if turn.say is None:
            self._prev_end = self._waiting_since = t
            return
        record = TurnRecord(index, turn.say, turn.expect, start=self.ear_time(wall))
        record.agent_speaking = self._agent_audible(t)
        record.playing_item = self._current_item(t) if record.agent_speaking else None
        self.trace.turns.append(record)
        self._record = record
        self._record_wall = wall
        if not record.agent_speaking and self._device_state() in ("idle", "unknown"):
            self._player = self._say(-1, WAKE_PHRASE)
            self._phase, self._phase_since = "waking", wall
            self._wake_tries = 0
        else:
            self._start_words(wall)

    def _start_words(self, wall: float) -> None:
        assert self._record is not None
        self._player = self._say(self._record.index, self._record.say or "")
        self._record.start = self.ear_time(self._player.started)
        self._phase, self._phase_since = "speaking", wall

    def stop(self) -> None:
        if self._player is not None:
            self._player.stop()
