"""The device state machine is pure: events in, commands out."""

import ast
from pathlib import Path

from device import machine as m


def test_onset_while_speaking_pauses_and_interrupts():
    mc = m.Machine()
    mc.handle(m.SegmentQueued(1), 0.0)
    cmds = mc.handle(m.SpeechStarted(1.23), 1.3)
    assert isinstance(cmds[0], m.PausePlayback)
    assert isinstance(cmds[1], m.SendInterrupt) and cmds[1].onset_s == 1.23
    assert mc.state == m.State.PAUSED
    assert mc.handle(m.SpeechStarted(1.5), 1.5) == []  # already paused: nothing more
    cmds = mc.handle(m.ControlReceived("resume"), 2.0)
    assert isinstance(cmds[0], m.ResumePlayback) and mc.state == m.State.SPEAKING


def test_no_bargein_when_idle_or_muted():
    mc = m.Machine()
    assert not any(isinstance(c, m.PausePlayback) for c in mc.handle(m.SpeechStarted(0.1), 0.1))
    mc.handle(m.MuteSet(True), 0.2)
    mc.handle(m.SegmentQueued(1), 0.3)
    assert mc.handle(m.SpeechStarted(0.4), 0.4) == []


def test_machine_imports_no_io():
    tree = ast.parse(Path(m.__file__).read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert mods <= {"__future__", "dataclasses", "enum", "typing"}
