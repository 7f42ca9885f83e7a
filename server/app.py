"""Wiring of one engine worker: settings in, a running engine with its MQTT connection out."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from icp import events as E
from icp.messages import SequenceTracker, Topics
from server.classify_llm import make_classifier
from server.config import ServerSettings
from server.engine import Engine
from server.mqtt import EngineMqtt
from server.rejections import RejectionMonitor
from server.replies import make_tts
from server.storage import open_store
from server.tts.base import TTSBackend
from server.wire import Inbound, Rejected

log = logging.getLogger("segue.server")


class ServerApp:
    """One engine worker. Reply work (LLM streams, TTS) runs in a child process (`replies =
    "process"`, the default) unless `replies = "threads"`, or a `tts` or `llm_client` object is
    handed in (objects of this process: they stay on its threads)."""

    def __init__(self, settings: ServerSettings, tts: TTSBackend | None = None,
                 clock: Callable[[], float] = time.monotonic, llm_client: Any = None) -> None:
        self.settings = settings
        self.inbound = Inbound(Topics(settings.mqtt.topic_root), frozenset(settings.allowed_devices))
        self.fleet: Any = None  # several workers: server.fleet.FleetRouter and server.ownership.Ownership
        self.ownership: Any = None
        self.worker = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        if settings.storage.url:
            self.store = self._redis_store(settings.storage.url)
        else:
            self.store = open_store(settings.storage.backend, settings.storage.state_dir)
        in_process = settings.replies == "threads" or tts is not None or llm_client is not None
        tts = (tts or make_tts(settings)) if in_process else None
        classifier = make_classifier(
            settings.classifier.backend, base_url=settings.llm.base_url if settings.classifier.backend != "local"
            else None, model=settings.llm.model, api_key=settings.llm.api_key,
            timeout=settings.classifier.llm_timeout_s, threshold=settings.classifier.threshold)
        self.mqtt: EngineMqtt | None = None
        self.engine = Engine(settings, self.store, tts, classifier, publisher=self, clock=clock,
                             llm_client=llm_client)
        # Bad input: counted by device and reason, logged within a budget, published for dashboards.
        self.rejections = RejectionMonitor(settings.mqtt.topic_root, self.publish,
                                           known=lambda device: device in self.inbound.trackers)
        self.engine.housekeeping.append(self.rejections.tick)
        if self.ownership is not None:
            self.engine.owns = self.ownership.owns
            self.engine.on_lost = self.ownership.lose
        self.metrics: Any = None
        if settings.metrics_port:
            from server.metrics import EngineMetrics

            self.metrics = EngineMetrics(
                devices=lambda: len(self.engine.devices),
                owned=lambda: len(self.ownership.tokens) if self.ownership else len(self.engine.devices),
                takeovers=lambda: self.ownership.takeovers if self.ownership else 0,
                forwarded=lambda: self.fleet.forwarded if self.fleet else 0,
                reply_restarts=lambda: self.engine.replies.restarts)
            self.engine.metrics = self.metrics

    # -- several workers (docs/fleet-scale.md) --------------------------------------------------------
    def _redis_store(self, url: str) -> Any:
        from server.ownership import Ownership
        from server.redis_store import RedisStore, connect

        import redis

        client = connect(url)
        try:
            client.ping()  # fail at start, naming the URL, rather than at the first device
        except redis.RedisError as exc:
            raise ConnectionError(f"could not reach the Redis store at {url}: {exc}") from None
        prefix = f"segue:{self.settings.mqtt.topic_root}"
        store = RedisStore(client, prefix, tokens=lambda device: self.ownership.token(device),
                           trackers=self.inbound.trackers)
        self.ownership = Ownership(store, self.worker, on_claimed=self._claimed, on_lost=self._lost)
        store.start_writer(on_lost=self.ownership.lose)  # the engine's loop never waits for Redis
        return store

    def _claimed(self, device_id: str, claimed: Any, proactive: bool) -> None:
        """A device became ours: its replay state from Redis; the loop reloads its session from there."""
        if claimed.inbound is not None:
            session, last_seq = claimed.inbound
            self.inbound.trackers[device_id] = SequenceTracker(session=session, last_seq=last_seq)
        else:
            self.inbound.trackers.pop(device_id, None)
        self.engine.call_soon(lambda: self.engine.evict(device_id))
        if proactive:  # nothing of the device is on its way here: wake its session now
            self.engine.post(device_id, E.Tick(self.engine.clock()))

    def _lost(self, device_ids: list[str]) -> None:
        for device_id in device_ids:
            self.inbound.trackers.pop(device_id, None)
            self.engine.call_soon(lambda d=device_id: self.engine.evict(d))

    def _rejected(self, topic: str, result: Rejected, now: float) -> None:
        if self.metrics is not None:
            self.metrics.rejections.labels(result.reason.split(":")[0]).inc()
        self.rejections.record(topic, result, now)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        assert self.mqtt is not None
        self.mqtt.publish(topic, payload, qos, retain)

    def start(self, timeout: float = 10.0) -> "ServerApp":
        self.engine.start()
        if self.ownership is not None:
            from server.fleet import FleetMqtt, FleetRouter

            self.fleet = FleetRouter(self.ownership, self.inbound, self.engine.post, self._rejected,
                                     self.engine.clock).start()
            self.ownership.start()  # after the forwarding subscription: a worker without one looks dead
            self.mqtt = FleetMqtt(self.settings.mqtt, self.inbound, self.engine.post, self.engine.clock,
                                  on_rejected=self._rejected)
            self.mqtt.router = self.fleet
        else:
            self.mqtt = EngineMqtt(self.settings.mqtt, self.inbound, self.engine.post, self.engine.clock,
                                   on_rejected=self._rejected)
        if self.metrics is not None:
            port = self.metrics.serve(self.settings.metrics_port)
            log.info("metrics on :%d/metrics", port)
        try:
            self.mqtt.start(timeout)
        except ConnectionError:
            self.engine.stop()
            raise
        log.info("segue-server running: strategy=%s tts=%s llm=%s model=%s", self.settings.strategy,
                 self.engine.replies.tts_name, self.settings.llm.base_url, self.settings.llm.model)
        return self

    def stop(self) -> None:
        if self.mqtt is not None:
            self.mqtt.stop()
        self.engine.stop()
        if self.ownership is not None:
            self.ownership.stop(release=True)
        if self.fleet is not None:
            self.fleet.stop()
        if self.metrics is not None:
            self.metrics.close()
        self.store.close()

