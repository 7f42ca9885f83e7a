"""The device process: wires an audio backend, playback, the mic path, the state machine and MQTT.

Callbacks only translate: the audio callback renders playback and queues the mic buffer; the MQTT
thread queues validated down messages (audio goes straight into the thread-safe playback queue).
`process()` drains both, turns what happened into machine events and executes the machine's
commands. Under a real sound card `serve()` calls it every few ms; under the virtual card a harness
calls `step()`/`run()` and everything happens in simulated time, in order, deterministically.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Optional

import numpy as np

from device import machine as m
from device.audio.base import AudioBackend, StreamTimes
from device.audio.virtual import VirtualCard, VirtualCardSettings
from device.bargein import MicPath
from device.config import AudioSettings, DeviceConfig
from device.playback import ChunkResult, Idle, Playback, PlaybackSettings, SegmentEnded, SegmentInfo, SegmentsDropped
from device.vad import SpeechOffset, SpeechOnset
from icp.messages import (AudioFrame, Capability, Control, Cursor, DeviceState, DeviceStatus, EngineState, Envelope,
                          Hello, Interrupt, PlaybackEvent, PlaybackReport, Segment, Utterance, Wake, WakeSource)

log = logging.getLogger(__name__)


def make_backend(audio: AudioSettings) -> AudioBackend:
    if audio.backend == "virtual":
        return VirtualCard(VirtualCardSettings(
            sample_rate=audio.sample_rate, buffer_ms=audio.buffer_ms, output_latency_ms=audio.output_latency_ms,
            jitter_ms=audio.jitter_ms, echo_gain=audio.echo_gain, echo_delay_ms=audio.echo_delay_ms, seed=audio.seed,
        ), realtime=audio.realtime)
    if audio.backend == "portaudio":
        from device.audio.portaudio import PortAudioBackend, PortAudioSettings

        return PortAudioBackend(PortAudioSettings(audio.sample_rate, audio.buffer_ms, audio.input_device,
                                                  audio.output_device))
    raise ValueError(f"unknown audio backend {audio.backend!r} (portaudio, virtual)")


class DeviceApp:
    def __init__(self, config: DeviceConfig, backend: Optional[AudioBackend] = None, connect: bool = True) -> None:
        self.config = config
        self.backend = backend or make_backend(config.audio)
        sr = self.backend.sample_rate
        self.playback = Playback(PlaybackSettings(sample_rate=sr))
        self.mic = MicPath(sr, config.aec, config.vad, config.bargein)
        self.machine = m.Machine(m.MachineSettings(config.machine.heartbeat_s, config.bargein.enabled,
                                                   config.machine.listen_timeout_s))
        self._mic_q: deque[tuple[np.ndarray, float]] = deque(maxlen=500)
        self._down_q: deque = deque()
        self._link_q: deque[m.Event] = deque()
        self._pause_cursor: Optional[Cursor] = None
        self._held_threads = 0
        self._now = 0.0
        self._stop = threading.Event()
        self.sent: deque[object] = deque(maxlen=1000)  # bodies published (or that would have been, offline)
        self.link = None
        if connect:
            from device.mqtt import DeviceLink

            self.link = DeviceLink(config.mqtt, config.device.id, self._down_q.append,
                                   on_up=lambda: self._link_q.append(m.LinkUp()),
                                   on_lost=lambda: self._link_q.append(m.LinkDown()))

    # ---- lifecycle ----
    def start(self) -> None:
        self.backend.start(self._audio)
        if self.link is not None:
            self.link.start()

    def stop(self) -> None:
        self._stop.set()
        self.backend.stop()
        if self.link is not None:
            self.link.stop()

    def serve(self, poll_s: float = 0.005) -> None:
        """Real-time loop: process queued audio and messages until `stop()`."""
        while not self._stop.is_set():
            if isinstance(self.backend, VirtualCard):
                self.step()
            else:
                self.process()
                time.sleep(poll_s)

    # ---- harness API (virtual card) ----
    def step(self) -> None:
        assert isinstance(self.backend, VirtualCard), "step() needs the virtual card"
        self.backend.step()
        self.process()

    def run(self, seconds: float) -> None:
        assert isinstance(self.backend, VirtualCard)
        end = self.backend.time() + seconds
        while self.backend.time() < end - 1e-9:
            self.step()

    def run_until(self, predicate, timeout_s: float, wall_timeout_s: float = 10.0) -> bool:
        """Step simulated time until `predicate()`; gives real MQTT traffic wall time to arrive."""
        assert isinstance(self.backend, VirtualCard)
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

    @property
    def state(self) -> m.State:
        return self.machine.state

    # ---- the audio callback: cheap, decides nothing ----
    def _audio(self, mic: np.ndarray, frames: int, times: StreamTimes):
        pcm, spans = self.playback.render(frames, times.output_dac_time)
        self.mic.played(pcm, times.output_dac_time)
        self._mic_q.append((mic.copy(), times.input_adc_time))
        return pcm, spans

    # ---- the device loop ----
    def process(self) -> None:
        self._now = self.backend.time()
        while self._link_q:
            self._dispatch(self._link_q.popleft())
        while self._down_q:
            self._apply_down(self._down_q.popleft())
        while self._mic_q:
            pcm, t = self._mic_q.popleft()
            for ev in self.mic.capture(pcm, t):
                if isinstance(ev, SpeechOnset):
                    self._dispatch(m.SpeechStarted(ev.at))
                elif isinstance(ev, SpeechOffset):
                    self._dispatch(m.SpeechEnded(ev.at))
        for pev in self.playback.poll_events(self._now):
            if isinstance(pev, SegmentEnded):
                self._dispatch(m.SegmentFinished(pev.segment, pev.samples))
            elif isinstance(pev, Idle):
                self._dispatch(m.PlaybackIdle())
            elif isinstance(pev, SegmentsDropped) and pev.reason == "gap":
                self._dispatch(m.SegmentsDropped(pev.reason))
        self._dispatch(m.Tick())

    def _apply_down(self, down) -> None:
        if isinstance(down, AudioFrame):
            res = self.playback.add_audio(down.segment, down.offset, np.frombuffer(down.pcm, dtype="<i2"), down.last)
            if res not in (ChunkResult.ACCEPTED, ChunkResult.DUPLICATE):
                log.warning("audio frame for segment %d at %d: %s", down.segment, down.offset, res.value)
            return
        body = down.body if isinstance(down, Envelope) else down
        if isinstance(body, Segment):
            info = SegmentInfo(body.segment, body.samples, body.words, body.bridge_words, body.sample_rate,
                               body.item, body.thread, body.text)
            if self.playback.add_segment(info):
                self._dispatch(m.SegmentQueued(body.segment))
        elif isinstance(body, Control):
            self._dispatch(m.ControlReceived(str(body.action), body.reason))
        elif isinstance(body, EngineState):
            self._held_threads = body.held_threads

    def _dispatch(self, event: m.Event) -> None:
        for cmd in self.machine.handle(event, self._now):
            self._execute(cmd)

    def _cursor_now(self) -> Optional[Cursor]:
        c = self.playback.handed_cursor if self.playback.paused else self.playback.cursor_at(self._now)
        return Cursor(c.segment, c.sample) if c else None

    def _execute(self, cmd: m.Command) -> None:
        pb = self.playback
        if isinstance(cmd, m.PausePlayback):
            c = pb.pause()
            self._pause_cursor = Cursor(c.segment, c.sample) if c else None
        elif isinstance(cmd, m.ResumePlayback):
            pb.resume()
        elif isinstance(cmd, m.FlushPlayback):
            pb.flush()
            pb.poll_events()  # the flush is reported by the machine's own `flushed`
        elif isinstance(cmd, m.SendInterrupt):
            self._send(Interrupt(cmd.utterance_id, self._pause_cursor, max(0.0, cmd.onset_s * 1000), cmd.hint))
        elif isinstance(cmd, m.SendUtterance):
            self._send(Utterance(cmd.utterance_id, cmd.final, cmd.text, None, cmd.hint))
        elif isinstance(cmd, m.SendWake):
            self._send(Wake(WakeSource(cmd.source), cmd.score))
        elif isinstance(cmd, m.SendPlayback):
            cursor = Cursor(*cmd.cursor) if cmd.cursor else self._cursor_now()
            report = PlaybackReport(PlaybackEvent(cmd.event), cursor, pb.queued_ms(self._now), self._now * 1000)
            self._send(report, qos=0 if cmd.event == "heartbeat" else 1)
        elif isinstance(cmd, m.SendState):
            status = DeviceStatus.MUTED if cmd.muted else DeviceStatus(cmd.state.value)
            self._send(DeviceState(status, cmd.muted, self._held_threads), retain=True)
        elif isinstance(cmd, m.SendHello):
            caps = (Capability.AEC, Capability.VAD) if self.config.aec.backend != "none" else (Capability.VAD,)
            self._send(Hello(self.backend.sample_rate, caps, self.config.device.software))

    def _send(self, body, qos: int = 1, retain: bool = False) -> None:
        self.sent.append(body)
        if self.link is not None and self.machine.online:
            self.link.send(body, qos=qos, retain=retain)
