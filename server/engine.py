"""The ICP engine's I/O runtime: one loop thread owns every device's core `Session`.

MQTT callbacks, LLM stream readers, TTS workers and the ticker only *post* events to the loop; the
loop hands each to the core and carries out the commands that come back. Nothing here decides what
the conversation does: that is `icp.machine`. Whatever goes wrong out here (an LLM request that
cannot be cancelled yet, a classifier that raises, audio that is missing) is posted back as an event,
so the core never believes something that did not happen.
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
from server.llm import LLMError, PendingStream, make_client
from server.storage import Store
from server.tts.base import Synthesis, TTSBackend, resample, to_pcm16

log = logging.getLogger("segue.engine")
_PROBE = object()  # a no-op item: the loop proves it is turning (loop_alive)
transitions_log = logging.getLogger("segue.transitions")

Observer = Callable[[str, C.Command], None]


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


class Engine:
    def __init__(
        self,
        settings: ServerSettings,
        store: Store,
        tts: TTSBackend,
        classifier: Classifier,
        publisher: Publisher,
        clock: Callable[[], float] = time.monotonic,
        llm_client: Any = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.tts = tts
        self.classifier = classifier
        self.publisher = publisher
        self.clock = clock
        self.topics = Topics(settings.mqtt.topic_root)
        self.strategy = strategy_named(settings.strategy)
        self.devices: dict[str, _Device] = {}
        self.audio: dict[tuple[str, int], Synthesis] = {}  # synthesised, not yet sent
        self.streams: dict[tuple[str, str], PendingStream] = {}  # registered before the request is sent
        self.counters: Counter[str] = Counter()
        self.observers: list[Observer] = []
        self.housekeeping: list[Callable[[float], None]] = []  # called by the ticker with the time
        self._ignored_log = LogBudget(per_interval=10, interval_s=10.0)  # "ignored" lines per device and event
        self._queue: queue.Queue[tuple[str, E.Event] | None] = queue.Queue()
        self._tts_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tts")
        self._classify_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="classify")
        self._llm = llm_client or make_client(settings.llm.base_url, settings.llm.api_key, settings.llm.timeout_s)
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._last_turn = time.monotonic()  # the loop's last item (loop_alive)

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> "Engine":
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)
        self._thread.start()
        self._ticker = threading.Thread(target=self._tick, name="engine-tick", daemon=True)
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._queue.put(None)
        for pending in list(self.streams.values()):
            pending.close()
        if self._thread:
            self._thread.join(5)
        self._tts_pool.shutdown(wait=False, cancel_futures=True)
        self._classify_pool.shutdown(wait=False, cancel_futures=True)

    def post(self, device_id: str, event: E.Event) -> None:
        """Thread-safe: the only way anything reaches a session."""
        self._queue.put((device_id, event))

    def _tick(self) -> None:
        """Tick a session when its next deadline is due (the core says when: `next_deadline()`)."""
        while not self._stopping.wait(self.settings.tick_s):
            now = self.clock()
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
            if snapshot is not None:
                session = Session.restore(snapshot, self.settings.engine, self.strategy)
                log.info("device=%s conversation restored (%d threads held)", device_id,
                         len(session.conv.held_threads()))
            else:
                session = Session(device_id, self.settings.engine, self.strategy)
            dev = self.devices[device_id] = _Device(session)
        return dev

    def _handle(self, device_id: str, event: E.Event) -> None:
        dev = self._device(device_id)
        if isinstance(event, E.DeviceConnected):
            dev.sample_rate = event.sample_rate
        for cmd in dev.session.handle(event):
            self._carry_out(device_id, dev, cmd)
            for observer in self.observers:
                observer(device_id, cmd)

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
            pending = self.streams.pop((device_id, cmd.generation_id), None)
            if pending is not None:
                pending.close()  # also when its request is still being opened
        elif isinstance(cmd, C.Synthesise):
            self._tts_pool.submit(self._synthesise, device_id, dev.sample_rate, cmd)
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
            self._classify_pool.submit(self._classify, device_id, cmd)
        elif isinstance(cmd, C.Persist):
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
        # Registered here, on the loop thread, before the worker sends the request: a cancel carried
        # out while the request is being opened finds it and closes the stream the moment it exists.
        key = (device_id, cmd.generation_id)
        pending = self.streams[key] = PendingStream()

        def run() -> None:
            try:
                stream = pending.open(list(cmd.messages), self.settings.llm.model, max_tokens=cmd.max_tokens,
                                      temperature=self.settings.llm.temperature, client=self._llm)
            except LLMError as exc:
                self.streams.pop(key, None)
                log.warning("device=%s generation %s failed to start: %s", device_id, cmd.generation_id, exc)
                self.post(device_id, E.GenerationFailed(self.clock(), cmd.generation_id, str(exc)))
                return
            if stream is None:  # cancelled before or while the request was sent; the core knows
                self.streams.pop(key, None)
                return
            try:
                for delta in stream:
                    self.post(device_id, E.GenerationText(self.clock(), cmd.generation_id, delta))
            except LLMError as exc:
                log.warning("device=%s generation %s failed: %s", device_id, cmd.generation_id, exc)
                self.post(device_id, E.GenerationFailed(self.clock(), cmd.generation_id, str(exc)))
                return
            finally:
                self.streams.pop(key, None)
            # After a cancel the core has already closed this generation; the event is then a no-op.
            self.post(device_id, E.GenerationFinished(self.clock(), cmd.generation_id))

        threading.Thread(target=run, name=f"gen-{cmd.generation_id}", daemon=True).start()

    def _synthesise(self, device_id: str, sample_rate: int, cmd: C.Synthesise) -> None:
        try:
            synthesis = self.tts.synthesise(cmd.text)
            if synthesis.sample_rate != sample_rate:
                pcm = to_pcm16(resample(synthesis.samples(), synthesis.sample_rate, sample_rate))
                synthesis = Synthesis(pcm, sample_rate, synthesis.words)
        except Exception as exc:  # any backend failure is a failed segment, never a dead worker
            log.warning("device=%s synthesis of segment %d failed: %s", device_id, cmd.segment_id, exc)
            self.post(device_id, E.SynthesisFailed(self.clock(), cmd.segment_id, str(exc)))
            return
        self.audio[(device_id, cmd.segment_id)] = synthesis
        samples = len(synthesis.pcm) // 2
        self.post(device_id, E.SegmentSynthesised(self.clock(), cmd.segment_id, samples, synthesis.sample_rate,
                                                  synthesis.words))

    def _classify(self, device_id: str, cmd: C.Classify) -> None:
        try:
            result = self.classifier.classify(cmd.request)
        except Exception as exc:  # the core falls back at once (not after classify_timeout_s of silence)
            log.warning("device=%s classifier failed: %s", device_id, exc)
            self.counters["classifier_failed"] += 1
            self.post(device_id, E.ClassifyFailed(self.clock(), cmd.request_id, f"{type(exc).__name__}: {exc}"))
            return
        self.post(device_id, E.Classified(self.clock(), cmd.request_id, result.disposition, result.confidence,
                                          result.source))
