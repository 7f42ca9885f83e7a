"""Password generation, Mosquitto's password hash, and writing secret files with tight modes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

#: Mosquitto 2.0's `$7$` format: PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt (as mosquitto_passwd).
PBKDF2_ITERATIONS = 101


def new_password() -> str:
    """32 random bytes, URL-safe base64 (43 characters, no padding)."""
    return secrets.token_urlsafe(32)


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_mosquitto_hash(password: str, hashed: str) -> bool:
    _, kind, iterations, salt, digest = hashed.split("$")
    if kind != "7":
        raise ValueError("only $7$ hashes are supported")
    mine = mosquitto_hash(password, salt=base64.b64decode(salt), iterations=int(iterations))
    return hmac.compare_digest(mine.rsplit("$", 1)[1], digest)


def make_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_file(path: Path, data: bytes | str, *, mode: int = 0o600, owner: str | None = None) -> Path:
    """Write atomically (temp file in the same directory, then rename), with `mode` from the start."""
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            import pwd

            entry = pwd.getpwnam(owner)
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
