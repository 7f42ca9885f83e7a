"""The device machine's table is the machine, and docs/architecture.md shows it as the code has it."""

from __future__ import annotations

import inspect
from pathlib import Path

from icp.device import events as E
from icp.device.machine import HANDLERS, DeviceMachine
from icp.device.table import TABLE, State, render_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_architecture_doc_shows_the_device_table_as_the_code_has_it():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    begin, end = "<!-- device-table:begin -->\n", "<!-- device-table:end -->"
    assert begin in doc and end in doc, "docs/architecture.md lost its device table markers"
    assert doc[doc.index(begin) + len(begin): doc.index(end)] == render_markdown(), \
        "regenerate it: python -m icp.device.table"


def test_every_event_has_one_handler_and_every_cell_a_known_state():
    events = {cls for _, cls in inspect.getmembers(E, inspect.isclass)
              if cls.__module__ == E.__name__ and cls in E.Event.__args__}  # type: ignore[attr-defined]
    assert set(HANDLERS) == events
    assert set(TABLE) == set(State)
    assert all(isinstance(t, State) for row in TABLE.values() for t in row.values())


def test_the_next_state_comes_from_the_table():
    mc = DeviceMachine(online=True)
    for state in State:
        for trigger, target in TABLE[state].items():
            mc.state = state
            assert mc._go(trigger) and mc.state is target
    mc.state = State.PAUSED
    assert not mc._go(E.SegmentQueued) and mc.state is State.PAUSED  # no cell: nothing changes


def test_wire_enums_not_strings():
    from icp.dispositions import Disposition
    from icp.messages.playback import Action

    ev = E.ControlReceived("flush", "BRANCH", "BRANCH")
    assert ev.action is Action.FLUSH and ev.disposition is Disposition.BRANCH


def test_nothing_is_sent_while_the_link_is_down_and_values_fit_the_wire():
    from icp.device import commands as C
    from icp.messages.rules import MAX_TEXT

    mc = DeviceMachine()
    mc.handle(E.SegmentQueued(1), 0.0)
    cmds = mc.handle(E.SpeechStarted(-0.5), 0.1)
    assert any(isinstance(c, C.PausePlayback) for c in cmds)  # pausing is local: it happens offline too
    assert not [c for c in cmds if isinstance(c, C.SEND_COMMANDS)]
    mc.handle(E.LinkUp(), 0.2)
    cmds = mc.handle(E.TextHeard("x" * (MAX_TEXT + 50), True), 0.3)
    sent = [c for c in cmds if isinstance(c, C.SendUtterance)]
    assert sent and len(sent[0].text) == MAX_TEXT


def test_orb_precedence():
    from icp.device.commands import Orb

    mc = DeviceMachine()
    assert mc.orb() is Orb.OFFLINE
    mc.handle(E.LinkUp(), 0.0)
    mc.handle(E.EngineStateReceived("idle", 2), 0.1)
    assert mc.orb() is Orb.BRANCH_HELD
    mc.handle(E.MuteSet(True), 0.2)
    assert mc.orb() is Orb.MUTED
    mc.handle(E.AudioLost("gone"), 0.3)
    assert mc.orb() is Orb.ERROR


def test_speech_while_listening_is_announced_at_once():
    """The engine must know the user has begun before the recogniser's first words (its auto-resume
    would otherwise start the held thread over "okay, go back": found in live mode)."""
    from icp.device import commands as C

    mc = DeviceMachine(online=True)
    mc.handle(E.ControlReceived("listen"), 0.0)
    cmds = mc.handle(E.SpeechStarted(0.4), 0.45)
    sent = [c for c in cmds if isinstance(c, C.SendUtterance)]
    assert len(sent) == 1 and sent[0].text == "" and not sent[0].final
