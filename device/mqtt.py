"""The device's MQTT v5 link: status with a Last Will, the down subscription, validated input.

Every down message goes through the `icp.messages` codecs and the replay rule (per engine session,
strictly increasing `seq`) before anyone sees it; anything bad is logged with its reason and dropped,
never raised into paho's thread. Up messages get this process's session and the next `seq`.
paho reconnects by itself with exponential backoff; `on_up` is told each time so the device can say
hello and report its cursor again.

Dashboard commands (`down/mute`: `ON` / `OFF`; `down/restart`: `PRESS`) are plain text, not JSON
envelopes (Home Assistant's switch and button publish plain payloads); exactly those payloads are
accepted, as a `device.dashboard.DashboardCommand`, anything else is rejected with a logged reason.
A *retained* restart is refused: it would restart the device again at every connect.

Round trip: for each QoS 1 publish the time from `publish()` to its PUBACK is measured
(`take_rtt_ms()`), the `rtt_ms` of the telemetry.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import threading
import time
from typing import Callable, Optional, Union

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from icp.errors import ProtocolError
from icp.ratelimit import LogBudget
from icp.messages import AudioFrame, Body, Direction, Envelope, SequenceTracker, Topics, decode, encode, topic_level
from icp.messages.topics import STATUS_OFFLINE, STATUS_ONLINE
from device.config import MqttSettings
from servicekit.net import tcp_no_delay
from device.dashboard import PAYLOADS as DASHBOARD_PAYLOADS, DashboardCommand, parse as parse_dashboard

log = logging.getLogger(__name__)


Down = Union[Envelope, AudioFrame, DashboardCommand]


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
        self.rejected_counts: dict[str, int] = {}  # every rejection, by reason (telemetry may show them)
        self._log_budget = LogBudget(per_interval=5, interval_s=60.0)
        self._log_lock = threading.Lock()
        self.connected = threading.Event()
        self._rtt_lock = threading.Lock()
        self._unacked: dict[int, float] = {}  # mid -> monotonic time of publish()
        self._early_acks: dict[int, float] = {}
        self._rtts: list[float] = []
        self.last_rtt_ms: Optional[float] = None
        client_id = settings.client_id or f"segue-{device_id}"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if settings.username:
            c.username_pw_set(settings.username, settings.password)
        if settings.use_tls:  # mqtts://, tls = true, or a CA / client certificate
            c.tls_set(ca_certs=settings.ca, certfile=settings.cert, keyfile=settings.key,
                      tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.will_set(self.topics.status(device_id), STATUS_OFFLINE.encode(), qos=1, retain=True)
        c.reconnect_delay_set(int(settings.reconnect_min_s), int(settings.reconnect_max_s))
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_message = self._message
        c.on_publish = self._published
        c.on_socket_open = tcp_no_delay  # reports and interrupts are not held back by Nagle (servicekit.net)
        self._client = c

    # ---- lifecycle ----
    def start(self) -> None:
        self._client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        try:
            if self.connected.is_set():
                self._client.publish(self.topics.status(self.device_id), STATUS_OFFLINE.encode(), qos=1, retain=True).wait_for_publish(0.5)
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
        client.publish(self.topics.status(self.device_id), STATUS_ONLINE.encode(), qos=1, retain=True)
        self.connected.set()
        self._on_up()

    def _disconnected(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        log.info("disconnected from broker: %s", reason_code)
        self._on_lost()

    # ---- input ----
    def _reject(self, topic: str, reason: str) -> None:
        """Every rejection is counted (`rejected_counts`, by reason); the log gets at most a few lines
        per reason a minute and a summary of the rest, so a flood of bad input cannot flood the journal."""
        key = reason.split(":", 1)[0][:64]
        self.rejected_counts[key] = self.rejected_counts.get(key, 0) + 1
        self.rejected.append(f"{topic}: {reason}")
        del self.rejected[:-100]
        with self._log_lock:
            admission = self._log_budget.admit(key, time.monotonic())
        if admission.summary is not None:
            log.warning("rejected messages (%s): %s", admission.summary.key, admission.summary.describe())
        if admission.log:
            log.warning("rejected message on %s: %s", topic, reason)

    def _message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        try:
            self._accept(msg.topic, msg.payload, bool(msg.retain))
        except Exception as exc:  # a handler bug must not kill paho's network thread
            log.exception("handler failed on %s", msg.topic)
            self._reject(msg.topic, f"handler error: {exc!r}")

    def _accept(self, topic: str, payload: bytes, retained: bool = False) -> None:
        try:
            t = self.topics.parse(topic)
        except ProtocolError as e:
            return self._reject(topic, str(e))
        if t.device_id != self.device_id or t.direction != Direction.DOWN:
            return self._reject(topic, "not one of this device's down topics")
        if t.level in DASHBOARD_PAYLOADS:
            cmd = parse_dashboard(t.level, payload, retained)
            if isinstance(cmd, str):
                return self._reject(topic, cmd)
            self._on_down(cmd)
            return
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
        topic = self.topics.up(self.device_id, topic_level(body))
        t0 = time.monotonic()
        info = self._client.publish(topic, data, qos=qos, retain=retain)
        if qos == 1 and info.rc == mqtt.MQTT_ERR_SUCCESS:
            with self._rtt_lock:  # never held across publish(): paho calls on_publish under its own locks
                acked = self._early_acks.pop(info.mid, None)
                if acked is not None:
                    self._rtt_sample((acked - t0) * 1000.0)
                else:
                    self._unacked[info.mid] = t0
                    if len(self._unacked) > 1000:  # never acknowledged (offline): forget the oldest
                        for mid in list(self._unacked)[:500]:
                            del self._unacked[mid]
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _rtt_sample(self, rtt: float) -> None:
        self.last_rtt_ms = rtt
        self._rtts.append(rtt)
        del self._rtts[:-1000]

    def _published(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        now = time.monotonic()
        with self._rtt_lock:
            t0 = self._unacked.pop(mid, None)
            if t0 is not None:
                self._rtt_sample((now - t0) * 1000.0)
            else:  # the PUBACK beat send() to the bookkeeping (or a QoS 0 publish)
                self._early_acks[mid] = now
                if len(self._early_acks) > 100:
                    for k in list(self._early_acks)[:50]:
                        del self._early_acks[k]

    def take_rtt_ms(self) -> Optional[float]:
        """Mean publish -> PUBACK round trip (ms) since the last call; the last one known if none since."""
        with self._rtt_lock:
            samples, self._rtts = self._rtts, []
        return sum(samples) / len(samples) if samples else self.last_rtt_ms
