"""The device's MQTT v5 link: status with a Last Will, the down subscription, validated input.

Every down message goes through the `icp.messages` codecs and the replay rule (per engine session,
strictly increasing `seq`) before anyone sees it; anything bad is logged with its reason and dropped,
never raised into paho's thread. Up messages get this process's session and the next `seq`.
paho reconnects by itself with exponential backoff; `on_up` is told each time so the device can say
hello and report its cursor again.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import threading
from typing import Callable, Optional, Union

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from icp.errors import ProtocolError
from icp.messages import AudioFrame, Body, Direction, Envelope, SequenceTracker, Topics, decode, encode, topic_level
from device.config import MqttSettings

log = logging.getLogger(__name__)

Down = Union[Envelope, AudioFrame]


class DeviceLink:
    def __init__(self, settings: MqttSettings, device_id: str, on_down: Callable[[Down], None],
                 on_up: Callable[[], None] = lambda: None, on_lost: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.device_id = device_id
        self.topics = Topics(settings.topic_root)
        self.session = secrets.token_hex(4)
        self._seq = 0
        self._ids = 0
        self._lock = threading.Lock()
        self._on_down, self._on_up, self._on_lost = on_down, on_up, on_lost
        self._tracker = SequenceTracker()
        self.rejected: list[str] = []  # reasons, newest last (bounded)
        self.connected = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"segue-{device_id}", protocol=mqtt.MQTTv5)
        if settings.username:
            c.username_pw_set(settings.username, settings.password)
        if settings.ca or settings.cert:
            c.tls_set(ca_certs=settings.ca, certfile=settings.cert, keyfile=settings.key,
                      tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.will_set(self.topics.status(device_id), b"offline", qos=1, retain=True)
        c.reconnect_delay_set(int(settings.reconnect_min_s), int(settings.reconnect_max_s))
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_message = self._message
        self._client = c

    # ---- lifecycle ----
    def start(self) -> None:
        self._client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        try:
            if self.connected.is_set():
                self._client.publish(self.topics.status(self.device_id), b"offline", qos=1, retain=True).wait_for_publish(2)
        except (RuntimeError, ValueError):
            pass
        self._client.disconnect()
        self._client.loop_stop()

    def drop_connection(self) -> None:
        """Tests and fault injection: break the socket as a network failure would (paho reconnects)."""
        sock = self._client.socket()
        if sock is not None:
            sock.close()

    def _connected(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        client.subscribe(self.topics.device_subscription(self.device_id), qos=1)
        client.publish(self.topics.status(self.device_id), b"online", qos=1, retain=True)
        self.connected.set()
        self._on_up()

    def _disconnected(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        log.info("disconnected from broker: %s", reason_code)
        self._on_lost()

    # ---- input ----
    def _reject(self, topic: str, reason: str) -> None:
        log.warning("rejected message on %s: %s", topic, reason)
        self.rejected.append(f"{topic}: {reason}")
        del self.rejected[:-100]

    def _message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        try:
            self._accept(msg.topic, msg.payload)
        except Exception as exc:  # a handler bug must not kill paho's network thread
            log.exception("handler failed on %s", msg.topic)
            self._reject(msg.topic, f"handler error: {exc!r}")

    def _accept(self, topic: str, payload: bytes) -> None:
        try:
            t = self.topics.parse(topic)
        except ProtocolError as e:
            return self._reject(topic, str(e))
        if t.device_id != self.device_id or t.direction != Direction.DOWN:
            return self._reject(topic, "not one of this device's down topics")
        try:
            if t.level == "audio":
                down: Down = AudioFrame.decode(payload)
            else:
                env = decode(payload, Direction.DOWN, t.level)
                # the engine has no hello: a new engine session starts with its first message
                verdict = self._tracker.check(env.session, env.seq, starts_session=True)
                if not verdict.accepted:
                    return self._reject(topic, verdict.reason)
                down = env
        except ProtocolError as e:
            return self._reject(topic, str(e))
        self._on_down(down)

    # ---- output ----
    def send(self, body: Body, qos: int = 1, retain: bool = False) -> bool:
        """Publish one up message; False if it could not even be queued (it is then dropped)."""
        with self._lock:
            self._seq += 1
            self._ids += 1
            env = Envelope(self.session, self._seq, f"{self.session}.{self._ids}", body)
        try:
            data = encode(env)
        except ProtocolError as e:
            log.error("not sending invalid %s: %s", body.TYPE, e)
            return False
        info = self._client.publish(self.topics.up(self.device_id, topic_level(body)), data, qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS
