"""One scenario run: the real server and the real device in one process, through a real broker.

The server (`server.app.ServerApp`: engine loop, openai streaming client, espeak TTS, MQTT) runs its
threads in real time with the virtual card's time as its clock; the device (`device.app.DeviceApp`)
plays on the virtual card, which this loop steps sample-accurately, paced to `speed` x the wall
clock (see `evaluation.clock`). Between buffers the loop releases delayed network messages, applies
outages and lets the virtual user act. What happened is recorded in a `Trace`.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from device import machine as dm
from device.app import DeviceApp
from device.aec import AecSettings
from device.audio.virtual import VirtualCard, VirtualCardSettings
from device.config import AudioSettings, DeviceConfig, DeviceIdentity, MachineConfig
from device.config import MqttSettings as DeviceMqtt
from evaluation.clock import PacedClock
from evaluation.harness.ear import EarIndex
from evaluation.harness.external import WireEngine
from evaluation.harness.net import FaultyLink
from evaluation.harness.trace import LlmRequest, Trace
from evaluation.harness.user import AudioVoice, TextVoice, VirtualUser
from evaluation.openai_server import ScriptedLLMServer
from evaluation.scenario import Scenario
from icp.conversation import AssistantItem
from server.app import ServerApp
from server.config import ServerSettings, apply_broker_url, load
from urllib.parse import urlsplit

log = logging.getLogger("segue.eval")

STRATEGIES = ("icp", "cancel-restart", "truncate-clear", "generated-as-heard")
MODES = ("text", "audio")


@dataclass(frozen=True)
class RunOptions:
    broker_url: str
    mode: str = "text"
    strategy: str = "icp"
    llm_base_url: str | None = None
    llm_model: str = "scripted"
    speed: float = 8.0  # simulated seconds per wall second
    words_per_s: float = 2.5  # the virtual user's speaking rate
    reaction_s: float = 0.3  # the user starts this long after the reply is done
    turn_timeout_s: float = 120.0  # simulated seconds a turn's condition may take
    settle_timeout_s: float = 120.0  # after the last turn: until the agent is done
    device_id: str = ""  # empty: a fresh id per run (the MQTT client id derives from it, so runs never collide)
    record_dir: str | None = None  # --record: DIR/<scenario>/ ear.wav, mic.wav, requests.jsonl, mqtt.jsonl, logs
    on_event: Callable[[str], None] | None = None  # live narration (the demo)
    # "external": no engine here; the device talks to whatever serves the broker, on `topic_root`
    # ("segue" unless given), in real time (`evaluation.harness.external`)
    engine: str = "local"
    topic_root: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}")
        if self.engine not in ("local", "external"):
            raise ValueError("engine must be local or external")


def server_settings(options: RunOptions, base_url: str, topic_root: str) -> ServerSettings:
    base = load(None, env={})
    mqtt = dataclasses.replace(apply_broker_url(base.mqtt, options.broker_url), topic_root=topic_root,
                               group=f"eval-{secrets.token_hex(3)}")
    return dataclasses.replace(
        base, strategy=options.strategy, mqtt=mqtt, tick_s=0.01,
        llm=dataclasses.replace(base.llm, base_url=base_url, model=options.llm_model, timeout_s=120.0),
        tts=dataclasses.replace(base.tts, backend="espeak"),
        storage=dataclasses.replace(base.storage, backend="memory"),
    )


def device_config(scenario: Scenario, options: RunOptions, topic_root: str) -> DeviceConfig:
    url = urlsplit(options.broker_url)
    a = scenario.audio
    return DeviceConfig(
        mqtt=DeviceMqtt(host=url.hostname or "127.0.0.1", port=url.port or 1883, topic_root=topic_root,
                        username=url.username, password=url.password),
        device=DeviceIdentity(id=options.device_id, software="segue-eval"),
        audio=AudioSettings(backend="virtual", sample_rate=a.sample_rate, buffer_ms=a.buffer_ms,
                            output_latency_ms=a.output_latency_ms, jitter_ms=a.jitter_ms,
                            echo_gain=a.echo_gain if options.mode == "audio" else 0.0,
                            echo_delay_ms=a.echo_delay_ms, seed=scenario.seed, realtime=False),
        # Text mode has no voice at the mic, so the echo canceller has nothing to do.
        aec=AecSettings(backend="speex" if options.mode == "audio" else "none"),
        machine=MachineConfig(heartbeat_s=1.0),
    )


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError(f"{what} within {timeout_s:.0f} s")
        time.sleep(0.01)


def run_scenario(scenario: Scenario, options: RunOptions) -> Trace:
    """Run one scenario end to end; never raises for what happens inside the run (see `trace.errors`)."""
    wall0 = time.monotonic()
    if not options.device_id:
        options = dataclasses.replace(options, device_id=f"eval-{secrets.token_hex(4)}")
    a = scenario.audio
    card = VirtualCard(VirtualCardSettings(
        sample_rate=a.sample_rate, buffer_ms=a.buffer_ms, output_latency_ms=a.output_latency_ms,
        jitter_ms=a.jitter_ms, echo_gain=a.echo_gain if options.mode == "audio" else 0.0,
        echo_delay_ms=a.echo_delay_ms, seed=scenario.seed))
    external = options.engine == "external"
    topic_root = options.topic_root or ("segue" if external else f"segue-eval-{secrets.token_hex(4)}")
    base = load(None, env={})
    trace = Trace(scenario.name, options.strategy, options.mode, base.engine.heard_threshold, a.sample_rate,
                  a.output_latency_ms / 1000.0, EarIndex(card.ear), narrate=options.on_event)
    say = options.on_event or (lambda _text: None)
    with ExitStack() as stack:
        llm: ScriptedLLMServer | None = None
        server: ServerApp | None = None
        wire = WireEngine(trace) if external else None
        if wire is None:
            if options.llm_base_url is None:
                llm = ScriptedLLMServer(scenario.llm_rules() or [{"default": "Okay."}]).start()
                stack.callback(llm.stop)
            base_url = options.llm_base_url or (llm.base_url if llm else "")
            server = ServerApp(server_settings(options, base_url, topic_root), clock=card.time)
            server.engine.observers.append(lambda _dev, cmd: trace.record(card.time(), cmd))
            server.start()
            stack.callback(server.stop)
            say(f"server up (strategy {options.strategy}, LLM {base_url}, espeak TTS)")
        else:
            say(f"engine external: whatever serves {options.broker_url} on topic root {topic_root}")

        cfg = device_config(scenario, options, topic_root)
        if options.record_dir:
            from evaluation.live.record import Recording

            recording = Recording(options, scenario.name, topic_root, options.device_id)
            stack.callback(recording.close)
            stack.callback(lambda: recording.save(card, llm, trace))
        device = DeviceApp(cfg, backend=card, connect=False)
        net = scenario.network

        def deliver(down: Any) -> None:
            if wire is not None:
                wire.down(card.time(), down)
            device._down_q.append(down)

        link = FaultyLink(cfg.mqtt, cfg.device.id, deliver, clock=card.time,
                          delay_ms=net.delay_ms, drop_heartbeats=net.drop_heartbeats, seed=scenario.seed,
                          on_up=lambda: device._link_q.append(dm.LinkUp()),
                          on_lost=lambda: device._link_q.append(dm.LinkDown()))
        device.link = link
        if wire is not None:
            link.send = _tapped(link.send, lambda body: wire.up(card.time(), body))  # type: ignore[method-assign]
        device.start()
        stack.callback(device.stop)

        def engine_state() -> str:
            if wire is not None:
                return wire.state
            assert server is not None
            dev = server.engine.devices.get(options.device_id)
            return dev.session.state.value if dev else "offline"

        def session() -> Any:
            if wire is not None:
                return wire
            assert server is not None
            return server.engine.devices[options.device_id].session

        try:
            _wait(lambda: link.connected.is_set(), 10, "the device did not connect to the broker")
            while engine_state() == "offline":  # the hello must reach the engine
                link.pump(float("inf"))  # simulated time has not started: nothing is late yet
                device.process()
                time.sleep(0.01)
                if time.monotonic() - wall0 > 15:
                    raise TimeoutError("the engine did not see the device's hello within 15 s"
                                       + (f" (no engine_state on topic root {topic_root!r}: is a segue-server "
                                          f"serving {options.broker_url} there?)" if external else ""))
        except TimeoutError as exc:
            trace.errors.append(str(exc))
            return trace
        say(f"device {options.device_id} online on the virtual sound card; the conversation starts")
        voice = AudioVoice(device, card, a.sample_rate) if options.mode == "audio" else TextVoice(device)
        user = VirtualUser(scenario, options, trace, device, engine_state, voice, session)
        clock = PacedClock(options.speed)
        clock.restart(card.time())
        outage = net.disconnect_at_s
        restore = None if outage is None or net.reconnect_after_s is None else outage + net.reconnect_after_s
        try:
            while not user.finished:
                target = clock.target()
                batch = 0
                while card.time() < target and batch < 50 and not user.finished and not voice.busy():
                    now = card.time()
                    if outage is not None and now >= outage:
                        outage = None  # one outage per scenario
                        link.suspend()
                        trace.notes.append(f"network down at {now:.2f} s")
                    if restore is not None and now >= restore and link.suspended:
                        link.restore()
                        restore = None
                        trace.notes.append(f"network back at {now:.2f} s")
                    link.pump(now)
                    device.step()
                    trace.ear.update()
                    user.step(card.time())
                    batch += 1
                if (voice.busy() or (server is not None and server.engine.classifying)) and not external:
                    # The recogniser or the engine's classifier is working: simulated time waits for it (at
                    # --speed 10 the engine's 3 s classify timeout is 0.3 s of wall time, which a loaded
                    # machine can miss: likely how a full suite run once ABSORBed a side question). An
                    # external engine keeps the wall clock's time: the device falls behind instead.
                    time.sleep(0.002)
                    clock.restart(card.time())
                    continue
                wait = clock.wall_until(card.time() + card.frames_per_buffer / card.sample_rate)
                if wait > 0:
                    time.sleep(min(wait, 0.005))
        except Exception as exc:  # a harness or component bug: report it, do not hide it
            log.exception("scenario %s failed", scenario.name)
            trace.errors.append(f"harness: {type(exc).__name__}: {exc}")
        trace.end = card.time()
        if wire is not None:
            wire.finish()
            trace.wall_s = time.monotonic() - wall0
            return trace
        assert server is not None
        dev = server.engine.devices.get(options.device_id)
        if dev is not None:  # the generated timeline, read once the run is over
            for entry in list(dev.session.conv.log):
                if isinstance(entry, AssistantItem):
                    trace.items[entry.id] = (entry.thread, entry.text)
        if server.engine.counters.get("internal_error"):
            trace.errors.append(f"engine: {server.engine.counters['internal_error']} internal errors (see log)")
        if llm is not None:
            trace.llm_requests = _requests(trace, llm)
        else:
            trace.llm_requests = [LlmRequest(t, list(g.messages)) for t, g in trace.generations]
    trace.wall_s = time.monotonic() - wall0
    return trace


def _tapped(send: Callable[..., bool], tap: Callable[[Any], None]) -> Callable[..., bool]:
    """`send`, telling `tap` each body first (what the device said, for `WireEngine`)."""
    def tapped(body: Any, qos: int = 1, retain: bool = False) -> bool:
        tap(body)
        return send(body, qos, retain)
    return tapped


def _requests(trace: Trace, llm: ScriptedLLMServer) -> list[LlmRequest]:
    """The chat requests that reached the endpoint, timed by the engine's StartGeneration."""
    pending = list(trace.generations)
    out = []
    for req in llm.requests:
        if not req.path.endswith("/chat/completions"):
            continue
        at = next((i for i, (_, g) in enumerate(pending) if list(g.messages) == req.messages), None)
        when = pending.pop(at)[0] if at is not None else trace.end
        out.append(LlmRequest(when, req.messages))
    return out
