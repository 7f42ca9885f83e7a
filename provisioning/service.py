"""`segue-fleet serve`: the enrollment service (claim requests -> device credentials) and the
monitoring publisher (Home Assistant discovery, last-seen times). Runs as the fleet credential.

Logged: every refusal with its reason and the serial (or the topic when the serial is unusable).
Never logged: passwords, sealed replies, request bodies.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from icp.errors import ProtocolError
from icp.messages import Topics
from icp.messages.topics import ANY, STATUS, STATUS_PAYLOADS

from . import claim_messages as cm
from .discovery import HA_STATUS_TOPIC, DeviceInfo, config_topic, device_config_payload
from .fleet import Fleet, FleetError
from .ids import FLEET_USER, SERIAL_RE

log = logging.getLogger("segue.fleet.serve")


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    #: How often the registry is compared with the published discovery configs (seconds).
    sync_interval: float = 5.0
    client_id: str = "segue-fleet-serve"


class FleetService:
    def __init__(self, fleet: Fleet, settings: ServeSettings) -> None:
        self.fleet = fleet
        self.settings = settings
        self.root = fleet.topic_root
        self.topics = Topics(self.root)
        self._published: set[str] = set()
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(FLEET_USER, fleet.read_password(FLEET_USER))
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.replies = 0

    # ------------------------------------------------------------ decisions
    def handle_claim(self, topic: str, payload: bytes) -> tuple[str, bytes] | None:
        """Decide one message on `<root>/claim/<serial>/request`; returns the reply to publish, or
        None when the request is too broken to answer. Refusals write nothing and are logged."""
        try:
            serial, kind = self.topics.parse_claim(topic)
        except ProtocolError:
            serial, kind = "", ""
        if kind != "request" or not SERIAL_RE.fullmatch(serial):
            log.warning("claim refused: bad serial in topic %r", topic[:128])
            return None
        try:
            req = cm.parse_request(serial, payload)
        except cm.ClaimError as e:
            log.warning("claim refused for serial %s: %s", serial, e)
            return None
        reply_topic = self.topics.claim_reply(serial)
        try:
            outcome = self.fleet.claim(req)
        except (FleetError, ValueError) as e:
            log.warning("claim refused for serial %s: %s", serial, e)
            return reply_topic, cm.refused_reply(req)
        if not outcome.ok:
            log.warning("claim refused for serial %s: %s", serial, outcome.reason)
            return reply_topic, cm.refused_reply(req)
        assert outcome.device_id and outcome.username and outcome.password
        s = self.fleet.broker_settings()
        host = s.public_host if s else self.settings.host
        port = s.port if s else self.settings.port
        log.info("claim of serial %s: %s (device %s)", serial, outcome.reason, outcome.device_id)
        return reply_topic, cm.ok_reply(req, device_id=outcome.device_id, username=outcome.username,
                                        password=outcome.password, host=host, port=port,
                                        topic_root=self.root)

    def discovery_updates(self, *, republish: bool = False) -> list[tuple[str, bytes]]:
        """Retained messages that bring Home Assistant in line with the registry: a config for every
        active device (all of them when `republish`), an empty payload for every device gone."""
        with self._lock:
            out: list[tuple[str, bytes]] = []
            active = {d.id for d in self.fleet.reg.devices() if d.state == "active"}
            for dev_id in sorted(active):
                if republish or dev_id not in self._published:
                    out.append((config_topic(dev_id), device_config_payload(DeviceInfo(dev_id, self.root))))
            for dev in self.fleet.reg.devices():
                if dev.id not in active and (dev.id in self._published or republish):
                    out.append((config_topic(dev.id), b""))
            self._published = active
            return out

    def note_status(self, topic: str, payload: bytes) -> None:
        try:
            parsed = self.topics.parse(topic)
        except ProtocolError:
            return
        if parsed.level != STATUS or parsed.direction is not None:
            return
        status = payload.decode("ascii", "replace")
        if status in STATUS_PAYLOADS and self.fleet.reg.device(parsed.device_id) is not None:
            self.fleet.reg.mark_seen(parsed.device_id, status)

    # ------------------------------------------------------------------ I/O
    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: mqtt.ReasonCode,
                    _p: object = None) -> None:
        if rc.is_failure:
            log.error("fleet service could not connect: %s", rc)
            return
        client.subscribe([(self.topics.claim_request(ANY), 1), (HA_STATUS_TOPIC, 1),
                          (self.topics.status(ANY), 1)])
        self.connected.set()
        self.publish_discovery(republish=True)

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            if msg.topic == HA_STATUS_TOPIC:
                if msg.payload == b"online":
                    log.info("Home Assistant is online: republishing discovery")
                    self.publish_discovery(republish=True)
            elif msg.topic.startswith(self.topics.claim_tree()[:-1]):
                if msg.retain:
                    log.warning("claim refused: retained request on %r", msg.topic[:128])
                    return
                reply = self.handle_claim(msg.topic, msg.payload)
                if reply is not None:
                    props = Properties(PacketTypes.PUBLISH)
                    props.MessageExpiryInterval = 60
                    client.publish(reply[0], reply[1], qos=1, retain=False, properties=props)
                    self.replies += 1
            elif msg.topic.endswith(f"/{STATUS}"):
                self.note_status(msg.topic, msg.payload)
        except Exception:  # noqa: BLE001 - one bad message must not stop the service
            log.exception("error handling a message on %r", msg.topic[:128])

    def publish_discovery(self, *, republish: bool = False) -> int:
        updates = self.discovery_updates(republish=republish)
        for topic, payload in updates:
            self.client.publish(topic, payload, qos=1, retain=True)
        return len(updates)

    def run(self, stop: threading.Event) -> None:
        self.client.reconnect_delay_set(1, 10)
        self.client.connect(self.settings.host, self.settings.port, keepalive=30)
        self.client.loop_start()
        try:
            next_sync = time.monotonic() + self.settings.sync_interval
            while not stop.wait(0.2):
                if time.monotonic() >= next_sync and self.connected.is_set():
                    self.publish_discovery()
                    next_sync = time.monotonic() + self.settings.sync_interval
        finally:
            self.client.disconnect()
            self.client.loop_stop()
