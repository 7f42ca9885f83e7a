"""The engine seen from outside: `--engine external` in text and audio mode.

With a local engine the harness reads the engine's commands from its observer hook. An external
engine (one `segue-server` or many, on another host or in other processes) is known only by what
reaches the device: segment announcements, controls and engine states. `WireEngine` turns those
into the same `Trace` the metrics read, as live mode does (`evaluation.live.verdict`):

- a segment announcement is a `SendSegment` at the time it reached the device;
- the engine's state is the last `engine_state` message (the virtual user's `reply_done` waits for
  `idle` there, as it waits for the local session's state);
- what the engine chose for a turn is inferred from the wire after the turn's final utterance (a
  `flush` names BRANCH/MODIFY/CANCEL, a `resume` names ABSORB; to an idle agent: a reply whose first
  segment has bridge words is RESUME, another NEW, none DROP), by the same function live mode uses.

The LLM's requests are not seen (the engine's endpoint is not the harness's), so phantom and lost
words are reported as null, never as a 0 that was not measured.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from evaluation.harness.trace import Trace
from evaluation.live.wire import WireEvent
from icp import commands as C
from icp.messages import Control, EngineState, Envelope, Interrupt, Segment, Utterance

REQUESTS_NOTE = ("--engine external: the engine's LLM endpoint is not the harness's, so its requests were not "
                 "seen: phantom_words and lost_words are not measured (null)")


class WireEngine:
    """What the device received from the engine and what it sent, timed on the card's clock."""

    deadlines: dict[str, float] = {}  # not visible from outside: the settle wait is the quiet time alone

    def __init__(self, trace: Trace) -> None:
        # live mode's rules for what the engine chose; imported here, before the device connects
        # (1.3 s of imports), not on paho's thread at the first message, and only by external runs
        from evaluation.live.verdict import _dispositions

        self._dispositions = _dispositions
        self.trace = trace
        self.state = "offline"
        self.events: list[WireEvent] = []
        self._lock = threading.Lock()

    # -- taps (paho's thread for down, the harness loop for up) -------------------------------------
    def down(self, t: float, down: Any) -> None:
        if not isinstance(down, Envelope):
            return  # audio frames and dashboard commands tell nothing the segments do not
        body = down.body
        if isinstance(body, EngineState):
            self.state = body.state
        elif isinstance(body, Segment):
            self.trace.record(t, C.SendSegment(body))
        elif isinstance(body, Control):
            self.trace.record(t, C.DeviceControl(body.action, body.reason, body.disposition))
        else:
            return
        self._add(WireEvent(t, "down", body.TYPE, body))

    def up(self, t: float, body: Any) -> None:
        if isinstance(body, (Utterance, Interrupt)):
            self._add(WireEvent(t, "up", body.TYPE, body))

    def _add(self, event: WireEvent) -> None:
        with self._lock:
            self.events.append(event)
        self.decide()

    # -- the engine's decisions, as the wire shows them ---------------------------------------------
    def decide(self, final: bool = False) -> None:
        """Re-derive every turn's disposition from the wire so far (live mode's rules). Its notes go
        to the trace only at the end (`final`): every message re-derives them."""
        with self._lock:
            events = list(self.events)
        trace = self.trace if final else SimpleNamespace(turns=self.trace.turns, notes=[])
        self.trace.dispositions = self._dispositions(SimpleNamespace(trace=trace, wire_events=events, ear_t0=0.0))

    def finish(self) -> None:
        """After the run: dispositions and the items' text (what the segments said)."""
        self.decide(final=True)
        items: dict[str, tuple[str, str]] = {}
        for sid in sorted(self.trace.segments):
            seg = self.trace.segments[sid]
            thread, text = items.get(seg.item, (seg.thread, ""))
            items[seg.item] = (thread, f"{text} {seg.text}".strip())
        self.trace.items = items
        self.trace.notes.append(REQUESTS_NOTE)
