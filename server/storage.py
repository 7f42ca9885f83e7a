"""Persistence of conversations and an event log.

Behind one small interface so that a shared store (Redis, when several engine workers split a fleet)
can replace SQLite without touching the engine. SQLite is the default: one file under the state
directory, WAL mode, so a restart loses nothing that was persisted.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol


class LostOwnership(Exception):
    """A fenced write found another owner (a shared store): this worker must stop acting for the device."""

    def __init__(self, device_ids: list[str]) -> None:
        super().__init__(f"ownership lost for {', '.join(device_ids)}")
        self.device_ids = device_ids


class Store(Protocol):
    def load(self, device_id: str) -> dict[str, Any] | None: ...

    def save(self, device_id: str, snapshot: dict[str, Any]) -> None: ...

    def log_event(self, device_id: str, kind: str, data: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class SQLiteStore:
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS conversations (
        device_id TEXT PRIMARY KEY, version INTEGER NOT NULL, snapshot TEXT NOT NULL, updated REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, at REAL NOT NULL,
        kind TEXT NOT NULL, data TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS events_device ON events (device_id, id);
    """

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / "segue.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(self.SCHEMA)

    def load(self, device_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT snapshot FROM conversations WHERE device_id = ?", (device_id,)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def save(self, device_id: str, snapshot: dict[str, Any]) -> None:
        data = json.dumps(snapshot, separators=(",", ":"))
        with self._lock:
            self._db.execute(
                "INSERT INTO conversations (device_id, version, snapshot, updated) VALUES (?, 1, ?, ?) "
                "ON CONFLICT(device_id) DO UPDATE SET version = version + 1, snapshot = excluded.snapshot, "
                "updated = excluded.updated",
                (device_id, data, time.time()),
            )

    def log_event(self, device_id: str, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO events (device_id, at, kind, data) VALUES (?, ?, ?, ?)",
                (device_id, time.time(), kind, json.dumps(data, separators=(",", ":"), default=str)),
            )

    def events(self, device_id: str) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, data FROM events WHERE device_id = ? ORDER BY id", (device_id,)
            ).fetchall()
        return [(kind, json.loads(data)) for kind, data in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class MemoryStore:
    """For tests and the demo: the same interface, nothing on disk."""

    def __init__(self) -> None:
        self.snapshots: dict[str, str] = {}
        self.event_log: list[tuple[str, str, dict[str, Any]]] = []

    def load(self, device_id: str) -> dict[str, Any] | None:
        data = self.snapshots.get(device_id)
        return json.loads(data) if data else None

    def save(self, device_id: str, snapshot: dict[str, Any]) -> None:
        self.snapshots[device_id] = json.dumps(snapshot)

    def log_event(self, device_id: str, kind: str, data: dict[str, Any]) -> None:
        self.event_log.append((device_id, kind, data))

    def close(self) -> None:
        pass


def open_store(backend: str, state_dir: str | Path) -> Store:
    if backend == "sqlite":
        return SQLiteStore(state_dir)
    if backend == "memory":
        return MemoryStore()
    raise ValueError(f"storage backend {backend!r} is not available (sqlite, memory)")
