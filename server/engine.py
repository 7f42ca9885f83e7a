"""The ICP engine's I/O runtime: one loop thread owns every device's core `Session`.

MQTT callbacks, reply work (LLM streams and TTS: `server.replies`, in a child process by default)
and the ticker only *post* events to the loop; the loop hands each to the core and carries out the
commands that come back. Nothing here decides what the conversation does: that is `icp.machine`.
Whatever goes wrong out here (an LLM request that cannot be cancelled yet, a classifier that raises,
audio that is missing) is posted back as an event, so the core never believes something that did
not happen.
"""

from __future__ import annotations

import itertools
import logging
import queue
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from icp import commands as C
from icp import events as E
from icp.dispositions import Classifier
from icp.machine import Session
from icp.messages import Control, EngineState, Envelope, Topics, encode, split_pcm, topic_level
from icp.messages.base import Body
from icp.ratelimit import LogBudget
from icp.strategies import strategy as strategy_named
from server.config import ServerSettings
from server import takeover
from server.replies import Replies, ReplyThreads
from server.storage import LostOwnership, Store
from server.tts.base import Synthesis, TTSBackend

log = logging.getLogger("segue.engine")
_PROBE = object()  # a no-op item: the loop proves it is turning (loop_alive)
transitions_log = logging.getLogger("segue.transitions")

Observer = Callable[[str, C.Command], None]
# What a device sends (the rest are posted by the engine's own workers): event -> command latency.
WIRE_EVENTS = (E.DeviceConnected, E.WakeDetected, E.UtterancePartial, E.UtteranceFinal, E.InterruptReported,
               E.PlaybackReported, E.DeviceDisconnected)


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None: ...


@dataclass
class _Outbound:
    """The engine's side of one device's sequence: its own session id and counter."""

    session: str = field(default_factory=lambda: secrets.token_hex(6))
    seq: itertools.count = field(default_factory=lambda: itertools.count(1))


@dataclass
class _Device:
    session: Session
    outbound: _Outbound = field(default_factory=_Outbound)
    sample_rate: int = 16000
    takeover: dict[str, Any] | None = None  # a snapshot with in-flight work to pick up (server.takeover)


class Engine:
    """`tts` given: reply work on threads here, with that backend (and `llm_client`, if given);
    None: in a child process that builds both from `settings` (`server.reply_process`)."""

    def __init__(
        self,
        settings: ServerSettings,
        store: Store,
        tts: TTSBackend | None,
        classifier: Classifier,
        publisher: Publisher,
        clock: Callable[[], float] = time.monotonic,
        llm_client: Any = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.classifier = classifier
        self.publisher = publisher
        self.clock = clock
        self.topics = Topics(settings.mqtt.topic_root)
        self.strategy = strategy_named(settings.strategy)
        self.devices: dict[str, _Device] = {}
        self.audio: dict[tuple[str, int], Synthesis] = {}  # synthesised, not yet sent
        self.counters: Counter[str] = Counter()
        self.observers: list[Observer] = []
        self.housekeeping: list[Callable[[float], None]] = []  # called by the ticker with the time
        self._ignored_log = LogBudget(per_interval=10, interval_s=10.0)  # "ignored" lines per device and event
        self._queue: queue.Queue[Any] = queue.Queue()  # (device, event), a callable, _PROBE or None
        # A shared store (Redis) is written behind: dirty sessions every flush_s, fenced (server.redis_store).
        self.write_behind = bool(getattr(store, "write_behind", False))
        self.flush_s = 0.05
        self._dirty: set[str] = set()
        self.on_lost: Callable[[list[str]], None] | None = None  # the fence refused: ownership moved
        self.owns: Callable[[str], bool] | None = None  # several workers: act only for devices owned here
        self.metrics: Any = None  # server.metrics.EngineMetrics when --metrics-port is set
        self._classify_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="classify")
        # Classifications submitted and not yet posted back: a simulation paced faster than real time
        # (evaluation.harness) holds its clock while there are any, as it does for the recogniser.
        self._classifying = 0
        self._classifying_lock = threading.Lock()
        sink = _EngineSink(self)
        self.replies: Replies
        if tts is not None:
            self.replies = ReplyThreads(settings, tts, sink, llm_client)
        else:
            from server.reply_process import ReplyProcess

            self.replies = ReplyProcess(settings, sink)
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._last_turn = time.monotonic()  # the loop's last item (loop_alive)

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> "Engine":
        self.replies.ready()  # the reply process, started with the engine, has built its LLM client and TTS
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)
        self._thread.start()
        self._ticker = threading.Thread(target=self._tick, name="engine-tick", daemon=True)
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self.write_behind:
            self._queue.put(self._flush)  # a clean stop hands over everything up to now
        self._queue.put(None)
        if self._thread:
            self._thread.join(5)
        self.replies.close()
        self._classify_pool.shutdown(wait=False, cancel_futures=True)

    @property
    def streams(self) -> dict[tuple[str, str], Any]:
        """Generations asked for and not yet ended, by (device, generation)."""
        return self.replies.streams

    def post(self, device_id: str, event: E.Event) -> None:
        """Thread-safe: the only way anything reaches a session."""
        self._queue.put((device_id, event))

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Thread-safe: run `fn` on the loop thread, in order with the events posted before it."""
        self._queue.put(fn)

    def _tick(self) -> None:
        """Tick a session when its next deadline is due (the core says when: `next_deadline()`)."""
        last_flush = 0.0
        while not self._stopping.wait(min(self.settings.tick_s, self.flush_s)):
            now = self.clock()
            if self.write_behind and now - last_flush >= self.flush_s:
                self._queue.put(self._flush)
                last_flush = now
            for device_id, dev in list(self.devices.items()):
                due = dev.session.next_deadline()
                if due is not None and now >= due:
                    self.post(device_id, E.Tick(now))
            for chore in self.housekeeping:
                try:
                    chore(now)
                except Exception:
                    log.exception("housekeeping failed")

    def loop_alive(self, max_age_s: float) -> bool:
        """Has the loop taken an item within `max_age_s`? Posts a probe, so that an idle loop (no
        events) proves itself by the next call; a wedged one does not (the systemd watchdog)."""
        self._queue.put(_PROBE)
        return time.monotonic() - self._last_turn <= max_age_s

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            self._last_turn = time.monotonic()
            if item is None:
                return
            if item is _PROBE:
                continue
            if callable(item):
                try:
                    item()
                except Exception:
                    log.exception("engine task failed")
                continue
            device_id, event = item
            try:
                self._handle(device_id, event)
            except Exception:  # a bug must not end every device's conversation
                log.exception("device=%s internal error handling %s", device_id, type(event).__name__)
                self.counters["internal_error"] += 1

    # -- sessions -------------------------------------------------------------------------------------
    def _device(self, device_id: str) -> _Device:
        dev = self.devices.get(device_id)
        if dev is None:
            snapshot = self.store.load(device_id)
            if snapshot is not None and "live" in snapshot:  # another worker was serving it
                session = takeover.restore(snapshot, self.settings.engine, self.strategy, self.clock())
                dev = self.devices[device_id] = _Device(session, self._outbound(device_id),
                                                        int(snapshot["live"].get("sample_rate", 16000)),
                                                        takeover=snapshot if takeover.pending(snapshot) else None)
                log.info("device=%s taken over in state %s", device_id, session.state.value)
                return dev
            if snapshot is not None:
                session = Session.restore(snapshot, self.settings.engine, self.strategy)
                log.info("device=%s conversation restored (%d threads held)", device_id,
                         len(session.conv.held_threads()))
            else:
                session = Session(device_id, self.settings.engine, self.strategy)
            dev = self.devices[device_id] = _Device(session, self._outbound(device_id))
        return dev

    def _outbound(self, device_id: str) -> _Outbound:
        allotted = getattr(self.store, "outbound", None)
        if allotted is None:
            return _Outbound()
        session, first = allotted(device_id)
        return _Outbound(session, itertools.count(first))

    def _handle(self, device_id: str, event: E.Event) -> None:
        if self.owns is not None and not self.owns(device_id):  # e.g. a reply stream of a device moved away
            self.evict(device_id)
            self.counters["not_owner"] += 1
            return
        dev = self._device(device_id)
        if isinstance(event, E.DeviceConnected):
            dev.sample_rate = event.sample_rate
        self._run_commands(device_id, dev, dev.session.handle(event))
        if dev.takeover is not None and not takeover.user_deciding(dev.session):
            # The event brought the device's cursor; now stop there and resume. While the user is
            # interrupting, wait: their turn's disposition decides what becomes of the dead reply.
            snapshot, dev.takeover = dev.takeover, None
            self._run_commands(device_id, dev, takeover.hold_and_resume(dev.session, snapshot, self.clock()))
        if self.write_behind:
            self._dirty.add(device_id)
        if self.metrics is not None and isinstance(event, WIRE_EVENTS):
            self.metrics.events.labels(type(event).__name__).inc()
            self.metrics.latency.observe(max(0.0, self.clock() - event.now))

    def _run_commands(self, device_id: str, dev: _Device, commands: list[C.Command]) -> None:
        for cmd in commands:
            self._carry_out(device_id, dev, cmd)
            for observer in self.observers:
                observer(device_id, cmd)

    # -- a shared store: write-behind, fenced, and handing devices over ----------------------------
    def _flush(self) -> None:
        """Write every dirty session (with its in-flight state) in one fenced pipeline."""
        if not self._dirty:
            return
        items = []
        for device_id in self._dirty:
            dev = self.devices.get(device_id)
            if dev is not None:
                live = takeover.live_state(dev.session) | {"sample_rate": dev.sample_rate}
                items.append((device_id, dev.session.snapshot() | {"live": live}))
        self._dirty.clear()
        try:
            self.store.save_many(items)  # type: ignore[attr-defined]
        except LostOwnership as lost:
            for device_id in lost.device_ids:
                self.evict(device_id)
            if self.on_lost is not None:
                self.on_lost(lost.device_ids)
        except Exception:
            log.exception("could not write %d sessions to the store", len(items))

    def evict(self, device_id: str) -> None:
        """Forget a device (its ownership moved): on the loop thread, nothing more is sent for it."""
        self.devices.pop(device_id, None)
        self._dirty.discard(device_id)
        self.replies.forget(device_id)
        for key in [k for k in self.audio if k[0] == device_id]:
            self.audio.pop(key, None)

    # -- commands ----------------------------------------------------------------------------------
    def _carry_out(self, device_id: str, dev: _Device, cmd: C.Command) -> None:
        if isinstance(cmd, C.Transition):
            transitions_log.info("device=%s from=%s event=%s to=%s", device_id, cmd.before, cmd.event, cmd.after)
        elif isinstance(cmd, C.Ignored):
            self.counters["ignored"] += 1
            admission = self._ignored_log.admit((device_id, cmd.event), self.clock())
            if admission.summary is not None:
                log.info("device=%s ignored %s: %s", device_id, cmd.event, admission.summary.describe())
            if admission.log:
                log.info("device=%s ignored %s: %s", device_id, cmd.event, cmd.reason)
        elif isinstance(cmd, C.StartGeneration):
            self._start_generation(device_id, cmd)
        elif isinstance(cmd, C.CancelGeneration):
            self.replies.cancel(device_id, cmd.generation_id)  # also when its request is still being opened
        elif isinstance(cmd, C.Synthesise):
            self.replies.synthesise(device_id, dev.sample_rate, cmd)
        elif isinstance(cmd, C.SendSegment):
            self._send_segment(device_id, dev, cmd)
        elif isinstance(cmd, C.DiscardAudio):
            for sid in cmd.segment_ids:
                self.audio.pop((device_id, sid), None)
        elif isinstance(cmd, C.DeviceControl):
            self._send(device_id, dev, Control(cmd.action, cmd.reason[:64], cmd.disposition))
        elif isinstance(cmd, C.PublishState):
            self._send(device_id, dev, EngineState(cmd.state, min(cmd.held_threads, 64)))
        elif isinstance(cmd, C.Classify):
            with self._classifying_lock:
                self._classifying += 1
            self._classify_pool.submit(self._classify, device_id, cmd)
        elif isinstance(cmd, C.Persist):
            if self.write_behind:
                self._dirty.add(device_id)
            else:
                self.store.save(device_id, cmd.snapshot)
        elif isinstance(cmd, C.DispositionApplied):
            self.counters[f"disposition_{cmd.applied.value}"] += 1
            log.info("device=%s utterance=%r classified=%s applied=%s confidence=%.2f source=%s", device_id,
                     cmd.text[:80], cmd.classified.value, cmd.applied.value, cmd.confidence, cmd.source)
            self.store.log_event(device_id, "disposition", {"text": cmd.text, "classified": cmd.classified.value,
                                                            "applied": cmd.applied.value, "source": cmd.source})
        elif isinstance(cmd, C.ResumePlanned):
            log.info("device=%s resume thread=%s item=%s at word %d", device_id, cmd.thread_id, cmd.item_id,
                     cmd.resume_word)
            self.store.log_event(device_id, "resume", {"thread": cmd.thread_id, "item": cmd.item_id,
                                                       "word": cmd.resume_word})

    def _send(self, device_id: str, dev: _Device, body: Body) -> None:
        env = Envelope(dev.outbound.session, next(dev.outbound.seq), secrets.token_hex(6), body)
        self.publisher.publish(self.topics.down(device_id, topic_level(body)), encode(env), qos=1)

    def _send_segment(self, device_id: str, dev: _Device, cmd: C.SendSegment) -> None:
        synthesis = self.audio.pop((device_id, cmd.segment.segment), None)
        if synthesis is None:  # the core counts it as sent: tell it, so it re-sends from the heard cursor
            log.warning("device=%s segment %d has no audio; not sent", device_id, cmd.segment.segment)
            self.counters["segments_unsent"] += 1
            self.post(device_id, E.SegmentNotSent(self.clock(), cmd.segment.segment, "no audio"))
            return
        self._send(device_id, dev, cmd.segment)
        topic = self.topics.down(device_id, "audio")
        for frame in split_pcm(cmd.segment.segment, synthesis.pcm):
            self.publisher.publish(topic, frame.encode(), qos=1)
        self.counters["segments_sent"] += 1

    # -- workers (they post events; they decide nothing) ---------------------------------------------
    def _start_generation(self, device_id: str, cmd: C.StartGeneration) -> None:
        self.replies.generate(device_id, cmd)

    @property
    def classifying(self) -> bool:
        """A classification is running or queued (its answer not yet posted to the loop)."""
        return self._classifying > 0

    def _classify(self, device_id: str, cmd: C.Classify) -> None:
        try:
            try:
                result = self.classifier.classify(cmd.request)
            except Exception as exc:  # the core falls back at once (not after classify_timeout_s of silence)
                log.warning("device=%s classifier failed: %s", device_id, exc)
                self.counters["classifier_failed"] += 1
                self.post(device_id, E.ClassifyFailed(self.clock(), cmd.request_id, f"{type(exc).__name__}: {exc}"))
                return
            self.post(device_id, E.Classified(self.clock(), cmd.request_id, result.disposition, result.confidence,
                                              result.source))
        finally:
            with self._classifying_lock:
                self._classifying -= 1


class _EngineSink:
    """What reply work reports becomes the core's events (on the loop, in order), audio and metrics."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def text(self, device_id: str, generation_id: str, delta: str) -> None:
        self.engine.post(device_id, E.GenerationText(self.engine.clock(), generation_id, delta))

    def finished(self, device_id: str, generation_id: str) -> None:
        self.engine.post(device_id, E.GenerationFinished(self.engine.clock(), generation_id))

    def failed(self, device_id: str, generation_id: str, reason: str) -> None:
        self.engine.post(device_id, E.GenerationFailed(self.engine.clock(), generation_id, reason))

    def closed(self, device_id: str, generation_id: str) -> None:
        pass  # cancelled before its request went out: the core closed it already

    def synthesised(self, device_id: str, segment_id: int, synthesis: Synthesis) -> None:
        self.engine.audio[(device_id, segment_id)] = synthesis
        self.engine.post(device_id, E.SegmentSynthesised(self.engine.clock(), segment_id, len(synthesis.pcm) // 2,
                                                         synthesis.sample_rate, synthesis.words))

    def synthesis_failed(self, device_id: str, segment_id: int, reason: str) -> None:
        self.engine.post(device_id, E.SynthesisFailed(self.engine.clock(), segment_id, reason))

    def timing(self, kind: str, seconds: float) -> None:
        metrics = self.engine.metrics
        if metrics is not None:
            (metrics.first_token if kind == "first_token" else metrics.tts).observe(seconds)
