"""The fleet registry: devices, their credentials, the claim allow-list and seen claim nonces, in
SQLite. It holds password hashes and certificate serials, never a plain-text secret."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
  auth TEXT NOT NULL CHECK (auth IN ('password', 'cert')),
  enrolled_at REAL NOT NULL,
  revoked_at REAL,
  last_seen REAL,
  last_status TEXT,
  source TEXT NOT NULL,
  serial TEXT
);
CREATE TABLE IF NOT EXISTS credentials (
  username TEXT NOT NULL,
  device_id TEXT,
  role TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('password', 'cert')),
  generation INTEGER NOT NULL,
  pw_hash TEXT,
  cert_serial TEXT,
  state TEXT NOT NULL CHECK (state IN ('active', 'retired', 'revoked')),
  created_at REAL NOT NULL,
  PRIMARY KEY (username, generation)
);
CREATE TABLE IF NOT EXISTS allowlist (
  serial TEXT PRIMARY KEY,
  device_id TEXT NOT NULL,
  added_at REAL NOT NULL,
  enrolled_nonce TEXT,
  enrolled_pubkey TEXT,
  enrolled_at REAL
);
CREATE TABLE IF NOT EXISTS claim_nonces (
  nonce TEXT PRIMARY KEY,
  serial TEXT NOT NULL,
  seen_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Device:
    id: str
    state: str
    auth: str
    enrolled_at: float
    revoked_at: float | None
    last_seen: float | None
    last_status: str | None
    source: str
    serial: str | None


@dataclass(frozen=True)
class Credential:
    username: str
    device_id: str | None
    role: str
    kind: str
    generation: int
    pw_hash: str | None
    cert_serial: str | None
    state: str
    created_at: float


@dataclass(frozen=True)
class AllowEntry:
    serial: str
    device_id: str
    added_at: float
    enrolled_nonce: str | None
    enrolled_pubkey: str | None
    enrolled_at: float | None


class Registry:
    """One SQLite file. Methods are small and transactional; callers compose them."""

    def __init__(self, path: Path) -> None:
        new = not path.exists()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        if new:
            os.chmod(path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def transaction(self) -> "_Tx":
        return _Tx(self)

    def _q(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args))

    # meta
    def get_meta(self, key: str) -> str | None:
        rows = self._q("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._q("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # devices
    def device(self, device_id: str) -> Device | None:
        rows = self._q("SELECT * FROM devices WHERE id = ?", (device_id,))
        return Device(*rows[0]) if rows else None  # type: ignore[arg-type]

    def devices(self) -> list[Device]:
        return [Device(*r) for r in self._q("SELECT * FROM devices ORDER BY id")]  # type: ignore[arg-type]

    def add_device(self, device_id: str, auth: str, source: str, serial: str | None = None) -> None:
        self._q(
            "INSERT INTO devices (id, state, auth, enrolled_at, source, serial) VALUES (?, 'active', ?, ?, ?, ?)",
            (device_id, auth, time.time(), source, serial),
        )

    def set_device_state(self, device_id: str, state: str) -> None:
        revoked_at = time.time() if state == "revoked" else None
        self._q("UPDATE devices SET state = ?, revoked_at = ? WHERE id = ?", (state, revoked_at, device_id))

    def reactivate_device(self, device_id: str, source: str, serial: str | None) -> None:
        self._q(
            "UPDATE devices SET state = 'active', revoked_at = NULL, enrolled_at = ?, source = ?, serial = ? WHERE id = ?",
            (time.time(), source, serial, device_id),
        )

    def mark_seen(self, device_id: str, status: str) -> None:
        self._q(
            "UPDATE devices SET last_seen = ?, last_status = ? WHERE id = ?",
            (time.time(), status, device_id),
        )

    # credentials
    def credentials(self, device_id: str | None = None, *, role: str | None = None) -> list[Credential]:
        sql, args = "SELECT * FROM credentials WHERE 1=1", []
        if device_id is not None:
            sql += " AND device_id = ?"
            args.append(device_id)
        if role is not None:
            sql += " AND role = ?"
            args.append(role)
        rows = self._q(sql + " ORDER BY username, generation", tuple(args))
        return [Credential(*r) for r in rows]  # type: ignore[arg-type]

    def active_credentials(self) -> list[Credential]:
        rows = self._q("SELECT * FROM credentials WHERE state = 'active' ORDER BY username, generation")
        return [Credential(*r) for r in rows]  # type: ignore[arg-type]

    def add_credential(self, cred: Credential) -> None:
        self._q(
            "INSERT INTO credentials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (cred.username, cred.device_id, cred.role, cred.kind, cred.generation, cred.pw_hash,
             cred.cert_serial, cred.state, cred.created_at),
        )

    def set_credential_state(self, username: str, generation: int, state: str) -> None:
        self._q(
            "UPDATE credentials SET state = ? WHERE username = ? AND generation = ?",
            (state, username, generation),
        )

    def revoked_cert_serials(self) -> list[int]:
        rows = self._q(
            "SELECT cert_serial FROM credentials WHERE kind = 'cert' AND state != 'active' AND cert_serial IS NOT NULL"
        )
        return [int(str(r[0])) for r in rows]

    # claim allow-list
    def allow(self, serial: str, device_id: str) -> bool:
        """Add a serial; False if it was already listed (the entry is left as it is)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO allowlist (serial, device_id, added_at) VALUES (?, ?, ?)",
                (serial, device_id, time.time()),
            )
            return cur.rowcount == 1

    def allow_entry(self, serial: str) -> AllowEntry | None:
        rows = self._q("SELECT * FROM allowlist WHERE serial = ?", (serial,))
        return AllowEntry(*rows[0]) if rows else None  # type: ignore[arg-type]

    def allow_entries(self) -> list[AllowEntry]:
        return [AllowEntry(*r) for r in self._q("SELECT * FROM allowlist ORDER BY serial")]  # type: ignore[arg-type]

    def reset_allow(self, serial: str) -> None:
        self._q(
            "UPDATE allowlist SET enrolled_nonce = NULL, enrolled_pubkey = NULL, enrolled_at = NULL WHERE serial = ?",
            (serial,),
        )

    def mark_claimed(self, serial: str, nonce: str, pubkey: str) -> None:
        self._q(
            "UPDATE allowlist SET enrolled_nonce = ?, enrolled_pubkey = ?, enrolled_at = ? WHERE serial = ?",
            (nonce, pubkey, time.time(), serial),
        )

    def nonce_seen(self, nonce: str) -> str | None:
        rows = self._q("SELECT serial FROM claim_nonces WHERE nonce = ?", (nonce,))
        return str(rows[0][0]) if rows else None

    def remember_nonce(self, nonce: str, serial: str) -> None:
        self._q("INSERT OR IGNORE INTO claim_nonces VALUES (?, ?, ?)", (nonce, serial, time.time()))


class _Tx:
    def __init__(self, reg: Registry) -> None:
        self.reg = reg

    def __enter__(self) -> Registry:
        self.reg._lock.acquire()
        self.reg._db.execute("BEGIN IMMEDIATE")
        return self.reg

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            self.reg._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.reg._lock.release()


def iter_rows(path: Path) -> Iterator[list[str]]:
    """Rows of a small CSV file, skipping blank lines, comments and a header row."""
    import csv

    with path.open(newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            cells = [c.strip() for c in row]
            if not cells or not cells[0] or cells[0].startswith("#"):
                continue
            if i == 0 and cells[0].lower() in ("device_id", "id", "serial"):
                continue
            yield cells
