"""Which engine worker may act for which device: one owner per device, fenced, taken over in under a second
when its worker dies.

Why this design (docs/fleet-scale.md has the long form):

- **A device's owner is a fencing token in the device's own hash** (`owner = "<worker>|<epoch>"`). A
  worker claims a device with a compare-and-set (`server.redis_store.CLAIM`) that bumps the epoch; every
  state write is checked against the token in the same Lua step. Two workers can never both write, and
  a worker that wakes up after losing a device finds out at its next write and drops it.
- **Liveness is per worker, not per device**: one key with a TTL (`<prefix>:worker:<id>`, renewed every
  `ttl_s / 6`) and the worker's forwarding subscription (`PUBSUB NUMSUB`). Renewing one key per worker
  costs the same for 1 or 10 000 devices; and a killed process loses its Redis connection at once, so
  its subscription count drops to zero and survivors see the death within one scan (`scan_s`) instead of
  waiting out a lease. The TTL covers what the socket cannot show (a frozen or partitioned host).
- **A worker acts only while its own liveness is fresh**: if it cannot renew for `ttl_s - margin`, it
  drops every device before anyone may take them (survivors wait for the key to expire).
- **Survivors take a dead worker's devices proactively** (its `owned` set), not only when the device next
  speaks: a device waiting for the rest of a reply says nothing, yet must get it.
- **Routing never waits for Redis on the hot path**: `route()` runs on the MQTT thread for every message,
  so another worker's device is looked up once and cached (`OWNER_CACHE_S`), and other workers'
  liveness comes from the scan's results (refreshed every `scan_s`). A stale entry costs one more hop,
  never a wrong write: the worker it reaches routes again (or, gone, has no subscriber: stolen) and the
  fence guards every write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from server.redis_store import Claimed, RedisStore

log = logging.getLogger("segue.ownership")
OWNER_CACHE_S = 10.0  # how long another worker's device is forwarded without asking Redis again


def worker_of(token: str) -> str:
    return token.rsplit("|", 1)[0] if token else ""


class Ownership:
    def __init__(self, store: RedisStore, worker: str, on_claimed: Callable[[str, Claimed, bool], None],
                 on_lost: Callable[[list[str]], None], ttl_s: float = 3.0, scan_s: float = 0.25) -> None:
        self.store = store
        self.client = store.client
        self.keys = store.keys
        self.worker = worker
        # (device, claimed, proactive): from whichever thread claimed; proactive: no message of the device
        # is on its way here (a scan took it), so the new owner must wake it itself
        self.on_claimed = on_claimed
        self.on_lost = on_lost
        self.ttl_s = ttl_s
        self.scan_s = scan_s
        self.tokens: dict[str, str] = {}
        self.takeovers = 0
        self._others: dict[str, tuple[str, float]] = {}  # device -> (owner worker, cached until)
        self._alive: dict[str, tuple[bool, float]] = {}
        self._renewed_at = 0.0
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> "Ownership":
        self.client.sadd(self.keys.workers(), self.worker)
        self._renew()
        self._thread = threading.Thread(target=self._run, name="ownership", daemon=True)
        self._thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        """Hand every device back (a clean shutdown: survivors claim at once, nothing to wait out)."""
        self._stopping.set()
        if self._thread:
            self._thread.join(2)
        if not release:
            return
        self.store.drain()  # the last snapshots first, then the hand-over
        with self._lock:
            for device, token in list(self.tokens.items()):
                try:
                    self.store.release(device, token)
                except Exception:
                    log.exception("device=%s release failed", device)
            self.tokens.clear()
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(self.keys.worker(self.worker), self.keys.owned(self.worker))
            pipe.srem(self.keys.workers(), self.worker)
            pipe.execute()
        except Exception:
            log.exception("could not deregister worker %s", self.worker)

    def valid(self) -> bool:
        """Is this worker's own liveness fresh enough to act? (Survivors wait the full TTL.)"""
        return time.monotonic() - self._renewed_at < self.ttl_s * 0.6

    def token(self, device_id: str) -> str | None:
        return self.tokens.get(device_id) if self.valid() else None

    def owns(self, device_id: str) -> bool:
        return device_id in self.tokens and self.valid()

    # -- routing ------------------------------------------------------------------------------------
    def route(self, device_id: str) -> str | None:
        """None: this worker owns the device (claiming it if nobody live does); else the owner's id."""
        if self.owns(device_id):
            return None
        now = time.monotonic()
        cached = self._others.get(device_id)
        if cached is not None and cached[1] > now and self.alive(cached[0], cached_s=self.scan_s * 4):
            return cached[0]
        with self._lock:
            if self.owns(device_id):
                return None
            for _ in range(3):
                current = self.store.owner(device_id)
                owner = worker_of(current)
                if owner and owner != self.worker and self.alive(owner):
                    self._others[device_id] = (owner, now + OWNER_CACHE_S)
                    return owner
                result = self.store.claim(device_id, current, self.worker)
                if isinstance(result, Claimed):
                    self._adopt(device_id, result, "taken over" if owner else "first contact")
                    return None
            return worker_of(self.store.owner(device_id)) or None

    def steal(self, device_id: str, dead: str) -> bool:
        """The owner `dead` did not take a forwarded message (its subscription is gone): claim the device
        if it still belongs to that worker. True if this worker owns it now."""
        with self._lock:
            self._alive[dead] = (False, time.monotonic() + self.scan_s / 2)  # believed for a scan period
            self._others.pop(device_id, None)
            current = self.store.owner(device_id)
            if worker_of(current) != dead:
                return self.owns(device_id)
            result = self.store.claim(device_id, current, self.worker)
            if isinstance(result, Claimed):
                self._adopt(device_id, result, f"taken over from {dead} (not subscribed)")
                return True
            return False

    def alive(self, worker: str, cached_s: float | None = None) -> bool:
        """The worker's liveness key exists and its forwarding channel has a subscriber. An answer younger
        than `cached_s` (default `scan_s / 2`) is reused; a death is still seen by the next scan."""
        now = time.monotonic()
        cached = self._alive.get(worker)
        if cached is not None and cached[1] > now - (self.scan_s / 2 if cached_s is None else cached_s):
            return cached[0]
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self.keys.worker(worker))
        pipe.pubsub_numsub(self.keys.forward(worker))
        exists, numsub = pipe.execute()
        alive = bool(exists) and bool(numsub and numsub[0][1])
        self._alive[worker] = (alive, now)
        return alive

    def lose(self, device_ids: list[str]) -> None:
        with self._lock:
            for device in device_ids:
                self.tokens.pop(device, None)
                self._others.pop(device, None)
        if device_ids:
            try:
                self.client.srem(self.keys.owned(self.worker), *device_ids)
            except Exception:
                pass
            log.warning("ownership lost: %s", ", ".join(device_ids))
            self.on_lost(device_ids)

    def _adopt(self, device_id: str, claimed: Claimed, why: str) -> None:
        if why != "first contact":
            self.takeovers += 1
        self._others.pop(device_id, None)
        self.client.sadd(self.keys.owned(self.worker), device_id)
        self.tokens[device_id] = claimed.token
        log.info("device=%s owned by %s (epoch %d): %s", device_id, self.worker, claimed.epoch, why)
        self.on_claimed(device_id, claimed, "worker gone" in why)

    # -- liveness and takeover ------------------------------------------------------------------------
    def _renew(self) -> None:
        started = time.monotonic()
        self.client.set(self.keys.worker(self.worker), "1", px=int(self.ttl_s * 1000))
        self._renewed_at = started

    def _run(self) -> None:
        last_renew = 0.0
        while not self._stopping.wait(self.scan_s):
            now = time.monotonic()
            try:
                if now - last_renew >= self.ttl_s / 6:
                    self._renew()
                    last_renew = now
                self.scan()
            except Exception as exc:
                log.warning("ownership upkeep failed: %s", exc)
            if not self.valid() and self.tokens:
                self.lose(list(self.tokens))  # we may no longer be believed alive: stop acting

    def scan(self) -> None:
        """Claim the devices of workers that are gone (no liveness key, or no forwarding subscriber)."""
        if not self.valid():
            return
        for raw in self.client.smembers(self.keys.workers()):
            other = raw.decode()
            if other == self.worker or self.alive(other):
                continue
            devices = [d.decode() for d in self.client.smembers(self.keys.owned(other))]
            for device in devices:
                with self._lock:
                    current = self.store.owner(device)
                    if worker_of(current) == other:
                        result = self.store.claim(device, current, self.worker)
                        if isinstance(result, Claimed):
                            self._adopt(device, result, f"taken over from {other} (worker gone)")
                self.client.srem(self.keys.owned(other), device)
            if not self.client.scard(self.keys.owned(other)) and not self.client.exists(self.keys.worker(other)):
                self.client.srem(self.keys.workers(), other)
