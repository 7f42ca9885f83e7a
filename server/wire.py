"""From MQTT messages to core events, with every check the protocol asks for.

This module validates and translates; it decides nothing about the conversation. Rejections carry a
reason that the caller logs and counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from icp import events as E
from icp.errors import ProtocolError
from icp.messages import (
    MAX_JSON_BYTES, DeviceEvent, DeviceState, Direction, Hello, Interrupt, PlaybackReport, SequenceTracker, Telemetry,
    Topics, Utterance, Wake, decode,
)

STATUS_PAYLOADS = {b"online", b"offline"}


@dataclass(frozen=True, slots=True)
class Accepted:
    device_id: str
    events: tuple[E.Event, ...]  # empty: valid, but only for monitoring (telemetry, device state, online)
    kind: str


@dataclass(frozen=True, slots=True)
class Rejected:
    device_id: str | None
    reason: str


@dataclass
class Inbound:
    """Per-device sequence trackers and rejection counters for one engine worker."""

    topics: Topics
    allowed_devices: frozenset[str] = frozenset()
    trackers: dict[str, SequenceTracker] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)

    def translate(self, topic: str, payload: bytes, now: float) -> Accepted | Rejected:
        result = self._translate(topic, payload, now)
        if isinstance(result, Rejected):
            self.rejected[result.reason.split(":")[0]] += 1
        return result

    def _translate(self, topic: str, payload: bytes, now: float) -> Accepted | Rejected:
        try:
            where = self.topics.parse(topic)
        except ProtocolError as exc:
            return Rejected(None, f"bad topic: {exc}")
        device = where.device_id
        if self.allowed_devices and device not in self.allowed_devices:
            return Rejected(device, "unknown device: not in allowed_devices")
        if where.direction is None:  # status
            if payload not in STATUS_PAYLOADS:
                return Rejected(device, f"bad status: payload must be online or offline, got {payload[:20]!r}")
            if payload == b"offline":
                return Accepted(device, (E.DeviceDisconnected(now),), "status")
            return Accepted(device, (), "status")
        if where.direction is not Direction.UP:
            return Rejected(device, f"wrong direction: the engine reads only up/ topics, got {topic}")
        if len(payload) > MAX_JSON_BYTES:
            return Rejected(device, f"oversized: {len(payload)} bytes > {MAX_JSON_BYTES}")
        try:
            env = decode(payload, Direction.UP, where.level)
        except ProtocolError as exc:
            return Rejected(device, f"invalid: {exc}")
        tracker = self.trackers.setdefault(device, SequenceTracker())
        verdict = tracker.check(env.session, env.seq, starts_session=isinstance(env.body, Hello))
        if not verdict.accepted:
            return Rejected(device, f"replay: {verdict.reason}")
        body = env.body
        event: E.Event | None
        if isinstance(body, Hello):
            event = E.DeviceConnected(now, new_session=verdict.new_session, sample_rate=body.sample_rate)
        elif isinstance(body, Wake):
            event = E.WakeDetected(now)
        elif isinstance(body, Utterance):
            cls = E.UtteranceFinal if body.final else E.UtterancePartial
            event = cls(now, body.utterance_id, body.text, body.hint)
        elif isinstance(body, Interrupt):
            event = E.InterruptReported(now, body.utterance_id, body.cursor, body.hint)
        elif isinstance(body, PlaybackReport):
            event = E.PlaybackReported(now, body.event, body.cursor, body.queued_ms)
        elif isinstance(body, (DeviceState, Telemetry, DeviceEvent)):
            event = None
        else:  # a down-only body cannot arrive here: decode() maps up/ levels to up/ types
            return Rejected(device, f"unexpected: {body.TYPE}")
        events = () if event is None else (event,)
        if verdict.adopted:  # the engine restarted while the device stayed connected
            events = (E.DeviceConnected(now, new_session=False),) + events
        return Accepted(device, events, body.TYPE)
