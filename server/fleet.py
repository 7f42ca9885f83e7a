"""Several engine workers on one fleet: route each device's messages to its owner, in the device's order.

The broker's shared subscription hands a device's consecutive messages to any worker (Mosquitto 2.0
round-robins: the worst case). The worker that receives a message asks `Ownership.route()`: its own
device (or an unowned one, which it claims) is delivered here; another live worker's is forwarded on
that worker's Redis channel (`<prefix>:fwd:<worker>`), pipelined by one forwarding thread. A forward
that reaches no subscriber means the owner's process is gone: the device is stolen (fenced claim) and
the message delivered here, so nothing a device says is lost to a dead worker.

Forwarding reorders (message n via another worker can arrive after n+1 sent straight here), and the
protocol's replay check refuses anything out of order. So the owner puts each device's messages back in
sequence (`Resequencer`): a message after a gap waits up to `hold_s` for the missing one.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from icp import events as E
from icp.errors import ProtocolError
from icp.messages import SequenceTracker
from server.mqtt import EngineMqtt
from server.ownership import Ownership
from server.wire import Accepted, Inbound, Rejected

log = logging.getLogger("segue.fleet")
MAX_HOPS = 3


@dataclass
class _Held:
    session: str
    seq: int
    hello: bool
    topic: str
    payload: bytes
    at: float


def _peek(payload: bytes) -> tuple[str, int, bool] | None:
    """(session, seq, is hello) of an envelope, or None (the translator will say what is wrong)."""
    try:
        doc = json.loads(payload)
        return str(doc["session"]), int(doc["seq"]), doc.get("type") == "hello"
    except (ValueError, KeyError, TypeError):
        return None


class Resequencer:
    """Per device: hand messages on in the order of their sequence numbers (see module docstring)."""

    def __init__(self, trackers: dict[str, SequenceTracker], hold_s: float = 0.3) -> None:
        self.trackers = trackers
        self.hold_s = hold_s
        self.held: dict[str, list[_Held]] = {}
        self.waited = 0  # messages released after their gap timed out

    def offer(self, device: str, topic: str, payload: bytes, now: float,
              deliver: Callable[[str, bytes], None]) -> None:
        peek = _peek(payload) if "/up/" in topic else None
        if peek is None:
            deliver(topic, payload)
            return
        self.held.setdefault(device, []).append(_Held(*peek, topic, payload, now))
        self._release(device, now, deliver)

    def tick(self, now: float, deliver: Callable[[str, bytes], None]) -> None:
        for device in [d for d, h in self.held.items() if h]:
            self._release(device, now, deliver)

    def _release(self, device: str, now: float, deliver: Callable[[str, bytes], None]) -> None:
        held = self.held.get(device, [])
        while held:
            held.sort(key=lambda h: h.seq)
            tracker = self.trackers.get(device)
            pick = None
            if tracker is None or tracker.session is None:
                # Nothing known yet: a hello may be on its way through another worker; wait for it a little.
                pick = next((h for h in held if h.hello), None)
                if pick is None and now - min(h.at for h in held) >= self.hold_s:
                    pick = held[0]
            else:
                pick = next((h for h in held if h.hello and h.session != tracker.session), None)
                if pick is None:
                    pick = next((h for h in held if h.session == tracker.session and h.seq <= tracker.last_seq + 1),
                                None)
                if pick is None and now - min(h.at for h in held) >= self.hold_s:
                    pick = min(held, key=lambda h: h.at)
                    self.waited += 1
            if pick is None:
                return
            held.remove(pick)
            deliver(pick.topic, pick.payload)
        self.held.pop(device, None)


class FleetRouter:
    """Owner routing for one worker (module docstring); `deliver()` is the single-worker path."""

    def __init__(self, ownership: Ownership, inbound: Inbound, post: Callable[[str, E.Event], None],
                 on_rejected: Callable[[str, Rejected, float], None], clock: Callable[[], float],
                 on_accepted: Callable[[Accepted, float], None] | None = None, hold_s: float = 0.3) -> None:
        self.ownership = ownership
        self.client = ownership.client
        self.keys = ownership.keys
        self.inbound = inbound
        self.topics = inbound.topics
        self.post = post
        self.on_rejected = on_rejected
        self.on_accepted = on_accepted
        self.clock = clock
        self.reseq = Resequencer(inbound.trackers, hold_s)
        self.forwarded = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, str, str, bytes, int] | None] = queue.Queue()
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def start(self) -> "FleetRouter":
        self._pubsub.subscribe(**{self.keys.forward(self.ownership.worker): self._on_forwarded})
        self._pubsub.get_message(timeout=1.0)  # the subscription is confirmed before anyone may forward
        for target, name in ((self._listen, "fleet-listen"), (self._forward, "fleet-forward")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._queue.put(None)
        try:
            self._pubsub.close()
        except Exception:
            pass

    # -- receiving ----------------------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes, hops: int = 0) -> None:
        try:
            device = self.topics.parse(topic).device_id
        except ProtocolError:
            device = None
        owner = None if device is None else self.ownership.route(device)
        if owner is None:
            self.deliver(topic, payload)
        elif hops >= MAX_HOPS:
            self.on_rejected(topic, Rejected(device, "routing: owner kept moving"), self.clock())
        else:
            self._queue.put((owner, device or "", topic, payload, hops))

    def deliver(self, topic: str, payload: bytes) -> None:
        now = self.clock()
        with self._lock:
            try:
                device = self.topics.parse(topic).device_id
            except ProtocolError:
                self._translate(topic, payload)
                return
            self.reseq.offer(device, topic, payload, now, self._translate)

    def tick(self) -> None:
        with self._lock:
            self.reseq.tick(self.clock(), self._translate)

    def _translate(self, topic: str, payload: bytes) -> None:
        now = self.clock()
        result = self.inbound.translate(topic, payload, now)
        if isinstance(result, Accepted):
            if self.on_accepted is not None:
                self.on_accepted(result, now)
            for event in result.events:
                self.post(result.device_id, event)
        else:
            self.on_rejected(topic, result, now)

    def _on_forwarded(self, message: dict[str, Any]) -> None:
        data: bytes = message["data"]
        head, topic, payload = data.split(b"\n", 2)
        self.on_message(topic.decode(), payload, int(head) + 1)

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                self._pubsub.get_message(timeout=0.05)
                self.tick()
            except Exception as exc:
                if self._stopping.is_set():
                    return
                log.warning("forwarding subscription failed: %s", exc)
                time.sleep(0.2)

    # -- forwarding ---------------------------------------------------------------------------------
    def _forward(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < 256:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
            try:
                pipe = self.client.pipeline(transaction=False)
                for owner, _, topic, payload, hops in batch:
                    pipe.publish(self.keys.forward(owner), b"%d\n%s\n%s" % (hops, topic.encode(), payload))
                receivers = pipe.execute()
            except Exception as exc:
                log.warning("forwarding failed: %s", exc)
                receivers = [0] * len(batch)
            for (owner, device, topic, payload, hops), count in zip(batch, receivers):
                if count:
                    self.forwarded += 1
                    continue
                # Nobody listens on the owner's channel: its process is gone. Take the device, keep the message.
                if device and self.ownership.steal(device, owner):
                    self.deliver(topic, payload)
                else:
                    self.on_message(topic, payload, hops + 1)


class FleetMqtt(EngineMqtt):
    """The engine's MQTT connection with owner routing in place of direct translation."""

    router: FleetRouter

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.router.on_message(msg.topic, msg.payload)

