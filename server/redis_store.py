"""Conversation state in Redis, so that any engine worker can continue a device another one served.

One hash per device (`<prefix>:dev:{<id>}`, the braces a Redis Cluster hash tag: every key of a device
lives in one slot) holds everything a worker needs to continue it:

    owner        "<worker>|<epoch>": the fencing token of the worker allowed to write (server.ownership)
    epoch        bumped on every claim; the token's second half
    snapshot     the session snapshot (icp.engine `snapshot()`) plus `live`: the in-flight state
                 (server.takeover) a new owner needs to carry a reply on
    inbound      [session, last_seq]: the device's sequence as the engine has accepted it (replays stay refused)
    out_session  the engine's own downlink session id; the downlink seq restarts at epoch * 2**32 after a
                 claim, so a new owner's messages always follow the old owner's, and the device's replay
                 check refuses anything a stale owner still sends once the new one has spoken
    updated      wall-clock time of the last write

Every write is fenced: a Lua script compares `owner` with the writer's token in the same step, so a
worker that lost a device (paused past its lease, partitioned) can never overwrite its new owner's state.
Writes are write-behind: the engine marks a device dirty after each event and writes the dirty ones
every `flush_s` in one pipeline (server.engine), so a killed worker loses at most that much progress.

Off the loop thread (`start_writer()`, what a worker runs): the engine's loop serialises the snapshots
(they must be read where they change) and a writer thread does the Redis round trips, so the loop never
waits for Redis: a loop blocked on every 50 ms flush and every event-log write (1-2 ms each, far more
when the machine is busy) delays whatever device event arrives meanwhile. A refused write then reaches
the engine through `on_lost` (server.ownership: the device is dropped on the loop thread) instead of
an exception; a clean shutdown drains the writer (`drain()`) before handing devices back.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis

from icp.messages import SequenceTracker
from server.storage import LostOwnership

__all__ = ["Claimed", "Keys", "LostOwnership", "RedisStore", "RedisUrl", "connect"]

log = logging.getLogger("segue.redis")

SEQ_BLOCK = 2**32  # downlink seq space per ownership epoch (MAX_SEQ 2**53: 2**21 claims per device)

# Claim a device if its owner is still what the caller saw (compare-and-set on one key: Cluster-safe).
CLAIM = """
local cur = redis.call('HGET', KEYS[1], 'owner') or ''
if cur ~= ARGV[1] then return {0, cur} end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
local token = ARGV[2] .. '|' .. epoch
redis.call('HSET', KEYS[1], 'owner', token)
redis.call('HSETNX', KEYS[1], 'out_session', ARGV[3])
return {1, token}
"""

# Write state only while the writer's token is still the owner (the fence).
FENCED_SAVE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'snapshot', ARGV[2], 'inbound', ARGV[3], 'updated', ARGV[4])
return 1
"""

# Give a device up (clean shutdown): only the holder of the token can.
RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', '')
return 1
"""


@dataclass(frozen=True)
class RedisUrl:
    host: str
    port: int
    db: int

    @classmethod
    def parse(cls, url: str) -> "RedisUrl":
        parts = urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname:
            raise ValueError(f"a Redis store is redis://HOST:PORT/DB, got {url!r}")
        db = parts.path.strip("/") or "0"
        if not db.isdigit():
            raise ValueError(f"the Redis database must be a number, got {db!r} in {url!r}")
        return cls(parts.hostname, parts.port or 6379, int(db))


def connect(url: str) -> redis.Redis:
    where = RedisUrl.parse(url)
    return redis.Redis(host=where.host, port=where.port, db=where.db, socket_timeout=5,
                       socket_connect_timeout=5, health_check_interval=10)


class Keys:
    """The key layout (docs/fleet-scale.md); `prefix` separates fleets sharing one Redis."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def device(self, device_id: str) -> str:
        return f"{self.prefix}:dev:{{{device_id}}}"

    def log(self, device_id: str) -> str:
        return f"{self.prefix}:dev:{{{device_id}}}:log"

    def worker(self, worker: str) -> str:
        return f"{self.prefix}:worker:{worker}"

    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def owned(self, worker: str) -> str:
        return f"{self.prefix}:owned:{worker}"

    def forward(self, worker: str) -> str:
        return f"{self.prefix}:fwd:{worker}"


@dataclass(frozen=True)
class Claimed:
    """What a successful claim brings: the token and the state to continue from."""

    token: str
    snapshot: dict[str, Any] | None
    inbound: tuple[str, int] | None
    out_session: str

    @property
    def epoch(self) -> int:
        return int(self.token.rsplit("|", 1)[1])


class RedisStore:
    """The engine's `Store` over Redis (fenced, write-behind). `tokens(device)` gives this worker's
    fencing token for a device (None: not owned); `trackers` are the inbound sequence trackers."""

    write_behind = True
    EVENT_LOG_MAX = 500

    def __init__(self, client: redis.Redis, prefix: str, tokens: Callable[[str], str | None],
                 trackers: Mapping[str, SequenceTracker] | None = None) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.tokens = tokens
        self.trackers: Mapping[str, SequenceTracker] = trackers if trackers is not None else {}
        self._claim = client.register_script(CLAIM)
        self._save = client.register_script(FENCED_SAVE)
        self._release = client.register_script(RELEASE)
        self._writes: queue.Queue[Any] | None = None  # start_writer(): (device, args) saves, log entries, drains
        self._writer: threading.Thread | None = None
        self.on_lost: Callable[[list[str]], None] = lambda device_ids: None

    # -- the writer thread ----------------------------------------------------------------------------
    def start_writer(self, on_lost: Callable[[list[str]], None]) -> "RedisStore":
        """Write from a thread of its own from now on; `on_lost(devices)` when the fence refuses a write."""
        self.on_lost = on_lost
        self._writes = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="redis-writer", daemon=True)
        self._writer.start()
        return self

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written (a clean shutdown, before releasing devices)."""
        if self._writes is None or self._writer is None or not self._writer.is_alive():
            return True
        done = threading.Event()
        self._writes.put(done)
        return done.wait(timeout)

    def _write_loop(self) -> None:
        assert self._writes is not None
        while True:
            items = [self._writes.get()]
            while True:  # everything queued meanwhile goes in the same pipeline
                try:
                    items.append(self._writes.get_nowait())
                except queue.Empty:
                    break
            saves: dict[str, list[str]] = {}  # a device's latest snapshot is enough
            logs: list[tuple[str, str]] = []
            for item in items:
                if isinstance(item, tuple) and item[0] == "save":
                    saves[item[1]] = item[2]
                elif isinstance(item, tuple) and item[0] == "log":
                    logs.append((item[1], item[2]))
            try:
                lost = self._write(list(saves.items()), logs)
                if lost:
                    self.on_lost(lost)
            except Exception:
                log.exception("could not write %d sessions to Redis", len(saves))
            for item in items:
                if isinstance(item, threading.Event):
                    item.set()
            if None in items:
                return

    def _write(self, saves: list[tuple[str, list[str]]], logs: list[tuple[str, str]]) -> list[str]:
        """One pipeline: fenced snapshot writes (args: token, snapshot, inbound, time) and event-log
        appends. The devices whose write the fence refused."""
        if not saves and not logs:
            return []
        pipe = self.client.pipeline(transaction=False)
        for device_id, args in saves:
            self._save(keys=[self.keys.device(device_id)], args=args, client=pipe)
        for device_id, entry in logs:
            key = self.keys.log(device_id)
            pipe.rpush(key, entry)
            pipe.ltrim(key, -self.EVENT_LOG_MAX, -1)
        results = pipe.execute()
        return [device for (device, _), ok in zip(saves, results) if not ok]

    # -- ownership primitives (server.ownership decides when) ---------------------------------------
    def owner(self, device_id: str) -> str:
        value = self.client.hget(self.keys.device(device_id), "owner")
        return value.decode() if value else ""

    def claim(self, device_id: str, expected: str, worker: str) -> Claimed | str:
        """Take the device if its owner is still `expected`; else the owner found (a str)."""
        key = self.keys.device(device_id)
        won, token = self._claim(keys=[key], args=[expected, worker, secrets.token_hex(6)])
        token = token.decode() if isinstance(token, bytes) else str(token)
        if not won:
            return token
        snapshot, inbound, out_session = self.client.hmget(key, "snapshot", "inbound", "out_session")
        seq = json.loads(inbound) if inbound else None
        return Claimed(token, json.loads(snapshot) if snapshot else None,
                       (str(seq[0]), int(seq[1])) if seq and seq[0] else None, out_session.decode())

    def release(self, device_id: str, token: str) -> bool:
        return bool(self._release(keys=[self.keys.device(device_id)], args=[token]))

    # -- the Store interface ------------------------------------------------------------------------
    def load(self, device_id: str) -> dict[str, Any] | None:
        data = self.client.hget(self.keys.device(device_id), "snapshot")
        return json.loads(data) if data else None

    def save(self, device_id: str, snapshot: dict[str, Any]) -> None:
        self.save_many([(device_id, snapshot)])

    def save_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Write every snapshot whose device this worker still owns, in one pipeline. Without a writer
        thread: raise `LostOwnership` naming the ones the fence refused (they were written by nobody);
        with one: serialise here, write there, report refusals to `on_lost`."""
        saves: list[tuple[str, list[str]]] = []
        now = str(time.time())
        for device_id, snapshot in items:
            token = self.tokens(device_id)
            if token is None:
                continue
            tracker = self.trackers.get(device_id)
            inbound = json.dumps([tracker.session, tracker.last_seq] if tracker is not None else None)
            saves.append((device_id, [token, json.dumps(snapshot, separators=(",", ":")), inbound, now]))
        if self._writes is not None:
            for device_id, args in saves:
                self._writes.put(("save", device_id, args))
            return
        lost = self._write(saves, [])
        if lost:
            raise LostOwnership(lost)

    def outbound(self, device_id: str) -> tuple[str, int]:
        """The engine's downlink (session, first seq) for a device this worker owns."""
        token = self.tokens(device_id)
        session = self.client.hget(self.keys.device(device_id), "out_session")
        epoch = int(token.rsplit("|", 1)[1]) if token else 0
        return (session.decode() if session else secrets.token_hex(6)), epoch * SEQ_BLOCK + 1

    def log_event(self, device_id: str, kind: str, data: dict[str, Any]) -> None:
        entry = json.dumps({"at": time.time(), "kind": kind, "data": data}, separators=(",", ":"), default=str)
        if self._writes is not None:
            self._writes.put(("log", device_id, entry))
        else:
            self._write([], [(device_id, entry)])

    def events(self, device_id: str) -> list[tuple[str, dict[str, Any]]]:
        entries = [json.loads(raw) for raw in self.client.lrange(self.keys.log(device_id), 0, -1)]
        return [(e["kind"], e["data"]) for e in entries]

    def close(self) -> None:
        if self._writes is not None and self._writer is not None:
            self._writes.put(None)
            self._writer.join(5)
        self.client.close()
