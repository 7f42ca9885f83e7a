"""The engine's state machine for one device session: the one place that decides behaviour.

Events in, commands out, time passed in (`event.now`); no I/O, no clock. `handle()` checks the event
belongs in the current state (`ACCEPTS`; otherwise an `Ignored` command, never an exception), hands it
to its handler through `HANDLERS` (a table keyed by event type), fires due deadlines, and pumps the
segment pipeline. Handlers move the machine only through `TABLE` (icp/engine/table.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from icp import commands as C
from icp import events as E
from icp.conversation import AssistantItem, Conversation
from icp.dispositions import Disposition
from icp.engine.settings import EngineSettings, Undo
from icp.engine.partials import Partials
from icp.engine.table import ACCEPTS, DEADLINE_STATE, Deadline, State, Step
from icp.strategies import Strategy

S = State


class Session(Partials):
    """One device's engine session. `handle(event)` is the only entry point."""

    def handle(self, event: E.Event) -> list[C.Command]:
        self._out = []
        kind = type(event)
        if kind not in ACCEPTS[self.state]:
            self._ignore(event, f"not legal in state {self.state.value}")
            return self._out
        before = self.state
        self.now = max(self.now, event.now)
        HANDLERS[kind](self, event)
        self._arm_undo()
        self._check_deadlines()
        self._pump()
        if self.state != before:
            self._out.insert(0, C.Transition(before.value, kind.__name__, self.state.value))
        return self._out

    def next_deadline(self) -> float | None:
        """When time next matters to this session (the I/O layer's ticker sends a `Tick` then), or
        None: no deadline, or offline (deadlines wait for the device to come back)."""
        if self.state is S.OFFLINE or not self.deadlines:
            return None
        return min(self.deadlines.values())

    # -- connection ----------------------------------------------------------------------------
    def _on_connected(self, ev: E.DeviceConnected) -> None:
        if ev.new_session:
            self.last_sent = 0  # a new device process starts its segment chain empty
            self._forget_partials()  # its utterance in progress is gone with it
        if self.state is S.OFFLINE:
            self._step(E.DeviceConnected, publish=False)  # back to where it dropped; published below
        if ev.new_session and self.conv.playing_item() is not None:
            # The device process restarted: what it had queued is gone. Hold what was playing.
            self._stop_voice(hold=True, reason="RESTART")
            self._step(Step.DEVICE_RESTARTED)
        self._publish_state()

    def _on_disconnected(self, ev: E.DeviceDisconnected) -> None:
        self.before_offline = self.state
        self._step(E.DeviceDisconnected)

    # -- time -----------------------------------------------------------------------------------
    def _on_tick(self, ev: E.Tick) -> None:
        pass

    def _arm_undo(self) -> None:
        """The undo window runs while the machine is idle: it starts the first time the machine is
        idle after the CANCEL/MODIFY (not while the answer to the misreading plays) and its end is
        fixed then. `Deadline.UNDO` lives in `idle` only; a user who starts talking before it fires
        (listening) is still in time, whatever their final words take to come."""
        if self.undo is None or self.state is not S.IDLE:
            return
        if self.undo.expires is None:
            self.undo.expires = self.now + self.settings.undo_window_s
        self.deadlines.setdefault(Deadline.UNDO, self.undo.expires)

    def _check_deadlines(self) -> None:
        """Fire due timeouts. A deadline whose state has passed is dropped; while offline, it waits."""
        if self.state is S.OFFLINE:
            return
        for name, when in sorted(self.deadlines.items(), key=lambda kv: kv[1]):
            if name not in self.deadlines:
                continue
            if self.state is not DEADLINE_STATE[name]:
                del self.deadlines[name]
                continue
            if self.now < when:
                continue
            del self.deadlines[name]
            if name is Deadline.INTERRUPT:
                self._apply(self.utterance_id or "timeout", "", Disposition.ABSORB, Disposition.ABSORB, 0.0,
                            "timeout", self.now)
            elif name is Deadline.LISTEN:
                self._ignore("Tick", "listening timed out without a final utterance")
                self._forget_partials()
                self._step(Deadline.LISTEN)
            elif name is Deadline.CLASSIFY:
                self._classify_fallback("timeout")
            elif name is Deadline.LOST_AUDIO:
                self._recover_lost_audio()
            elif name is Deadline.LATE_CURSOR:
                self._apply_late_decision()
            elif name is Deadline.UNDO:
                self._ignore("Tick", "undo window closed: the cancelled reply can no longer be resumed")
                self._close_undo()
                self._step(Deadline.UNDO)
                self._persist()
            else:
                self._apply("auto-resume", "", Disposition.RESUME, Disposition.RESUME, 1.0, "auto", self.now)

    # -- persistence ----------------------------------------------------------------------------
    @classmethod
    def restore(cls, snapshot: dict[str, Any], settings: EngineSettings, strategy: Strategy) -> "Session":
        """A session after a restart: nothing is playing or generating, held threads can be resumed."""
        session = cls(snapshot["device_id"], settings, strategy)
        session.conv = Conversation.from_dict(snapshot["conversation"])
        session.active_thread = snapshot.get("active_thread")
        session.next_segment = int(snapshot.get("next_segment", 1))
        if snapshot.get("undo"):
            # The old process's clock means nothing here: the window starts again when next idle.
            session.undo = Undo(**(snapshot["undo"] | {"expires": None}))
        for seg in session.conv.segments:
            if seg.heard_samples < seg.samples:
                seg.dropped = True
        for entry in session.conv.log:
            if isinstance(entry, AssistantItem) and not entry.complete:
                entry.complete, entry.cut, entry.truncated = True, True, True
        return session


Handler = Callable[[Session, Any], None]
HANDLERS: dict[type[E.Event], Handler] = {
    E.DeviceConnected: Session._on_connected,
    E.DeviceDisconnected: Session._on_disconnected,
    E.WakeDetected: Session._on_wake,
    E.UtterancePartial: Session._on_partial,
    E.UtteranceFinal: Session._on_final,
    E.InterruptReported: Session._on_interrupt,
    E.Classified: Session._on_classified,
    E.ClassifyFailed: Session._on_classify_failed,
    E.PlaybackReported: Session._on_playback_reported,
    E.GenerationText: Session._on_generation_text,
    E.GenerationFinished: Session._on_generation_finished,
    E.GenerationFailed: Session._on_generation_failed,
    E.SegmentSynthesised: Session._on_segment_synthesised,
    E.SynthesisFailed: Session._on_synthesis_failed,
    E.SegmentNotSent: Session._on_segment_not_sent,
    E.Tick: Session._on_tick,
}
