"""`segue-bench engine`: how many talking devices K engine workers carry, and how fast they answer.

    segue-bench engine --devices N --workers K --seconds S [--json OUT]

Starts a real Mosquitto, a real redis-server, the scripted OpenAI-compatible server and K real
`segue-server` processes (`--store redis://…`, espeak-ng), then N simulated devices that speak the real
protocol through the broker (no audio is played; playback is simulated from the segment's length).
Each device loops: hello once; then think, wake, partial and final utterance, wait for the reply's
segment, "play" it with a heartbeat every `HEARTBEAT_S` and a segment end; every third turn it
interrupts the reply instead and says "stop".

Latency is from an event's publication to the first resulting command at the device:
hello -> state, wake -> state, final -> state, interrupt -> state, stop -> flush, segment end -> state.
The time from a final utterance to the reply's first segment (LLM and TTS included) is reported apart
(`reply_ms`). `errors`: commands that never came (2 s; 10 s for a reply) and messages the workers
refused. Engine CPU: user+system seconds of the worker processes and their reply processes over the
window, per device-second;
`cpu_s` gives every process of the bench (workers, broker, Redis, the load, the LLM) over the window,
to show where the machine's cores went.

The simulated devices and both timestamps of every sample live on one thread (`Load`: paho's external
loop over a few MQTT connections); the scripted LLM runs in a process of its own, so that its HTTP
threads do not compete with the timing for the GIL.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import multiprocessing
import os
import random
import resource
import secrets
import selectors
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from icp.messages import (
    Cursor, Envelope, Hello, Interrupt, PlaybackEvent, PlaybackReport, Topics, Utterance, Wake, WakeSource, encode,
    topic_level,
)
from icp.messages.base import Body
from servicekit.net import tcp_no_delay

HEARTBEAT_S = 0.25
PROTOCOL_TIMEOUT_S = 2.0
REPLY_TIMEOUT_S = 10.0
DEVICES_PER_CLIENT = 100
RULES = [{"match": "stop", "reply": "Okay."}, {"default": "It is twelve o'clock."}]


@dataclass
class _Expect:
    label: str
    kind: str | None  # the down message type that answers (None: any but audio)
    sent: float
    timeout: float


@dataclass
class _Device:
    id: str
    client: mqtt.Client
    session: str = field(default_factory=lambda: secrets.token_hex(4))
    seq: itertools.count = field(default_factory=lambda: itertools.count(1))
    expect: _Expect | None = None
    turn: int = 0
    generation: int = 0  # bumps on every new step: stale timers of an older step do nothing
    playing: list[tuple[int, int]] = field(default_factory=list)  # (segment, samples) queued
    position: int = 0
    interrupting: bool = False


class Load:
    """N simulated devices on a few MQTT clients, all served by ONE thread (the caller's).

    How it is timed: the device program, every socket read and write (paho's external loop:
    `loop_read`/`loop_write`/`loop_misc` driven by `selectors`) and both timestamps of a latency sample
    run on this one thread, on `time.monotonic()`. An event's time is taken just before its PUBLISH is
    written to the socket (paho writes at once when nothing is queued), a command's when paho has parsed
    it off the socket, right after `select()` woke. Nothing else in this process competes for the GIL
    (the scripted LLM runs in its own process), so a sample is the broker and engine path plus at most
    the time this thread spends on the other devices' messages of the same wake-up; that work is
    counted (`busy_s`: the thread's time outside `select()`).
    """

    def __init__(self, broker_port: int, devices: int, think_s: tuple[float, float], root: str = "segue") -> None:
        self.topics = Topics(root)
        self.think_s = think_s
        self.timers: list[tuple[float, int, str, int, str]] = []
        self.counter = itertools.count()
        self.latency: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.published = 0
        self.measuring = False
        self.busy_s = 0.0
        self.devices: dict[str, _Device] = {}
        self.clients: list[mqtt.Client] = []
        self.selector = selectors.DefaultSelector()
        self._subacks = 0
        ids = [f"bench{i:04d}" for i in range(devices)]
        expected = 0
        for start in range(0, devices, DEVICES_PER_CLIENT):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:6]}",
                                 protocol=mqtt.MQTTv5)
            client.max_inflight_messages_set(1000)
            client.max_queued_messages_set(0)
            client.on_message = self._on_message
            client.on_subscribe = self._on_subscribe
            client.on_socket_open = tcp_no_delay  # as the engine does: no 40 ms Nagle stalls
            client.connect("127.0.0.1", broker_port)
            client.socket().setblocking(False)
            self.selector.register(client.socket(), selectors.EVENT_READ, client)
            chunk = ids[start : start + DEVICES_PER_CLIENT]
            subs = [(self.topics.down(d, level), 1) for d in chunk for level in ("segment", "control", "state")]
            for i in range(0, len(subs), 100):
                client.subscribe(subs[i : i + 100])
                expected += 1
            self.clients.append(client)
            for d in chunk:
                self.devices[d] = _Device(d, client)
        deadline = time.monotonic() + 10.0
        while self._subacks < expected and time.monotonic() < deadline:  # subscribed before any hello
            self._pump(0.05)

    # -- the one thread: sockets and timers --------------------------------------------------------
    def _pump(self, timeout: float) -> None:
        for client in self.clients:
            if client.want_write():  # a write the socket did not take at once (a full send buffer)
                client.loop_write()
        ready = self.selector.select(max(0.0, timeout))
        for key, _ in ready:
            key.data.loop_read()

    def at(self, when: float, dev: _Device, action: str) -> None:
        heapq.heappush(self.timers, (when, next(self.counter), dev.id, dev.generation, action))

    def run(self, seconds: float, warmup_s: float, mark: Callable[[str], None] = lambda name: None) -> None:
        """Warm up (hellos spread over 60% of it), then measure for `seconds`; `mark("start"/"end")` is
        called at the window's edges (CPU accounting), on this thread."""
        now = time.monotonic()
        for i, dev in enumerate(self.devices.values()):
            self.at(now + warmup_s * 0.6 * i / max(1, len(self.devices)), dev, "hello")
        window_start, end = now + warmup_s, now + warmup_s + seconds
        last_misc = now
        while True:
            now = time.monotonic()
            if not self.measuring and now >= window_start and now < end:
                mark("start")
                self.measuring, self.published, self.busy_s = True, 0, 0.0
                self.window_start = now
            if now >= end:
                break
            while self.timers and self.timers[0][0] <= now:
                _, _, device_id, generation, action = heapq.heappop(self.timers)
                self._fire(self.devices[device_id], generation, action, now)
            if now - last_misc >= 1.0:
                for client in self.clients:
                    client.loop_misc()  # keepalive pings
                last_misc = now
            wait = min(0.05, end - now, (self.timers[0][0] - now) if self.timers else 0.05)
            busy = time.monotonic() - now
            self._pump(wait)
            if self.measuring:
                self.busy_s += busy
        self.measuring = False
        self.window = time.monotonic() - self.window_start
        mark("end")

    def _fire(self, dev: _Device, generation: int, action: str, now: float) -> None:
        if action == "timeout":
            if dev.expect is not None and dev.generation == generation:
                self._error(f"no answer to {dev.expect.label}")
                dev.expect = None
                self._next_turn(dev, now)
            return
        if generation == dev.generation:
            getattr(self, f"_do_{action}")(dev, now)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._subacks += 1

    def _send(self, dev: _Device, body: Body, expect: tuple[str, str | None, float] | None = None) -> None:
        env = Envelope(dev.session, next(dev.seq), secrets.token_hex(4), body)
        payload = encode(env)
        now = time.monotonic()
        if expect is not None:
            label, kind, timeout = expect
            dev.generation += 1
            dev.expect = _Expect(label, kind, now, timeout)
            self.at(now + timeout, dev, "timeout")
        dev.client.publish(self.topics.up(dev.id, topic_level(body)), payload, qos=1)
        if self.measuring:
            self.published += 1
    def _error(self, what: str) -> None:
        if self.measuring:
            self.errors[what] = self.errors.get(what, 0) + 1

    def _next_turn(self, dev: _Device, now: float) -> None:
        dev.generation += 1
        dev.playing, dev.position, dev.interrupting = [], 0, False
        self.at(now + random.uniform(*self.think_s), dev, "wake")

    # -- the device's program -----------------------------------------------------------------------
    def _do_hello(self, dev: _Device, now: float) -> None:
        dev.client.publish(self.topics.status(dev.id), b"online", qos=1, retain=True)
        self._send(dev, Hello(16000, (), "bench"), ("hello", "engine_state", PROTOCOL_TIMEOUT_S))

    def _do_wake(self, dev: _Device, now: float) -> None:
        dev.turn += 1
        self._send(dev, Wake(WakeSource.BUTTON), ("wake", "engine_state", PROTOCOL_TIMEOUT_S))

    def _do_final(self, dev: _Device, now: float) -> None:
        uid = uuid.uuid4().hex[:8]
        self._send(dev, Utterance(uid, False, "what"))
        self._send(dev, Utterance(uid, True, "what time is it"), ("final", "engine_state", PROTOCOL_TIMEOUT_S))

    def _do_play(self, dev: _Device, now: float) -> None:
        if not dev.playing:
            return
        segment, samples = dev.playing[0]
        dev.position = min(samples, dev.position + int(HEARTBEAT_S * 16000))
        cursor = Cursor(segment, dev.position)
        if dev.turn % 3 == 0 and not dev.interrupting and dev.position >= 4000:
            dev.interrupting = True
            self._send(dev, Interrupt(uuid.uuid4().hex[:8], cursor, onset_ms=0.0),
                       ("interrupt", "engine_state", PROTOCOL_TIMEOUT_S))
            return
        if dev.position >= samples:
            dev.playing.pop(0)
            dev.position = 0
            queued = sum(s for _, s in dev.playing) / 16.0
            expect = ("segment end", None, PROTOCOL_TIMEOUT_S) if not dev.playing else None
            self._send(dev, PlaybackReport(PlaybackEvent.SEGMENT_END, cursor, queued_ms=queued), expect)
            if dev.playing:
                self.at(now + HEARTBEAT_S, dev, "play")
            return
        queued = (samples - dev.position + sum(s for _, s in dev.playing[1:])) / 16.0
        self._send(dev, PlaybackReport(PlaybackEvent.HEARTBEAT, cursor, queued_ms=queued))
        self.at(now + HEARTBEAT_S, dev, "play")

    def _do_stop(self, dev: _Device, now: float) -> None:
        uid = uuid.uuid4().hex[:8]
        self._send(dev, Utterance(uid, True, "stop"), ("stop", "control", PROTOCOL_TIMEOUT_S))

    # -- what the engine sends ----------------------------------------------------------------------
    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        parts = msg.topic.split("/")
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        kind = doc.get("type")
        dev = self.devices.get(parts[1])
        if dev is None:
            return
        if kind == "segment":
            dev.playing.append((int(doc["segment"]), int(doc["samples"])))
        expect = dev.expect
        if expect is None or (expect.kind is not None and expect.kind != kind):
            if kind == "segment" and len(dev.playing) == 1 and not dev.interrupting:
                self.at(now + HEARTBEAT_S, dev, "play")
            return
        dev.expect = None
        if self.measuring:
            self.latency.setdefault(expect.label, []).append((now - expect.sent) * 1000.0)
        if expect.label == "hello" or expect.label == "segment end":
            self._next_turn(dev, now)
        elif expect.label == "wake":
            self.at(now, dev, "final")
        elif expect.label == "final":
            dev.generation += 1
            dev.expect = _Expect("reply", "segment", expect.sent, REPLY_TIMEOUT_S)
            self.at(now + REPLY_TIMEOUT_S, dev, "timeout")
            if kind == "segment":  # (a state was asked for; a segment this early answers both)
                self._on_reply(dev, now)
        elif expect.label == "reply":
            self._on_reply(dev, now)
        elif expect.label == "interrupt":
            self.at(now + 0.3, dev, "stop")
        elif expect.label == "stop":
            self._next_turn(dev, now)

    def _on_reply(self, dev: _Device, now: float) -> None:
        dev.expect = None
        dev.generation += 1
        self.at(now + HEARTBEAT_S, dev, "play")

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
            client.loop_write()
        self.selector.close()


def _pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p99": float("nan"), "n": 0}
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 2),
            "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2), "n": len(ordered)}


def _serve_llm(conn: Any) -> None:
    """The scripted LLM in its own process (its HTTP threads must not share the load's GIL)."""
    from evaluation.openai_server import ScriptedLLMServer

    with ScriptedLLMServer(RULES, chunk_delay_s=0.005) as llm:
        conn.send(llm.base_url)
        conn.recv()  # until the bench is done (or gone: EOFError)


def run(devices: int, workers: int, seconds: float, warmup_s: float = 8.0,
        think_s: tuple[float, float] = (20.0, 40.0), replies: str = "process") -> dict[str, Any]:
    from evaluation.broker import Mosquitto, free_port
    from evaluation.redis_server import RedisServer
    from evaluation.workers import EngineWorkers, children, cpu_s

    # fork: started before this process has any thread of its own, and unlike spawn it does not re-run the
    # caller's __main__ (a script calling run() without a __main__ guard would start the bench again)
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    llm = ctx.Process(target=_serve_llm, args=(there,), name="scripted-llm", daemon=True)
    llm.start()
    try:
        llm_url = here.recv()
        with tempfile.TemporaryDirectory(prefix="segue-bench-engine-") as tmp:
            work = Path(tmp)
            port = free_port()
            config = (f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n"
                      "set_tcp_nodelay true\n")
            with Mosquitto(work / "broker", config=config, port=port) as broker, \
                    RedisServer(work / "redis") as redis_server, \
                    EngineWorkers(work / "workers", workers, broker.url, redis_server.url, llm_url,
                                  extra=["--replies", replies]) as procs:
                load = Load(broker.port, devices, think_s)
                load_before = os.getloadavg()
                others = {"broker": broker.proc.pid if broker.proc else None,
                          "redis": redis_server.proc.pid if redis_server.proc else None, "llm": llm.pid}
                cpu: dict[str, dict[str, float]] = {}

                def mark(name: str) -> None:
                    own = resource.getrusage(resource.RUSAGE_SELF)
                    cpu[name] = {"engine": procs.cpu_seconds(), "load_generator": own.ru_utime + own.ru_stime,
                                 **{k: cpu_s(pid) for k, pid in others.items()},
                                 **{f"worker{i}": cpu_s(p.pid) for i, p in enumerate(procs.procs)},
                                 **{f"worker{i}_replies": sum(map(cpu_s, children(p.pid)))
                                    for i, p in enumerate(procs.procs)}}
                    cpu[name]["wall"] = time.monotonic()

                load.run(seconds, warmup_s, mark)
                load.close()
                load_after = os.getloadavg()
                logs = "".join(procs.log(i) for i in range(workers))
    finally:
        here.close()
        llm.join(5)
        if llm.is_alive():
            llm.terminate()
    protocol = [v for label, values in load.latency.items() if label != "reply" for v in values]
    rejected = logs.count("rejected message")
    errors = sum(load.errors.values()) + rejected
    used = {k: round(cpu["end"][k] - cpu["start"][k], 2) for k in cpu["end"] if k != "wall"}
    return {
        "devices": devices, "workers": workers, "replies": replies, "seconds": round(load.window, 2),
        "events_per_s": round(load.published / load.window, 1),
        "latency_ms": _pct(protocol),
        "reply_ms": _pct(load.latency.get("reply", [])),
        "by_event": {label: _pct(values) for label, values in sorted(load.latency.items())},
        "errors": errors, "error_kinds": dict(load.errors, rejected=rejected),
        "engine_cpu_s_per_device_s": round(used["engine"] / (devices * load.window), 6),
        "engine_cpu_s": used["engine"],
        "load_generator_cpu_s": used["load_generator"],
        # CPU seconds of every process of the bench over the window (the machine has os.cpu_count() cores)
        "cpu_s": used, "load_busy_s": round(load.busy_s, 2),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in load_after]},
        "think_s": list(think_s), "heartbeat_s": HEARTBEAT_S,
    }


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "engine", help="K engine workers (Redis, shared subscription) against N simulated devices",
        description="Starts Mosquitto, redis-server, a scripted LLM and K segue-server workers on free ports, "
                    "then N simulated devices speaking the real protocol (a turn every --think seconds, "
                    "heartbeats while 'playing'); reports events/s, event->command latency p50/p99 at the "
                    "device, errors and CPU per process. Takes --warmup + --seconds plus ~5 s of start-up.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--devices", type=int, default=100, help="simulated devices (N)")
    p.add_argument("--workers", type=int, default=1, help="segue-server worker processes (K)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the measured window")
    p.add_argument("--warmup", type=float, default=8.0, help="seconds before measuring (hellos are spread)")
    p.add_argument("--think", type=float, nargs=2, default=(20.0, 40.0), metavar=("MIN", "MAX"),
                   help="seconds a device stays quiet between turns")
    p.add_argument("--replies", choices=("process", "threads"), default="process",
                   help="the workers' --replies: LLM streams and TTS in a child process or on the worker's threads")
    p.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT")
    p.set_defaults(func=cmd_engine)


def cmd_engine(args: argparse.Namespace) -> dict[str, Any]:
    """The report (segue-bench prints it and writes --json)."""
    return run(args.devices, args.workers, args.seconds, args.warmup, tuple(args.think), args.replies)
