"""One scenario in live mode: real processes, real time, a real sound server, the verdict from recordings.

    PulseAudio (evaluation.live.room)  <- started here, private socket
    Mosquitto                          <- `evaluation.broker` (or --broker)
    scripted LLM / recording proxy     <- requests.jsonl (none with --engine external)
    segue-server --config server.toml  <- a process (not with --engine external)
    segue-device --config device.toml  <- a process: PortAudio over ALSA's pulse plugin, AEC, VAD,
                                          barge-in, wake word, faster-whisper
    the ear, the mic                   <- parec of the speaker's and the room's monitors
    the wire                           <- an MQTT client of its own on <root>/<id>/#
    the user                           <- synthesised voice played into the room

Nothing in this module reads the engine's or the device's memory: they run in other processes.
`run_live` returns a `LiveRun` with the trace (built from the wire, the ear and the endpoint) and
what the room really was; `evaluation.live.verdict` turns it into the documented report.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
import time
import wave
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.harness.trace import Trace
from evaluation.live.ear import LiveEarIndex
from evaluation.live.procs import Proc, device_toml, program, server_toml
from evaluation.live.room import EchoPath, Room
from evaluation.live.user import LiveUser, Spoken
from evaluation.live.wire import WireTap
from evaluation.scenario import Scenario

log = logging.getLogger("segue.eval.live")

HEARD_THRESHOLD = 0.5  # the documented default of [engine] heard_threshold (not read from the engine)


@dataclass(frozen=True)
class LiveOptions:
    broker_url: str
    strategy: str = "icp"
    engine: str = "local"  # local: start segue-server here | external: whatever serves --broker
    topic_root: str | None = None  # None: a fresh root per run (local), "segue" (external)
    device_id: str = ""  # empty: a fresh id per run
    llm_base_url: str | None = None
    llm_model: str = "scripted"
    record_dir: str | None = None
    startup_timeout_s: float = 60.0
    on_progress: Any = None  # callable(str) for progress lines


@dataclass
class LiveRun:
    scenario: Scenario
    trace: Trace
    ear: LiveEarIndex
    ear_pcm: np.ndarray
    mic_pcm: np.ndarray
    mic_offset: float  # ear time of mic sample 0
    spoken: list[Spoken]
    ear_t0: float
    echo: EchoPath | None
    requests_seen: bool  # False: the endpoint is not the harness's, phantom/lost cannot be counted
    requests_note: str = ""
    llm_replies: list[str] = field(default_factory=list)
    wire_events: list[Any] = field(default_factory=list)
    device_stream: dict[str, str] = field(default_factory=dict)  # PulseAudio's view of the device's streams
    stop_times: dict[str, float | None] = field(default_factory=dict)
    record_dir: Path | None = None
    wall_s: float = 0.0
    segment_pcm: dict[int, np.ndarray] = field(default_factory=dict)  # the PCM the wire carried


def _write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def _voice() -> Any:
    try:
        from evaluation.harness.voice import synthesize_user

        return synthesize_user
    except ImportError:  # the other voice module is not there: espeak-ng, a voice other than the agent's
        from server.tts.espeak import EspeakTTS

        tts = EspeakTTS(voice="en-us+m3", sample_rate=16000)

        def speak(text: str, rate: int) -> np.ndarray:
            pcm = np.frombuffer(tts.synthesise(text).pcm, dtype="<i2")
            if rate != 16000:
                import soxr

                pcm = np.clip(soxr.resample(pcm.astype(np.float32), 16000, rate), -32768, 32767).astype(np.int16)
            return pcm

        return speak


def _device_streams(room: Room) -> dict[str, str]:
    """What PulseAudio says about the device's playback and capture streams (latency, buffer)."""
    out: dict[str, str] = {}
    try:
        for kind in ("sink-inputs", "source-outputs"):
            for block in room.pactl("list", kind).split("#")[1:]:
                if "segue-device" not in block and "ALSA plug-in" not in block:
                    continue
                keep = [ln.strip() for ln in block.splitlines()
                        if ln.strip().startswith(("Buffer Latency", "Sink Latency", "Source Latency",
                                                  "Sample Specification", "Resample method"))]
                out[kind] = "; ".join(keep)
    except RuntimeError as exc:
        out["error"] = str(exc)
    return out


def run_live(scenario: Scenario, options: LiveOptions) -> LiveRun:
    """Run one scenario live; never raises for what happens inside the run (see `trace.errors`)."""
    say = options.on_progress or (lambda _t: None)
    wall0 = time.monotonic()
    device_id = options.device_id or f"live-{secrets.token_hex(3)}"
    topic_root = options.topic_root or ("segue" if options.engine == "external" else f"segue-live-{secrets.token_hex(3)}")
    rate = scenario.audio.sample_rate
    trace = Trace(scenario.name, options.strategy, "live", HEARD_THRESHOLD, rate, 0.0,
                  LiveEarIndex(rate))  # type: ignore[arg-type]  # the live ear answers EarIndex's questions
    ear_index: LiveEarIndex = trace.ear  # type: ignore[assignment]
    rec_dir = Path(options.record_dir) / scenario.name if options.record_dir else None
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="segue-live-")))
        out_dir = rec_dir or work
        out_dir.mkdir(parents=True, exist_ok=True)
        room = Room(sample_rate=rate)
        room.start()
        stack.callback(room.stop)
        ear = room.recorder(f"{Room.SINK}.monitor")
        mic = room.recorder(f"{Room.ROOM}.monitor")
        stack.callback(mic.stop)
        stack.callback(ear.stop)
        echo = room.add_echo(scenario.audio.echo_delay_ms, scenario.audio.echo_gain)

        llm = proxy = None
        requests_seen, note = True, ""
        if options.engine == "external":
            requests_seen = False
            note = ("--engine external: the engine's LLM endpoint is not the harness's, so the requests are not "
                    "seen; phantom/lost words are not counted")
            base_url = options.llm_base_url or ""
        elif options.llm_base_url:
            from evaluation.live.llmproxy import RecordingProxy

            proxy = RecordingProxy(options.llm_base_url).start()
            stack.callback(proxy.stop)
            base_url = proxy.base_url
        else:
            from evaluation.openai_server import ScriptedLLMServer

            llm = ScriptedLLMServer(scenario.llm_rules() or [{"default": "Okay."}]).start()
            stack.callback(llm.stop)
            base_url = llm.base_url

        wire = WireTap(options.broker_url, topic_root, device_id, out_dir / "mqtt.jsonl")
        stack.callback(wire.stop)
        procs: list[Proc] = []
        if options.engine != "external":
            cfg = work / "server.toml"
            cfg.write_text(server_toml(options.broker_url, topic_root, base_url, options.llm_model, options.strategy,
                                       f"live-{secrets.token_hex(3)}"))
            procs.append(Proc("segue-server", [*program("segue-server"), "--config", str(cfg), "--state-dir",
                                               str(work / "state")], out_dir / "server.log",
                              env=dict(os.environ, HF_HUB_OFFLINE="1")).start())
        else:
            (out_dir / "server.log").write_text("--engine external: the engine runs elsewhere; its log is not the "
                                                "harness's\n")
        dcfg = work / "device.toml"
        dcfg.write_text(device_toml(options.broker_url, topic_root, device_id, scenario))
        procs.append(Proc("segue-device", [*program("segue-device"), "--config", str(dcfg)], out_dir / "device.log",
                          env=dict(room.env(), HF_HUB_OFFLINE="1")).start())
        stopped: dict[str, float | None] = {}

        def stop_procs() -> None:
            for p in reversed(procs):  # the device first, as a Pi powers down
                p.stop()
                stopped[p.name] = p.stop_s
                if p.killed:
                    trace.errors.append(f"{p.name} ignored SIGTERM for 5 s and was killed")

        stack.callback(stop_procs)
        say(f"  processes started (device {device_id}, root {topic_root}); waiting for the device to come online")

        user = LiveUser(scenario, trace, ear_index, wire, room, _voice(), lambda: ear.t0)
        stack.callback(user.stop)
        seg_cache: dict[int, tuple[int, np.ndarray]] = {}

        def pump() -> None:
            for sa in wire.segment_list():
                sid = sa.segment.segment
                trace.segments.setdefault(sid, sa.segment)
                n = len(sa.pcm)
                if sid not in seg_cache or seg_cache[sid][0] != n:
                    seg_cache[sid] = (n, sa.array())
            ear_index.update(ear.samples(), {k: v[1] for k, v in seg_cache.items()})

        def dead() -> str | None:
            for p in procs:
                why = p.died()
                if why:
                    return why
            return None

        device_streams: dict[str, str] = {}
        try:
            deadline = time.monotonic() + options.startup_timeout_s
            while True:  # online: the hello on the wire and the engine's first word to the device
                why = dead()
                if why:
                    raise RuntimeError(why)
                hello = wire.of("hello", "up")
                engine_spoke = wire.of("state", "down") or options.engine == "external"
                dev_state = wire.of("state", "up")
                if hello and engine_spoke and dev_state and len(ear) > rate // 2:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the device was not online with the engine within {options.startup_timeout_s:.0f} s "
                                       f"(hello: {bool(hello)}, engine state: {bool(engine_spoke)}, device state: "
                                       f"{bool(dev_state)})")
                time.sleep(0.05)
            time.sleep(1.0)  # the device finishes loading its models after the hello
            say(f"  online after {time.monotonic() - wall0:.1f} s; the conversation starts")
            last_progress = time.monotonic()
            while not user.finished:
                pump()
                user.step()
                why = dead()
                if why:
                    trace.errors.append(why)
                    break
                if not device_streams and wire.of("segment", "down") and ear_index.agent_samples:
                    device_streams = _device_streams(room)
                if time.monotonic() - last_progress > 10:
                    last_progress = time.monotonic()
                    say(f"  ... {user.now():.0f} s, turn {user.index}/{len(scenario.turns)}")
                time.sleep(0.02)
            time.sleep(0.3)
            pump()
        except (RuntimeError, TimeoutError) as exc:
            trace.errors.append(str(exc))
        except Exception as exc:  # a harness bug: report it, do not hide it
            log.exception("live scenario %s failed", scenario.name)
            trace.errors.append(f"harness: {type(exc).__name__}: {exc}")
        trace.end = ear_index.position_s
        stop_procs()
        procs.clear()
        if wire.errors:
            trace.errors.extend(wire.errors[:5])
        recorded = llm.requests if llm is not None else proxy.requests if proxy is not None else []
        ear_pcm, mic_pcm = ear.samples(), mic.samples()
        run = LiveRun(scenario, trace, ear_index, ear_pcm, mic_pcm, mic.t0 - ear.t0, list(user.spoken), ear.t0,
                      echo, requests_seen, note, [r.reply for r in recorded], wire.snapshot(), device_streams,
                      stopped, rec_dir, segment_pcm={k: v[1] for k, v in seg_cache.items()})
        from evaluation.harness.trace import LlmRequest

        trace.llm_requests = [LlmRequest(r.time - ear.t0, r.messages) for r in recorded
                              if r.path.rstrip("/").endswith("/chat/completions")]
        _write_wav(out_dir / "ear.wav", ear_pcm, rate)
        _write_wav(out_dir / "mic.wav", mic_pcm, rate)
        with open(out_dir / "requests.jsonl", "w") as f:
            for r in recorded:
                f.write(json.dumps({"t": round(r.time - ear.t0, 4), "path": r.path, "model": r.model,
                                    "messages": r.messages, "stream": r.stream, "reply": r.reply,
                                    "cancelled": r.cancelled}) + "\n")
            if not requests_seen:
                f.write(json.dumps({"note": note}) + "\n")
    run.wall_s = time.monotonic() - wall0
    trace.wall_s = run.wall_s
    return run
