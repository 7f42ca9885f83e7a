"""The device state machine is pure: events in, commands out."""

import ast
from pathlib import Path

from device import machine as m


def test_onset_while_speaking_pauses_and_interrupts():
    mc = m.Machine(online=True)  # the machine sends nothing while the link is down
    mc.handle(m.SegmentQueued(1), 0.0)
    cmds = mc.handle(m.SpeechStarted(1.23), 1.3)
    assert isinstance(cmds[0], m.PausePlayback)
    assert isinstance(cmds[1], m.SendInterrupt) and cmds[1].onset_s == 1.23
    assert mc.state == m.State.PAUSED
    assert mc.handle(m.SpeechStarted(1.5), 1.5) == []  # already paused: nothing more
    cmds = mc.handle(m.ControlReceived("resume"), 2.0)
    assert isinstance(cmds[0], m.ResumePlayback) and mc.state == m.State.SPEAKING


def test_no_bargein_when_idle_or_muted():
    mc = m.Machine(online=True)  # the machine sends nothing while the link is down
    assert not any(isinstance(c, m.PausePlayback) for c in mc.handle(m.SpeechStarted(0.1), 0.1))
    mc.handle(m.MuteSet(True), 0.2)
    mc.handle(m.SegmentQueued(1), 0.3)
    assert [type(c) for c in mc.handle(m.SpeechStarted(0.4), 0.4)] == [m.Ignored]  # muted: nothing happens


def test_machine_lives_in_the_core():
    """device.machine only re-exports icp.device, which the core-purity test covers (tests/unit)."""
    import icp.device

    assert m.Machine is icp.device.DeviceMachine
    tree = ast.parse(Path(m.__file__).read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {mod.split(".")[0] for mod in mods} <= {"icp"}
