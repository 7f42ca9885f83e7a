"""Wiring of one engine worker: settings in, a running engine with its MQTT connection out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from icp.messages import Topics
from server.classify_llm import make_classifier
from server.config import ServerSettings
from server.engine import Engine
from server.mqtt import EngineMqtt
from server.rejections import RejectionMonitor
from server.storage import open_store
from server.tts.base import TTSBackend
from server.tts.factory import create_tts
from server.wire import Inbound

log = logging.getLogger("segue.server")


def make_tts(settings: ServerSettings) -> TTSBackend:
    options: dict[str, Any] = {"sample_rate": settings.tts.sample_rate}
    if settings.tts.backend == "openai":
        options.update(base_url=settings.llm.base_url, api_key=settings.llm.api_key)
        if settings.tts.voice:
            options["voice"] = settings.tts.voice
        if settings.tts.model:
            options["model"] = settings.tts.model
    return create_tts(settings.tts.backend, **options)


class ServerApp:
    def __init__(self, settings: ServerSettings, tts: TTSBackend | None = None,
                 clock: Callable[[], float] = time.monotonic, llm_client: Any = None) -> None:
        self.settings = settings
        self.store = open_store(settings.storage.backend, settings.storage.state_dir)
        self.tts = tts or make_tts(settings)
        classifier = make_classifier(
            settings.classifier.backend, base_url=settings.llm.base_url if settings.classifier.backend != "local"
            else None, model=settings.llm.model, api_key=settings.llm.api_key,
            timeout=settings.classifier.llm_timeout_s, threshold=settings.classifier.threshold)
        self.inbound = Inbound(Topics(settings.mqtt.topic_root), frozenset(settings.allowed_devices))
        self.mqtt: EngineMqtt | None = None
        self.engine = Engine(settings, self.store, self.tts, classifier, publisher=self, clock=clock,
                             llm_client=llm_client)
        # Bad input: counted by device and reason, logged within a budget, published for dashboards.
        self.rejections = RejectionMonitor(settings.mqtt.topic_root, self.publish,
                                           known=lambda device: device in self.inbound.trackers)
        self.engine.housekeeping.append(self.rejections.tick)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        assert self.mqtt is not None
        self.mqtt.publish(topic, payload, qos, retain)

    def start(self, timeout: float = 10.0) -> "ServerApp":
        self.engine.start()
        self.mqtt = EngineMqtt(self.settings.mqtt, self.inbound, self.engine.post, self.engine.clock,
                               on_rejected=self.rejections.record)
        try:
            self.mqtt.start(timeout)
        except ConnectionError:
            self.engine.stop()
            raise
        log.info("segue-server running: strategy=%s tts=%s llm=%s model=%s", self.settings.strategy,
                 getattr(self.tts, "name", "?"), self.settings.llm.base_url, self.settings.llm.model)
        return self

    def stop(self) -> None:
        if self.mqtt is not None:
            self.mqtt.stop()
        self.engine.stop()
        self.store.close()
