"""The engine machine's shape: the table in the docs is the table in the code, dispatch covers every
event, deadlines are typed, and the fixes of issue 11 hold in the core alone."""

from __future__ import annotations

import inspect
from pathlib import Path

from evaluation.coresim import Sim
from icp import commands as C
from icp import events as E
from icp.dispositions import Classification, Disposition
from icp.engine.table import TABLE, Previous
from icp.machine import (
    ACCEPTS, DEADLINE_STATE, HANDLERS, AutoResume, Deadline, EngineSettings, Session, State, render_markdown,
)
from icp.messages.playback import Action
from icp.strategies import STRATEGIES

ROOT = Path(__file__).resolve().parents[2]
LONG = ("Tides are caused by the moon pulling on the oceans. The near side bulges toward it. "
        "The far side bulges too because the earth is pulled away. Most coasts see two tides a day.")


def test_the_documented_table_is_the_code():
    doc = (ROOT / "docs/architecture.md").read_text()
    begin, end = "<!-- engine-table:begin -->\n", "<!-- engine-table:end -->"
    assert begin in doc and end in doc, "docs/architecture.md lost its engine table markers"
    shown = doc[doc.index(begin) + len(begin): doc.index(end)]
    assert shown == render_markdown(), "regenerate it: python -m icp.engine.table"


def test_every_event_has_one_handler_and_every_row_only_known_states():
    events = {cls for _, cls in inspect.getmembers(E, inspect.isclass) if issubclass(cls, E.Event) and cls is not E.Event}
    assert set(HANDLERS) == events
    assert set().union(*ACCEPTS.values()) == events
    assert set(TABLE) == set(State) == set(ACCEPTS)
    for row in TABLE.values():
        assert all(isinstance(t, (State, Previous)) for t in row.values())
    assert set(DEADLINE_STATE) == set(Deadline)


def test_next_deadline_is_the_earliest_and_none_while_offline():
    s = Session("d")
    assert s.next_deadline() is None  # offline
    s.handle(E.DeviceConnected(0.0))
    assert s.next_deadline() is None
    s.handle(E.WakeDetected(1.0))
    assert s.next_deadline() == 1.0 + s.settings.listen_timeout_s
    assert list(s.deadlines) == [Deadline.LISTEN]
    s.handle(E.DeviceDisconnected(2.0))
    assert s.next_deadline() is None  # deadlines wait while offline


def test_only_cancel_restart_does_not_resume_by_itself():
    assert {name for name, s in STRATEGIES.items() if not s.auto_resume} == {"cancel-restart"}


def sim_speaking(*decisions: Disposition) -> Sim:
    queue = [Disposition.NEW, *decisions]
    sim = Sim({"tides": LONG, "": "Fine."}, lambda req: Classification(queue.pop(0), 0.9),
              settings=EngineSettings(auto_resume=AutoResume.OFF))
    sim.say("tell me about tides")
    sim.run_until(lambda: sim.heard)
    for _ in range(20):
        sim.step()
    return sim


def controls(sim: Sim) -> list[C.DeviceControl]:
    return [c for c in sim.log if isinstance(c, C.DeviceControl)]


def test_control_names_the_disposition_it_carries_out():
    for d in (Disposition.BRANCH, Disposition.MODIFY, Disposition.CANCEL):
        sim = sim_speaking(d)
        sim.say("what do you mean exactly", interrupt=True)
        flush = [c for c in controls(sim) if c.action is Action.FLUSH]
        assert [(c.reason, c.disposition) for c in flush] == [(d.value, d)]
    sim = sim_speaking(Disposition.ABSORB)
    sim.say("uh huh", interrupt=True)
    resume = [c for c in controls(sim) if c.action is Action.RESUME]
    assert [(c.reason, c.disposition) for c in resume] == [("ABSORB", Disposition.ABSORB)]
    assert all(c.disposition is None for c in controls(sim) if c.action in (Action.PAUSE, Action.LISTEN))


def test_a_failed_classifier_falls_back_at_once():
    s = Session("d")
    s.handle(E.DeviceConnected(0.0))
    s.handle(E.UtteranceFinal(1.0, "u1", "tell me about tides"))
    assert s.state is State.CLASSIFYING
    out = s.handle(E.ClassifyFailed(1.1, "u1", "RuntimeError: no model"))
    applied = [c for c in out if isinstance(c, C.DispositionApplied)]
    assert [(c.applied, c.source) for c in applied] == [(Disposition.NEW, "failed")]
    assert s.state is State.THINKING and Deadline.CLASSIFY not in s.deadlines
    # a failure for another request is stale
    assert isinstance(s.handle(E.ClassifyFailed(1.2, "u1", "late"))[0], C.Ignored)


def test_a_segment_not_sent_is_sent_again_from_the_heard_cursor():
    sim = sim_speaking()
    sent = [c.segment for c in sim.log if isinstance(c, C.SendSegment)]
    assert len(sent) >= 2
    heard_before = sim.session.conv.item(sent[0].item).heard
    n = len(sim.log)
    sim.send(E.SegmentNotSent(sim.now, sent[-1].segment, "no audio"))
    after = sim.log[n:]
    flush = [c for c in after if isinstance(c, C.DeviceControl)]
    assert [(c.action, c.reason, c.disposition) for c in flush] == [(Action.FLUSH, "RESEND", None)]
    assert all(s.dropped for s in sim.session.conv.segments if s.heard_samples < s.samples)
    first = sim.session.in_flight or sim.session.to_synth[0]  # the pump starts on it at once
    assert first is not None and first.first_word == sim.session.conv.resume_point(
        sim.session.conv.item(sent[0].item)) <= heard_before
    # a second report for the same segment changes nothing
    assert isinstance(sim.send(E.SegmentNotSent(sim.now, sent[-1].segment, "no audio"))[0], C.Ignored)


def test_every_deadline_is_shown_with_the_setting_that_sets_its_length():
    from dataclasses import fields

    from icp.engine.table import DEADLINE_RULE

    names = {f.name for f in fields(EngineSettings)}
    assert set(DEADLINE_RULE) == set(Deadline) and all(rule[0] in names for rule in DEADLINE_RULE.values())
    table = render_markdown()
    assert "| `Deadline.UNDO` | `idle` | `undo_window_s` (20 s) |" in table  # the undo window (issue 14)
    assert TABLE[State.IDLE][Deadline.UNDO] is State.IDLE
