"""The device process: wires an audio backend, playback, the mic path, the state machine and MQTT.

Callbacks only translate: the audio callback renders playback and queues the mic buffer; the MQTT
thread queues validated down messages (audio goes straight into the thread-safe playback queue).
`process()` drains both, turns what happened into machine events and executes the machine's
commands. Under a real sound card `serve()` calls it every few ms; under the virtual card a harness
calls `step()`/`run()` and everything happens in simulated time, in order, deterministically.

Optional parts, each off unless its config section turns it on (a `DeviceConfig()` built in code is
the cheap text-mode device the evaluation harness drives):

- `[wakeword] enabled`: openwakeword on the echo-cancelled mic while idle (and while speaking with
  `while_speaking`), in the device loop (a few ms per 80 ms frame).
- `[asr] backend`: a recogniser on a worker thread (`device.recognizer.AsrWorker`); the machine
  opens and closes captures, the loop streams the cleaned mic audio (with pre-roll) into it.
- `[gpio] enabled`: the orb shows what the machine says (`SetOrb`); buttons become machine events.
- `[telemetry] interval_s`: `telemetry` messages; `event` messages go out at wakes and dispositions.

Dashboard commands (`down/mute`, `down/restart`) arrive as `DashboardCommand`s. A restart stops the
loop and sets `restart_requested`; `segue-device` then exits with `[device] restart_exit_code` (systemd
starts it again) or re-executes itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable, Optional

import numpy as np

from device import machine as m
from device.audio.base import AudioBackend, StreamTimes
from device.bargein import MicPath
from device.config import DeviceConfig
from device.dashboard import DashboardCommand
from device.executors import EXECUTORS, Executors
from device.parts import build_asr, build_turn_model, build_wakeword, gpio_settings, make_backend
from device.playback import ChunkResult, Idle, Playback, PlaybackSettings, SegmentEnded, SegmentInfo, SegmentsDropped
from device.telemetry import TelemetryCounters
from device import vad as v
from icp.messages import AudioFrame, Capability, Control, Cursor, EngineState, Envelope, Segment
from servicekit.systemd import Notifier

__all__ = ["DeviceApp", "make_backend"]

log = logging.getLogger(__name__)


class DeviceApp(Executors):
    def __init__(self, config: DeviceConfig, backend: Optional[AudioBackend] = None, connect: bool = True, *,
                 wakeword=None, asr=None, gpio_pin_factory=None) -> None:
        """`wakeword` / `asr`: prebuilt detector / recogniser (tests share loaded models); otherwise
        they are built from `[wakeword]` / `[asr]` when enabled. `gpio_pin_factory`: gpiozero's (mock)."""
        self.config = config
        self.backend = backend or make_backend(config.audio)
        sr = self.backend.sample_rate
        self.playback = Playback(PlaybackSettings(sample_rate=sr))
        self.mic = MicPath(sr, config.aec, config.vad, config.bargein)
        self._mic_q: deque[tuple[np.ndarray, float]] = deque(maxlen=500)
        self._down_q: deque = deque()
        self._link_q: deque[m.Event] = deque()
        self._gpio_q: deque = deque()
        self._pending: list[m.Event] = []  # events raised by mic listeners, dispatched after the buffer
        self._pause_cursor: Optional[Cursor] = None
        self._now = 0.0
        self._audio_until: Optional[float] = None  # stream time the mic audio has been analysed up to
        self.mic_lag_max_s = 0.0
        self.mic_lag_ticks = 0
        self._stop = threading.Event()
        self._stopped = False
        self.sent: deque[object] = deque(maxlen=1000)  # bodies published (or that would have been, offline)
        self.restart_requested = False
        self.exit_code: Optional[int] = None  # set when the machine gives up (a sound card that stays lost)
        self.on_restart: Optional[Callable[[], None]] = None  # called when a restart is requested
        self.telemetry = TelemetryCounters(config.telemetry.thermal_path)
        self._next_telemetry: Optional[float] = None
        self._was_online = False

        # wake word (optional)
        self.wakeword = wakeword
        if self.wakeword is None and config.wakeword.enabled:
            self.wakeword = build_wakeword(config)
        self._wake_last_t: Optional[float] = None
        # ASR (optional): the model loads on the worker thread
        self.asr = None
        if asr is not None or config.asr.enabled:
            from device.recognizer import AsrWorker

            turns = config.turns
            self.asr = AsrWorker((lambda: asr) if asr is not None else (lambda: build_asr(config)),
                                 turn_factory=(lambda: build_turn_model(config))
                                 if turns.semantic_eot and turns.audio_eot else None)
        self._capturing: Optional[str] = None
        # Simulated time waits for the recogniser (as for a user whose words take no time to
        # recognise) on a virtual card not paced by the wall clock; real time never waits.
        self.asr_lockstep = self.backend.simulated
        self._ring: deque[tuple[float, np.ndarray]] = deque()
        # Enough for a question that began before the wake word was detected (see the machine's
        # `wake_question_gap_s`), plus the pre-roll.
        self._ring_s = max(3.0, config.asr.preroll_ms / 1000 + 0.2)
        if self.wakeword is not None or self.asr is not None:
            self.mic.listeners.append(self._on_clean)

        mc, a, tu = config.machine, config.asr, config.turns
        self._wake_on = False  # what the machine lets run (`SetListening`)
        self._asr_on = True
        self._orb = m.Orb.OFFLINE
        self.machine = m.Machine(m.MachineSettings(
            mc.heartbeat_s, config.bargein.enabled, mc.listen_timeout_s, asr=self.asr is not None,
            wake_while_speaking=self.wakeword is not None and config.wakeword.while_speaking,
            end_silence_s=a.end_silence_ms / 1000, max_utterance_s=a.max_utterance_s,
            min_speech_s=a.min_speech_ms / 1000, preroll_s=a.preroll_ms / 1000,
            audio_retry_s=config.audio.retry_s, audio_give_up_s=config.audio.give_up_s,
            wake_word=self.wakeword is not None, optimistic_pause=tu.optimistic_pause,
            min_interruption_s=tu.min_interruption_ms / 1000, semantic_eot=tu.semantic_eot,
            eot_complete_silence_s=tu.eot_complete_silence_ms / 1000,
            eot_command_silence_s=tu.eot_command_silence_ms / 1000,
            eot_incomplete_silence_s=tu.eot_incomplete_silence_ms / 1000, final_from_quick=tu.final_from_quick,
            eot_fast_questions_only=tu.eot_fast_questions_only, final_lead_s=tu.final_lead_ms / 1000))

        # GPIO (optional)
        self.gpio = None
        if config.gpio.enabled:
            from device.gpio import Gpio

            self.gpio = Gpio(gpio_settings(config), self._gpio_q.append, pin_factory=gpio_pin_factory)

        self.link = None
        if connect:
            from device.mqtt import DeviceLink

            self.link = DeviceLink(config.mqtt, config.device.id, self._down_q.append,
                                   on_up=lambda: self._link_q.append(m.LinkUp()),
                                   on_lost=lambda: self._link_q.append(m.LinkDown()))

    # ---- lifecycle ----
    def start(self) -> None:
        if self.asr is not None:
            self.asr.start()
        self.backend.start(self._audio)
        if self.link is not None:
            self.link.start()
        else:  # no broker at all (tests, benchmarks): a link that is always up, whose sends are recorded
            self._dispatch(m.LinkUp())
        self._dispatch(m.Tick())  # the orb and the mic consumers as the machine starts

    def request_stop(self) -> None:
        """Make `serve()` return (safe from a signal handler); then call `stop()`."""
        self._stop.set()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        self.backend.stop()
        self._log_audio_health()
        if self.link is not None:
            self.link.stop()
        if self.asr is not None:
            self.asr.stop(timeout=0.5)  # SIGTERM must end the process within a second, mid-decode too
        if self.gpio is not None:
            self.gpio.close()
            self.gpio = None

    def _log_audio_health(self) -> None:
        """One line on how the card and the echo path behaved: what to look at when barge-in misfires."""
        d = self.mic.delay
        delay = f"{d.delay_s * 1000:.1f} ms" if d.delay_s is not None else "not found"
        log.info("audio: %d output underflows, %d input overflows, %d clock re-anchors; echo delay %s "
                 "(%d estimates, %d jumps), %d loud frames explained as echo, %d over playback not judged "
                 "after a clock step; %d false pauses; mic audio "
                 "analysed up to %.0f ms behind the clock at worst (%d ticks over the turn-end tolerance)",
                 getattr(self.backend, "underflows", 0), getattr(self.backend, "overflows", 0),
                 getattr(self.backend, "clock_resyncs", 0), delay, d.estimates, d.jumps,
                 self.mic.detector.vetoed, self.mic.detector.unsure_frames, self.machine.false_pauses,
                 self.mic_lag_max_s * 1000, self.mic_lag_ticks)

    def serve(self, poll_s: float = 0.005, notifier: Optional[Notifier] = None) -> None:
        """Real-time loop: process queued audio and messages until `stop()` (or a restart request).

        `notifier` (systemd, `Type=notify`): READY=1 after the first broker connection, WATCHDOG=1
        from this loop, so a wedged loop is restarted by systemd."""
        while not self._stop.is_set():
            if self.backend.stepped:
                self.step()
            else:
                self.process()
                time.sleep(poll_s)
            if notifier is not None:
                if self.machine.online:
                    notifier.ready(f"serving as {self.config.device.id}")
                notifier.watchdog()
        if notifier is not None:
            notifier.stopping()

    # ---- harness API (virtual card) ----
    def step(self) -> None:
        assert self.backend.stepped, "step() needs a backend driven by its caller (the virtual card)"
        if self.asr is not None and self.asr_lockstep:
            self.wait_for_asr()
        self.backend.step()
        self.process()

    def wait_for_asr(self, timeout_s: float = 60.0) -> bool:
        """Block (wall time) until the recogniser has caught up; True if it did."""
        if self.asr is None:
            return True
        end = time.monotonic() + timeout_s
        while self.asr.busy or not self.asr.ready.is_set():
            if time.monotonic() > end:
                return False
            time.sleep(0.0005)
        return True

    def run(self, seconds: float) -> None:
        assert self.backend.stepped, "a backend driven by its caller (the virtual card)"
        end = self.backend.time() + seconds
        while self.backend.time() < end - 1e-9:
            self.step()

    def run_until(self, predicate, timeout_s: float, wall_timeout_s: float = 10.0) -> bool:
        """Step simulated time until `predicate()`; gives real MQTT traffic wall time to arrive."""
        assert self.backend.stepped, "a backend driven by its caller (the virtual card)"
        end, wall_end = self.backend.time() + timeout_s, time.monotonic() + wall_timeout_s
        while not predicate():
            if self.backend.time() >= end or time.monotonic() > wall_end:
                return False
            self.step()
            if self.link is not None and not self._down_q:
                time.sleep(0.0005)
        return True

    def inject_text(self, text: str, final: bool = True, hint: Optional[str] = None) -> None:
        """Text mode: an ASR result, as if the recogniser had just produced it."""
        self._dispatch(m.TextHeard(text, final, hint))

    def inject_speech_onset(self, at: Optional[float] = None) -> None:
        self._dispatch(m.SpeechStarted(self._now if at is None else at))

    def wake(self, source: str = "button") -> None:
        self._dispatch(m.WakeDetected(source))

    def talk(self) -> None:
        """The talk button, short press (as if pressed now)."""
        self._dispatch(m.TalkPressed(self._now))

    def cancel(self) -> None:
        """The talk button held (cancel)."""
        self._dispatch(m.CancelPressed(self._now))

    def set_muted(self, muted: bool) -> None:
        self._dispatch(m.MuteSet(muted))
        if self.gpio is not None:
            self.gpio.set_muted(self.machine.muted)

    @property
    def state(self) -> m.State:
        return self.machine.state

    @property
    def asr_busy(self) -> bool:
        """The recogniser has work queued or running (simulated time may wait for it)."""
        return self.asr is not None and (self.asr.busy or bool(self.asr.results))

    # ---- the audio callback: cheap, decides nothing ----
    def _audio(self, mic: np.ndarray, frames: int, times: StreamTimes):
        # Output and input may come in separate calls (`device.audio.base`): either part may be empty.
        pcm, spans = self.playback.render(frames, times.output_dac_time) if frames else (None, ())
        if frames:
            self.mic.played(pcm, times.output_dac_time)
        if len(mic):
            self._mic_q.append((mic.copy(), times.input_adc_time))
        return pcm, spans

    # ---- mic listeners (device loop thread, inside mic.capture) ----
    def _on_clean(self, clean: np.ndarray, t: float) -> None:
        if not self._asr_on:  # the machine says no microphone audio leaves the device (muted, no card)
            self._ring.clear()
            self._wake_last_t = None
            return
        self._ring.append((t, clean))
        while self._ring and self._ring[0][0] < t - self._ring_s:
            self._ring.popleft()
        if self.wakeword is not None and self._wake_on:
            gap = self._wake_last_t is None or t - self._wake_last_t > 0.2
            if gap:
                self.wakeword.reset()  # stale model state from before the pause
            self._wake_last_t = t + len(clean) / self.mic.sample_rate  # the mic path's rate, not the card's
            det = self.wakeword.feed(clean)
            if det is not None:
                log.info("wake word %s (score %.2f)", det.model, det.score)
                # `at`: the audio time the wake word was detected at (the end of this frame). The loop
                # may run behind the audio; the capture must start where the wake word ended, not now.
                self._pending.append(m.WakeDetected("wake_word", round(min(1.0, max(0.0, float(det.score))), 4),
                                                    at=self._wake_last_t))
        if self._capturing is not None and self.asr is not None:
            self.asr.feed(self._capturing, clean)

    # ---- the device loop ----
    def process(self) -> None:
        self._now = self.backend.time()
        failure = self.backend.failure()
        if failure is not None and self.machine.audio_error is None:
            log.error("sound card lost: %s", failure)
            self._dispatch(m.AudioLost(failure))
        while self._link_q:
            self._dispatch(self._link_q.popleft())
        while self._down_q:
            self._apply_down(self._down_q.popleft())
        while self._gpio_q:
            self._apply_gpio(self._gpio_q.popleft())
        if self.asr is not None:
            while self.asr.results:
                self._dispatch(self.asr.results.popleft())
        while self._mic_q:
            pcm, t = self._mic_q.popleft()
            vad = self.mic.capture(pcm, t)
            self._audio_until = t + len(pcm) / self.mic.card_rate
            pending, self._pending = self._pending, []
            for ev in pending:
                self._dispatch(ev)
            for ev in vad:
                if isinstance(ev, v.SpeechOnset):  # once per utterance: what the gate saw (why a barge-in)
                    log.info("speech onset at %.3f; last frames: %s", ev.at,
                              " | ".join(map(str, self.mic.detector.recent)))
                self._dispatch(_VAD_EVENTS[type(ev)](ev))
        for pev in self.playback.poll_events(self._now):
            if isinstance(pev, SegmentEnded):
                self.telemetry.report_lag(self._now - pev.at)
                self._dispatch(m.SegmentFinished(pev.segment, pev.samples))
            elif isinstance(pev, Idle):  # (an idle that a flush caused is due at once: no lag figure)
                self._dispatch(m.PlaybackIdle())
            elif isinstance(pev, SegmentsDropped):
                self._dispatch(m.SegmentsDropped(pev.reason))
        if self.asr is not None and self.asr.error and "asr" not in self.machine.errors:
            self._dispatch(m.ComponentFailed("asr", str(self.asr.error)))
        if self._audio_until is not None:  # how far the mic's analysis trails the clock (device.log)
            lag = self._now - self._audio_until
            self.mic_lag_max_s = max(self.mic_lag_max_s, lag)
            self.mic_lag_ticks += lag > self.machine.settings.audio_lag_tolerance_s
        self._dispatch(m.Tick(self._audio_until))
        self._maybe_telemetry()

    def _maybe_telemetry(self) -> None:
        online = self.machine.online
        if online and not self._was_online:
            self._next_telemetry = self._now  # a fresh connection gets the numbers at once
        self._was_online = online
        iv = self.config.telemetry.interval_s
        if iv <= 0 or not online or self._next_telemetry is None or self._now < self._next_telemetry:
            return
        self._next_telemetry = self._now + iv
        take = getattr(self.link, "take_rtt_ms", None)
        self._send(self.telemetry.snapshot(take() if take else None, self.machine.false_pauses,
                                           self.machine.false_pause_s), qos=0)

    def _apply_gpio(self, ev) -> None:
        from device.gpio import CancelHint, MuteToggled, TalkPressed

        if isinstance(ev, MuteToggled):
            self._dispatch(m.MuteSet(ev.muted))
        elif isinstance(ev, TalkPressed):
            self._dispatch(m.TalkPressed(self._now))
        elif isinstance(ev, CancelHint):
            self._dispatch(m.CancelPressed(self._now))

    def _apply_down(self, down) -> None:
        if isinstance(down, AudioFrame):
            res = self.playback.add_audio(down.segment, down.offset, np.frombuffer(down.pcm, dtype="<i2"), down.last)
            if res not in (ChunkResult.ACCEPTED, ChunkResult.DUPLICATE):
                log.warning("audio frame for segment %d at %d: %s", down.segment, down.offset, res.value)
            return
        if isinstance(down, DashboardCommand):
            log.info("dashboard: %s %s", down.command, down.value)
            if down.command == "mute":
                self.set_muted(down.value == "ON")
            elif down.command == "restart":
                self._dispatch(m.RestartRequested())
            return
        body = down.body if isinstance(down, Envelope) else down
        if isinstance(body, Segment):
            info = SegmentInfo(body.segment, body.samples, body.words, body.bridge_words, body.sample_rate,
                               body.item, body.thread, body.text, prev=body.prev)
            if self.playback.add_segment(info):
                self._dispatch(m.SegmentQueued(body.segment))
        elif isinstance(body, Control):
            self._dispatch(m.ControlReceived(body.action, body.reason, body.disposition))
        elif isinstance(body, EngineState):
            self._dispatch(m.EngineStateReceived(str(body.state), body.held_threads))

    def _dispatch(self, event: m.Event) -> None:
        self._pause_cursor = None
        for cmd in self.machine.handle(event, self._now):
            self._execute(cmd)

    def _cursor_now(self) -> Optional[Cursor]:
        c = self.playback.handed_cursor if self.playback.paused else self.playback.cursor_at(self._now)
        return Cursor(c.segment, c.sample) if c else None

    def _execute(self, cmd: m.Command) -> None:
        EXECUTORS[type(cmd)](self, cmd)  # device/executors.py: one translation per command type

    def _start_capture(self, uid: str, from_s: float, over_speech: bool = False) -> None:
        if self.asr is None:
            return
        self.asr.begin(uid, over_speech)
        self._capturing = uid
        sr = self.mic.sample_rate  # the ring holds the mic path's 16 kHz audio, whatever the card's rate
        for t, pcm in self._ring:  # pre-roll: the audio since `from_s` the mic path already cleaned
            end = t + len(pcm) / sr
            if end <= from_s:
                continue
            skip = max(0, int(round((from_s - t) * sr)))
            if skip < len(pcm):
                self.asr.feed(uid, pcm[skip:])

    def capabilities(self) -> tuple[Capability, ...]:
        caps = []
        if self.wakeword is not None:
            caps.append(Capability.WAKE)
        if self.asr is not None:
            caps.append(Capability.ASR)
        if self.config.aec.backend != "none":
            caps.append(Capability.AEC)
        caps.append(Capability.VAD)
        if self.gpio is not None:
            if self.gpio.orb is not None:
                caps.append(Capability.GPIO)
            if self.gpio.mute_button is not None or self.gpio.talk_button is not None:
                caps.append(Capability.BUTTON)
        return tuple(caps)

    # ---- the orb ----
    def orb_state(self) -> str:
        """What the orb shows (`device.gpio.OrbState` names), as the machine last said."""
        return self._orb.value

    def _send(self, body, qos: int = 1, retain: bool = False) -> None:
        """Publish (the machine only asks while the link is up)."""
        self.sent.append(body)
        if self.link is not None:
            self.link.send(body, qos=qos, retain=retain)


# The mic path's VAD events as the machine's events.
_VAD_EVENTS = {
    v.SpeechOnset: lambda ev: m.SpeechStarted(ev.at), v.SpeechOffset: lambda ev: m.SpeechEnded(ev.at),
    v.SpeechSuspect: lambda ev: m.SpeechSuspected(ev.at), v.SpeechDismiss: lambda ev: m.SpeechDismissed(ev.at, ev.frames),
    v.SpeechPause: lambda ev: m.SpeechPaused(ev.at), v.SpeechResume: lambda ev: m.SpeechResumed(ev.at),
}
