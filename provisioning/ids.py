"""Names the fleet hands out or accepts from the wire, and their rules (the wire's own patterns come
from `icp.messages`; only fleet policy is declared here)."""

from __future__ import annotations

import re

from icp.messages.claim import SERIAL_PATTERN as SERIAL_RE
from icp.messages.rules import DEVICE_ID_PATTERN as DEVICE_ID_RE
from icp.messages.topics import RESERVED_DEVICE_IDS as RESERVED_IDS

#: Topic roots the fleet accepts: one topic level, no wildcards (narrower than `icp.messages.Topics`,
#: which allows any root without wildcards, so that one ACL line per tree stays simple).
TOPIC_ROOT_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

#: Service usernames hold a dot, which device ids never do, so they can never collide.
ENGINE_USER = "svc.engine"
FLEET_USER = "svc.fleet"
MONITOR_USER = "svc.monitor"
CLAIM_USER = "svc.claim"
SERVICE_USERS = (ENGINE_USER, FLEET_USER, MONITOR_USER, CLAIM_USER)


def check_device_id(value: str) -> str:
    if not DEVICE_ID_RE.fullmatch(value):
        raise ValueError(f"bad device id {value!r}: must match {DEVICE_ID_RE.pattern}")
    if value in RESERVED_IDS:
        raise ValueError(f"device id {value!r} is reserved")
    return value


def check_serial(value: str) -> str:
    if not SERIAL_RE.fullmatch(value):
        raise ValueError(f"bad serial {value!r}: must match {SERIAL_RE.pattern}")
    return value


def check_topic_root(value: str) -> str:
    if not TOPIC_ROOT_RE.fullmatch(value):
        raise ValueError(f"bad topic root {value!r}: must match {TOPIC_ROOT_RE.pattern}")
    return value


def device_username(device_id: str, generation: int) -> str:
    """Broker username of a device's password credential: the id, then `<id>.<n>` after rotations."""
    return device_id if generation == 1 else f"{device_id}.{generation}"


def default_device_id(serial: str) -> str:
    """The device id a serial gets when the allow-list names none: the serial in lower case."""
    return check_device_id(serial.lower())
