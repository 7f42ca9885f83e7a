"""Network faults between the simulated device and the broker, in simulated time.

`FaultyLink` is the device's real `DeviceLink` (real paho client, real codecs, real broker) with a
shim on both directions: each message is held back by a seeded uniform delay, keeping FIFO order per
direction (MQTT runs over TCP, so a later message never overtakes an earlier one); periodic
heartbeats can be lost; and the connection can be cut and restored at given times. Delays are in
simulated time: the harness calls `pump(now)` between card buffers to release what is due.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from device.config import MqttSettings
from device.mqtt import DeviceLink, Down
from icp.messages import PlaybackReport
from icp.messages.base import Body

log = logging.getLogger(__name__)


class _Fifo:
    """Messages released in order, each no earlier than its own due time."""

    def __init__(self) -> None:
        self._items: deque[tuple[float, Any]] = deque()
        self._last_due = 0.0
        self._lock = threading.Lock()

    def push(self, due: float, item: Any) -> None:
        with self._lock:
            self._last_due = max(self._last_due, due)
            self._items.append((self._last_due, item))

    def pop_due(self, now: float) -> list[Any]:
        with self._lock:
            out = []
            while self._items and self._items[0][0] <= now:
                out.append(self._items.popleft()[1])
            return out

    def clear(self) -> int:
        with self._lock:
            n = len(self._items)
            self._items.clear()
            return n


class FaultyLink(DeviceLink):
    """A `DeviceLink` whose traffic passes through delays, heartbeat loss and outages."""

    def __init__(self, settings: MqttSettings, device_id: str, on_down: Callable[[Down], None],
                 clock: Callable[[], float], delay_ms: tuple[float, float] = (0.0, 0.0),
                 drop_heartbeats: float = 0.0, seed: int = 0, **kwargs: Any) -> None:
        self._deliver = on_down
        super().__init__(settings, device_id, self._arrived, **kwargs)
        self._clock = clock
        self._delay = (delay_ms[0] / 1000.0, delay_ms[1] / 1000.0)
        self._drop = drop_heartbeats
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._up, self._down = _Fifo(), _Fifo()
        self.suspended = False
        self.heartbeats_dropped = 0
        self.lost_in_outage = 0

    def _lag(self) -> float:
        lo, hi = self._delay
        if hi <= 0:
            return 0.0
        with self._rng_lock:
            return self._rng.uniform(lo, hi)

    # -- the two directions ----------------------------------------------------------------------
    def _arrived(self, down: Down) -> None:  # paho's thread
        if self.suspended:
            return
        lag = self._lag()
        if lag <= 0 and not self._delay[1]:
            self._deliver(down)
        else:
            self._down.push(self._clock() + lag, down)

    def send(self, body: Body, qos: int = 1, retain: bool = False) -> bool:
        if self.suspended:
            return False
        if isinstance(body, PlaybackReport) and str(body.event) == "heartbeat" and self._drop > 0:
            with self._rng_lock:
                lost = self._rng.random() < self._drop
            if lost:
                self.heartbeats_dropped += 1
                return True
        if self._delay[1] <= 0:
            return super().send(body, qos, retain)
        self._up.push(self._clock() + self._lag(), (body, qos, retain))
        return True

    def pump(self, now: float) -> None:
        """Release every message due by simulated time `now` (call between card buffers)."""
        for body, qos, retain in self._up.pop_due(now):
            if not self.suspended:
                super().send(body, qos, retain)
        for down in self._down.pop_due(now):
            if not self.suspended:
                self._deliver(down)

    # -- outages -------------------------------------------------------------------------------
    def suspend(self) -> None:
        """The network fails: the socket dies without a goodbye (the broker publishes the Last Will)."""
        if self.suspended:
            return
        self.suspended = True
        self.lost_in_outage += self._up.clear() + self._down.clear()
        client = self._client
        client.loop_stop()  # no automatic reconnect while the network is down
        sock = client.socket()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        self.connected.clear()
        self._on_lost()

    def restore(self) -> None:
        """The network is back: reconnect (same device session, so the engine sees a reconnect)."""
        if not self.suspended:
            return
        self.suspended = False
        try:
            self._client.reconnect()
        except OSError as exc:
            log.warning("reconnect failed: %s (paho keeps trying)", exc)
        self._client.loop_start()
