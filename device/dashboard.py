"""Dashboard commands: plain-text `down/mute` (`ON` / `OFF`) and `down/restart` (`PRESS`).

Home Assistant's MQTT switch and button publish plain payloads, not the JSON envelopes of the
engine, so these two topics have their own, stricter, rule: exactly these payloads, nothing else.
A retained restart is refused (it would restart the device again at every connect).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from icp.messages.dashboard import PAYLOADS as _WIRE_PAYLOADS

# The wire's payloads (icp.messages.dashboard), as the bytes that arrive.
PAYLOADS: dict[str, tuple[bytes, ...]] = {k: tuple(p.encode() for p in v) for k, v in _WIRE_PAYLOADS.items()}


@dataclass(frozen=True)
class DashboardCommand:
    command: str  # "mute" | "restart"
    value: str    # "ON" / "OFF" | "PRESS"


def parse(level: str, payload: bytes, retained: bool = False) -> Union[DashboardCommand, str]:
    """The command, or the reason it is rejected."""
    allowed = PAYLOADS.get(level)
    if allowed is None:
        return f"{level!r} is not a dashboard command"
    if payload not in allowed:
        shown = payload[:32].decode("utf-8", "replace")
        more = "..." if len(payload) > 32 else ""
        return f"{level} payload must be {' or '.join(a.decode() for a in allowed)}, got {shown!r}{more}"
    if level == "restart" and retained:
        return "a retained restart is refused (it would restart the device at every connect)"
    return DashboardCommand(level, payload.decode())
