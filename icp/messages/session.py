"""Session and monitoring messages: hello, device state, telemetry, engine state."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, Mapping

from icp.errors import ProtocolError
from icp.messages import rules
from icp.messages.base import Body, Direction


class Capability(StrEnum):
    WAKE = "wake"
    ASR = "asr"
    AEC = "aec"
    VAD = "vad"
    GPIO = "gpio"
    BUTTON = "button"


class DeviceStatus(StrEnum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    PAUSED = "paused"
    MUTED = "muted"
    ERROR = "error"


SAMPLE_RATE = rules.integer(8000, 48000)


@dataclass(frozen=True, slots=True)
class Hello(Body):
    TYPE: ClassVar[str] = "hello"
    DIRECTION: ClassVar[Direction] = Direction.UP
    RULES: ClassVar[dict[str, rules.Rule]] = {
        "sample_rate": SAMPLE_RATE,
        "capabilities": rules.list_of(rules.enum(Capability), 16, unique=True),
        "software": rules.text(64),
    }
    sample_rate: int
    capabilities: tuple[Capability, ...] = ()
    software: str = ""


@dataclass(frozen=True, slots=True)
class DeviceState(Body):
    TYPE: ClassVar[str] = "device_state"
    DIRECTION: ClassVar[Direction] = Direction.UP
    RULES: ClassVar[dict[str, rules.Rule]] = {
        "state": rules.enum(DeviceStatus),
        "muted": rules.boolean(),
        "held_threads": rules.integer(0, 64),
    }
    state: DeviceStatus
    muted: bool = False
    held_threads: int = 0


INTERRUPTION_KEYS = ("BRANCH", "MODIFY", "CANCEL", "ABSORB")


def _interruption_counts(path: str, value: Any) -> Mapping[str, int]:
    if not isinstance(value, dict):
        raise ProtocolError(path, "must be an object")
    out: dict[str, int] = {}
    for key, count in value.items():
        if key not in INTERRUPTION_KEYS:
            raise ProtocolError(f"{path}.{key}", f"unknown field (allowed: {', '.join(INTERRUPTION_KEYS)})")
        out[key] = rules.integer(0, 2**53)(f"{path}.{key}", count)
    return MappingProxyType(out)


@dataclass(frozen=True, slots=True)
class Telemetry(Body):
    TYPE: ClassVar[str] = "telemetry"
    DIRECTION: ClassVar[Direction] = Direction.UP
    RULES: ClassVar[dict[str, rules.Rule]] = {
        "uptime_s": rules.number(0, 1e10),
        "cpu_temp_c": rules.optional(rules.number(-50, 150)),
        "wake_count": rules.integer(0, 2**53),
        "interruptions": _interruption_counts,
        "cursor_lag_ms": rules.optional(rules.number(0, 1e9)),
        "rtt_ms": rules.optional(rules.number(0, 1e9)),
        "false_pauses": rules.integer(0, 2**53),
        "false_pause_ms": rules.number(0, 1e12),
    }
    uptime_s: float
    cpu_temp_c: float | None = None
    wake_count: int = 0
    interruptions: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    cursor_lag_ms: float | None = None
    rtt_ms: float | None = None
    false_pauses: int = 0  # optimistic pauses that were not speech (since the process started)
    false_pause_ms: float = 0.0  # their summed length


@dataclass(frozen=True, slots=True)
class EngineState(Body):
    TYPE: ClassVar[str] = "engine_state"
    DIRECTION: ClassVar[Direction] = Direction.DOWN
    RULES: ClassVar[dict[str, rules.Rule]] = {
        "state": rules.ident(re.compile(r"[a-z_]{1,32}")),
        "held_threads": rules.integer(0, 64),
    }
    state: str
    held_threads: int = 0


class EventType(StrEnum):
    WAKE = "wake"
    INTERRUPT_BRANCH = "interrupt_branch"
    INTERRUPT_MODIFY = "interrupt_modify"
    INTERRUPT_CANCEL = "interrupt_cancel"
    INTERRUPT_ABSORB = "interrupt_absorb"
    AUDIO_LOST = "audio_lost"          # the sound card stopped working (the device retries, then exits)
    AUDIO_RESTORED = "audio_restored"  # it works again


@dataclass(frozen=True, slots=True)
class DeviceEvent(Body):
    """For dashboards (Home Assistant's event entity reads `event_type`); the engine ignores it."""

    TYPE: ClassVar[str] = "event"
    DIRECTION: ClassVar[Direction] = Direction.UP
    RULES: ClassVar[dict[str, rules.Rule]] = {"event_type": rules.enum(EventType)}
    event_type: EventType
