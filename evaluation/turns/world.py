"""One column's world for `segue-bench turns`: the real server and the real device, in real time.

As in the audio-mode harness (`evaluation.harness.world`): `ServerApp` (engine, openai streaming
client, piper TTS, MQTT) and `DeviceApp` (its real resampler, echo canceller, VAD, state machine,
playback and, unlike the harness, its *own* recogniser: `[asr] backend = faster-whisper` on its worker
thread, captures opened and closed by the device's state machine) in one process through a real
Mosquitto, on the virtual sound card, whose clock is the engine's clock too. Two differences from
the harness, both because compute time is what this bench measures:

- the card is paced at exactly 1x the wall clock (`PacedClock(1.0)`), and
- simulated time never waits for the recogniser (`DeviceApp.asr_lockstep = False`): a Whisper pass
  that takes 400 ms of CPU takes 400 ms of the card's time, as on a real device.

What gets recorded (all on the card's clock): every body the device publishes (`sent`), every
machine command it executes (`commands`), the engine's dispositions (`dispositions`), and the user's
speech intervals (`speech`). What played is on the card's ear tap (`card.ear`).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from device import machine as dm
from device.aec import AecSettings
from device.app import DeviceApp
from device.audio.virtual import VirtualCard, VirtualCardSettings
from device.config import AsrConfig, AudioSettings, DeviceConfig, DeviceIdentity, MachineConfig
from device.config import MqttSettings as DeviceMqtt
from device.vad import VadSettings
from evaluation.clock import PacedClock
from evaluation.scenario import AudioSpec
from evaluation.turns.columns import Column, baseline_segmenter

log = logging.getLogger("segue.bench.turns")


# What the virtual card models is a scenario's `audio:` block (`evaluation.scenario.AudioSpec`); the
# bench sets its echo and latency from the command line.
CardSpec = AudioSpec


class TurnWorld:
    """Start with `open()` (a context manager); drive with `run_until` / `run_for`; `close()` ends it."""

    def __init__(self, col: Column, broker_url: str, llm_url: str, card: CardSpec, seed: int = 0) -> None:
        self.col, self.broker_url, self.llm_url, self.spec, self.seed = col, broker_url, llm_url, card, seed
        self.sent: list[tuple[float, Any]] = []
        self.commands: list[tuple[float, Any]] = []
        self.dispositions: list[tuple[float, Any]] = []
        self.segment_item: dict[int, str] = {}  # segment -> the reply (item) it belongs to
        self.segment_sent: list[tuple[float, int]] = []  # (engine sent it, segment): synthesis done
        self.speech: list[tuple[float, float]] = []  # (first, last) loud user sample times
        self.max_lag_s, self.late_steps, self.steps = 0.0, 0, 0  # how well real time was kept
        self._stack = ExitStack()

    # -- set-up --------------------------------------------------------------------------------
    def _server_settings(self, topic_root: str) -> Any:
        from server.config import apply_broker_url, load

        base = load(None, env={})
        mqtt = dataclasses.replace(apply_broker_url(base.mqtt, self.broker_url), topic_root=topic_root,
                                   group=f"turns-{secrets.token_hex(3)}")
        engine = self.col.apply("engine", base.engine)
        if self.col.name == "baseline":
            engine = baseline_segmenter(engine)
        return dataclasses.replace(
            base, mqtt=mqtt, tick_s=0.01, engine=engine,
            llm=dataclasses.replace(base.llm, base_url=self.llm_url, model="scripted", timeout_s=60.0),
            tts=dataclasses.replace(base.tts, backend="piper"),
            storage=dataclasses.replace(base.storage, backend="memory"),
        )

    def _device_config(self, topic_root: str, device_id: str) -> DeviceConfig:
        from urllib.parse import urlsplit

        url, c = urlsplit(self.broker_url), self.spec
        return DeviceConfig(
            mqtt=DeviceMqtt(host=url.hostname or "127.0.0.1", port=url.port or 1883, topic_root=topic_root),
            device=DeviceIdentity(id=device_id, software="segue-bench-turns"),
            audio=AudioSettings(backend="virtual", sample_rate=c.sample_rate, buffer_ms=c.buffer_ms,
                                output_latency_ms=c.output_latency_ms, jitter_ms=c.jitter_ms,
                                echo_gain=c.echo_gain, echo_delay_ms=c.echo_delay_ms, seed=self.seed,
                                realtime=False),
            aec=AecSettings(backend="speex"),
            vad=self.col.apply("vad", VadSettings()),
            machine=self.col.apply("machine", MachineConfig(heartbeat_s=1.0)),
            asr=self.col.apply("asr_config", AsrConfig(backend="faster-whisper")),
        )

    def _recogniser(self, cfg: DeviceConfig) -> Any:
        from device.parts import build_asr

        asr = build_asr(cfg)
        settings = getattr(asr, "settings", None)
        if settings is not None and dataclasses.is_dataclass(settings):
            asr.settings = self.col.apply("whisper", settings)
        else:
            self.col.missing += [f"whisper.{f}={v}" for where, f, v in self.col.knobs if where == "whisper"]
        return asr

    def open(self) -> "TurnWorld":
        from server.app import ServerApp

        s = self.spec
        self.card = VirtualCard(VirtualCardSettings(
            sample_rate=s.sample_rate, buffer_ms=s.buffer_ms, output_latency_ms=s.output_latency_ms,
            jitter_ms=s.jitter_ms, echo_gain=s.echo_gain, echo_delay_ms=s.echo_delay_ms, seed=self.seed))
        topic_root = f"segue-turns-{secrets.token_hex(4)}"
        self.device_id = f"turns-{self.col.name}-{secrets.token_hex(3)}"
        self.server = ServerApp(self._server_settings(topic_root), clock=self.card.time)
        self.server.engine.observers.append(self._observe)
        self.server.start()
        self._stack.callback(self.server.stop)
        cfg = self._device_config(topic_root, self.device_id)
        self.device = DeviceApp(cfg, backend=self.card, connect=True, asr=self._recogniser(cfg))
        self._patch_machine()
        self.col.settle()
        self.device.asr_lockstep = False  # the recogniser's compute time is part of what is measured
        self._hook_device()
        self.device.start()
        self._stack.callback(self.device.stop)
        self.clock = PacedClock(1.0)
        wall_end = time.monotonic() + 60
        assert self.device.asr is not None
        while not (self.device.asr.ready.is_set() and self.engine_state() != "offline"):
            if time.monotonic() > wall_end:
                raise TimeoutError("the device did not come online (broker, engine or recogniser) within 60 s")
            self.clock.restart(self.card.time())
            self.device.step()
            time.sleep(0.02)
        if self.device.asr.error:
            raise RuntimeError(f"the device's recogniser failed to load: {self.device.asr.error}")
        self.clock.restart(self.card.time())
        return self

    def _patch_machine(self) -> None:
        """Machine knobs the device app does not take from its config (yet): set them on the machine."""
        machine = self.device.machine
        machine.settings = self.col.apply("machine", machine.settings)

    def _hook_device(self) -> None:
        dev = self.device
        send, execute = dev._send, dev._execute

        def _send(body: Any, qos: int = 1, retain: bool = False) -> None:
            self.sent.append((self.card.time(), body))
            send(body, qos, retain)

        def _execute(cmd: Any) -> None:
            if isinstance(cmd, (dm.PausePlayback, dm.ResumePlayback, dm.FlushPlayback, dm.FinishCapture)):
                self.commands.append((self.card.time(), cmd))
            execute(cmd)

        dev._send = _send  # type: ignore[method-assign]  # observe what the device publishes, when
        dev._execute = _execute  # type: ignore[method-assign]

    def _observe(self, _dev: Any, cmd: Any) -> None:
        from icp import commands as C

        if isinstance(cmd, C.DispositionApplied):
            self.dispositions.append((self.card.time(), cmd))
        elif isinstance(cmd, C.SendSegment):
            self.segment_item[cmd.segment.segment] = cmd.segment.item
            self.segment_sent.append((self.card.time(), cmd.segment.segment))

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> "TurnWorld":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- views ---------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.card.time()

    def engine_state(self) -> str:
        dev = self.server.engine.devices.get(self.device_id)
        return dev.session.state.value if dev else "offline"

    def agent_quiet(self) -> bool:
        """Idle engine, nothing to play, an idle device. (Not "no engine deadline": a cancel leaves some
        for many seconds; `settle`'s quiet time outlasts the one that speaks, the auto-resume.)"""
        return self.engine_state() == "idle" and not self.device.playback.has_queued() \
            and self.device.state is dm.State.IDLE

    # -- acting --------------------------------------------------------------------------------
    def say(self, pcm: np.ndarray, at: float | None = None, level: int = 300) -> tuple[float, float]:
        """Mix the user's speech into the mic from `at` (default: the next buffer); returns the times of
        its first and last loud samples (|x| > level), the user's speech as a listener would time it."""
        sr = self.card.sample_rate
        start = max(self.now + self.spec.buffer_ms / 1000, at if at is not None else 0.0)
        first = self.card.add_mic(pcm, at_s=start)
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > level)
        a = (first + (int(loud[0]) if len(loud) else 0)) / sr
        b = (first + (int(loud[-1]) if len(loud) else len(pcm) - 1)) / sr
        self.speech.append((a, b))
        return a, b

    def resume(self) -> None:
        """Take up real time again after this world stood still (the other column ran)."""
        self.clock.restart(self.card.time())

    def step_realtime(self) -> None:
        """Advance the card to where the wall clock says it may be (never ahead of it)."""
        target = self.clock.target()
        batch = 0
        while self.card.time() < target and batch < 50:
            self.device.step()
            batch += 1
        lag = self.clock.target() - self.card.time()  # > 0: the loop is behind real time
        self.max_lag_s = max(self.max_lag_s, lag)
        self.late_steps += lag > 0.1
        self.steps += 1
        wait = self.clock.wall_until(self.card.time() + self.card.frames_per_buffer / self.card.sample_rate)
        if wait > 0:
            # Between two buffers the device does what `DeviceApp.serve` does on a real card every 5 ms:
            # applies the engine's messages and the recogniser's results as they arrive, so a resume
            # reaches the next buffer rendered. (Stepping alone applied them only after the next buffer
            # was rendered: one buffer late, 20 ms, for every command from the engine.)
            self.device.process()
            time.sleep(min(wait, 0.005))

    def run_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        end = self.now + timeout_s
        while not predicate():
            if self.now >= end:
                return False
            self.step_realtime()
        return True

    def run_for(self, seconds: float) -> None:
        end = self.now + seconds
        self.run_until(lambda: self.now >= end, seconds + 1.0)

    def settle(self, timeout_s: float = 20.0, quiet_s: float = 1.5) -> bool:
        """Until the agent has been quiet for `quiet_s` (cancelling with the talk button's hold if it goes
        on). 1.5 s: a final the engine has not answered yet must not leak its reply into the next trial."""
        quiet_since: list[float | None] = [None]

        def quiet() -> bool:
            if not self.agent_quiet():
                quiet_since[0] = None
                return False
            if quiet_since[0] is None:
                quiet_since[0] = self.now
            return self.now - quiet_since[0] >= quiet_s

        if self.run_until(quiet, timeout_s):
            return True
        for _ in range(3):
            self.device.cancel()
            if self.run_until(quiet, 6.0):
                return True
        return False


def broker_and_llm(stack: ExitStack, rules: list[dict[str, Any]], first_token_s: float,
                   chunk_delay_s: float) -> tuple[str, Any]:
    """A Mosquitto and the scripted OpenAI-compatible server, closed with `stack`."""
    from evaluation.broker import Mosquitto
    from evaluation.openai_server import ScriptedLLMServer

    tmp = stack.enter_context(tempfile.TemporaryDirectory())
    broker = stack.enter_context(Mosquitto(Path(tmp) / "broker"))
    llm = stack.enter_context(ScriptedLLMServer(rules, chunk_delay_s=chunk_delay_s,
                                                first_token_delay_s=first_token_s))
    return broker.url, llm
