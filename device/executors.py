"""The device app's command executors: each translates one command of the device machine into I/O.

A mixin of `device.app.DeviceApp` (the I/O objects live there). Nothing here decides: every branch
carries out what the machine (`icp.device`) said. `EXECUTORS` is the dispatch table, keyed by type.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from device import machine as m
from icp.messages import (Cursor, DeviceEvent, DeviceState, Hello, Interrupt, PlaybackEvent, PlaybackReport, Utterance,
                          Wake)

if TYPE_CHECKING:
    from device.app import DeviceApp

log = logging.getLogger("device.app")


class Executors:
    def _x_pause(self: "DeviceApp", cmd: m.PausePlayback) -> None:
        c = self.playback.pause()
        self._pause_cursor = Cursor(c.segment, c.sample) if c else None

    def _x_resume(self: "DeviceApp", cmd: m.ResumePlayback) -> None:
        self.playback.resume()

    def _x_flush(self: "DeviceApp", cmd: m.FlushPlayback) -> None:
        self.playback.flush()  # its drop event reaches the machine like any other

    def _x_interrupt(self: "DeviceApp", cmd: m.SendInterrupt) -> None:
        self.telemetry.interrupts_sent += 1
        self._send(Interrupt(cmd.utterance_id, self._pause_cursor, cmd.onset_s * 1000, cmd.hint))

    def _x_utterance(self: "DeviceApp", cmd: m.SendUtterance) -> None:
        self._send(Utterance(cmd.utterance_id, cmd.final, cmd.text, cmd.words, cmd.hint))

    def _x_wake(self: "DeviceApp", cmd: m.SendWake) -> None:
        self._send(Wake(cmd.source, cmd.score))

    def _x_event(self: "DeviceApp", cmd: m.SendEvent) -> None:
        self.telemetry.event(cmd.event_type)
        self._send(DeviceEvent(cmd.event_type), qos=0)

    def _x_playback(self: "DeviceApp", cmd: m.SendPlayback) -> None:
        cursor = Cursor(*cmd.cursor) if cmd.cursor else self._cursor_now()
        report = PlaybackReport(cmd.event, cursor, self.playback.queued_ms(self._now), self._now * 1000)
        self._send(report, qos=0 if cmd.event is PlaybackEvent.HEARTBEAT else 1)

    def _x_state(self: "DeviceApp", cmd: m.SendState) -> None:
        self._send(DeviceState(cmd.status, cmd.muted, cmd.held_threads), retain=True)

    def _x_hello(self: "DeviceApp", cmd: m.SendHello) -> None:
        self._send(Hello(self.backend.sample_rate, self.capabilities(), self.config.device.software))

    def _x_start_capture(self: "DeviceApp", cmd: m.StartCapture) -> None:
        self._start_capture(cmd.utterance_id, cmd.from_s, cmd.over_speech)

    def _x_finish_capture(self: "DeviceApp", cmd: m.FinishCapture) -> None:
        if self.asr is not None:
            self.asr.finish(cmd.utterance_id, prepared=cmd.prepared)
        if self._capturing == cmd.utterance_id:
            self._capturing = None

    def _x_cancel_capture(self: "DeviceApp", cmd: m.CancelCapture) -> None:
        if self.asr is not None:
            self.asr.cancel(cmd.utterance_id)
        if self._capturing == cmd.utterance_id:
            self._capturing = None

    def _x_prepare_final(self: "DeviceApp", cmd: m.PrepareFinal) -> None:
        if self.asr is not None:
            self.asr.prepare(cmd.utterance_id)

    def _x_quick(self: "DeviceApp", cmd: m.QuickTranscript) -> None:
        if self.asr is not None:
            self.asr.quick(cmd.utterance_id)

    def _x_listening(self: "DeviceApp", cmd: m.SetListening) -> None:
        self._wake_on, self._asr_on = cmd.wake_word, cmd.asr

    def _x_orb(self: "DeviceApp", cmd: m.SetOrb) -> None:
        self._orb = cmd.orb
        if self.gpio is not None:
            self.gpio.set_orb(cmd.orb.value)

    def _x_reopen(self: "DeviceApp", cmd: m.ReopenAudio) -> None:
        if self.backend.reopen():
            self._dispatch(m.AudioRestored())

    def _x_exit(self: "DeviceApp", cmd: m.ExitProcess) -> None:
        log.error("exiting with %d: %s", cmd.code, cmd.reason)
        self.exit_code = cmd.code
        self._stop.set()

    def _x_restart(self: "DeviceApp", cmd: m.Restart) -> None:
        log.warning("restart requested")
        self.restart_requested = True
        self._stop.set()
        if self.on_restart is not None:
            self.on_restart()

    def _x_ignored(self: "DeviceApp", cmd: m.Ignored) -> None:
        log.debug("ignored %s: %s", type(cmd.event).__name__, cmd.reason)


EXECUTORS: dict[type, Callable[["DeviceApp", object], None]] = {
    m.PausePlayback: Executors._x_pause, m.ResumePlayback: Executors._x_resume, m.FlushPlayback: Executors._x_flush,
    m.SendInterrupt: Executors._x_interrupt, m.SendUtterance: Executors._x_utterance, m.SendWake: Executors._x_wake,
    m.SendEvent: Executors._x_event, m.SendPlayback: Executors._x_playback, m.SendState: Executors._x_state,
    m.SendHello: Executors._x_hello, m.StartCapture: Executors._x_start_capture,
    m.FinishCapture: Executors._x_finish_capture, m.CancelCapture: Executors._x_cancel_capture,
    m.QuickTranscript: Executors._x_quick, m.PrepareFinal: Executors._x_prepare_final,
    m.SetListening: Executors._x_listening, m.SetOrb: Executors._x_orb, m.ReopenAudio: Executors._x_reopen,
    m.ExitProcess: Executors._x_exit, m.Restart: Executors._x_restart, m.Ignored: Executors._x_ignored,
}
