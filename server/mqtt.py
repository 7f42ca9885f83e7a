"""The engine's MQTT connection (paho-mqtt 2.x, MQTT v5): subscribe, translate, publish.

Callbacks translate only: a message becomes a core event (via `server.wire.Inbound`) posted to the
engine loop, or a logged, counted rejection. Nothing here touches a conversation.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from icp import events as E
from icp.messages import Topics
from server.config import MqttSettings
from servicekit.net import tcp_no_delay
from server.wire import Accepted, Inbound, Rejected

log = logging.getLogger("segue.mqtt")


class EngineMqtt:
    def __init__(self, settings: MqttSettings, inbound: Inbound, post: Callable[[str, E.Event], None],
                 clock: Callable[[], float] = time.monotonic,
                 on_rejected: Callable[[str, Rejected, float], None] | None = None) -> None:
        self.settings = settings
        self.on_rejected = on_rejected or _log_rejection  # server.rejections bounds the log in the app
        self.inbound = inbound
        self.post = post
        self.clock = clock
        self.connected = threading.Event()  # connected AND subscribed (the broker acknowledged it)
        self.refused: str | None = None  # why the broker refused the subscription, if it did
        self._sub_mid: int | None = None
        client_id = settings.client_id or f"segue-engine-{uuid.uuid4().hex[:8]}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if settings.username:
            self.client.username_pw_set(settings.username, settings.password)
        if settings.use_tls:
            self.client.tls_set(ca_certs=settings.ca, certfile=settings.cert, keyfile=settings.key,
                                cert_reqs=ssl.CERT_REQUIRED)
        self.client.reconnect_delay_set(min_delay=max(1, int(settings.reconnect_min_s)),
                                        max_delay=max(1, int(settings.reconnect_max_s)))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_socket_open = tcp_no_delay  # commands are not held back by Nagle (servicekit.net)

    def start(self, timeout: float = 10.0) -> "EngineMqtt":
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        self.client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s,
                                  clean_start=True, properties=props)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            self.client.loop_stop()
            if self.refused:
                raise ConnectionError(f"the MQTT broker at {self.settings.host}:{self.settings.port} refused the "
                                      f"engine's subscription ({self.refused}): check its ACL for this user")
            raise ConnectionError(
                f"could not connect to the MQTT broker at {self.settings.host}:{self.settings.port} within "
                f"{timeout:.0f}s: is it running, and are the credentials right?")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)

    # -- callbacks: translate, never decide ---------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        subs = Topics(self.settings.topic_root).engine_subscriptions(self.settings.group)
        _, self._sub_mid = client.subscribe([(topic, 1) for topic in subs])
        log.info("connected to %s:%s; subscribing %s", self.settings.host, self.settings.port, ", ".join(subs))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        """Ready only once the broker has the subscription: a device's message published before it is
        lost to this worker (a retained status still comes; a hello did not, and at start-up the next
        message of ~1 in 50 devices then waited out the resequencer's hold: segue-bench engine)."""
        if mid != self._sub_mid:
            return
        failed = [str(r) for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            self.refused = ", ".join(failed)
            log.error("broker refused the subscription: %s", self.refused)
            return
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = self.clock()
        result = self.inbound.translate(msg.topic, msg.payload, now)
        if isinstance(result, Accepted):
            for event in result.events:
                self.post(result.device_id, event)
        else:
            self.on_rejected(msg.topic, result, now)


def _log_rejection(topic: str, result: Rejected, now: float) -> None:
    log.warning("rejected message on %s (device=%s): %s", topic, result.device_id, result.reason)
