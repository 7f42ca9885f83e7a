"""Wire messages and their codecs: the executable form of docs/protocol.md.

One module per message family (session, speech, playback, audio), one frozen dataclass per message,
the envelope and topics kept apart. Every decoder raises `icp.errors.ProtocolError` naming the field.
"""

from __future__ import annotations

from icp.messages.audio import AudioFrame, split_pcm
from icp.messages.base import Body, Direction
from icp.messages.common import Cursor
from icp.messages.envelope import MAX_JSON_BYTES, PROTOCOL_VERSION, Envelope
from icp.messages.envelope import decode as _decode
from icp.messages.envelope import encode
from icp.messages.playback import Action, Control, PlaybackEvent, PlaybackReport, Segment
from icp.messages.sequencing import SequenceTracker, Verdict
from icp.messages.session import (
    Capability, DeviceEvent, DeviceState, DeviceStatus, EngineState, EventType, Hello, Telemetry,
)
from icp.messages.speech import Interrupt, Utterance, Wake, WakeSource
from icp.messages.topics import Topic, Topics

BODIES: tuple[type[Body], ...] = (
    Hello, Wake, Utterance, Interrupt, PlaybackReport, DeviceState, Telemetry, DeviceEvent,
    Segment, Control, EngineState,
)
REGISTRY: dict[str, type[Body]] = {cls.TYPE: cls for cls in BODIES}
# topic level -> message type (the `state` topics carry device_state / engine_state)
TOPIC_TYPES: dict[tuple[Direction, str], str] = {
    (cls.DIRECTION, "state" if cls.TYPE in ("device_state", "engine_state") else cls.TYPE): cls.TYPE
    for cls in BODIES
}


def topic_level(body: Body | type[Body]) -> str:
    return "state" if body.TYPE in ("device_state", "engine_state") else body.TYPE


def decode(payload: bytes, direction: Direction, level: str) -> Envelope:
    """Decode a JSON message that arrived on `<root>/<id>/<direction>/<level>`."""
    from icp.errors import ProtocolError

    kind = TOPIC_TYPES.get((direction, level))
    if kind is None:
        raise ProtocolError("topic", f"no JSON message is carried on '{direction}/{level}'")
    return _decode(payload, REGISTRY, expected_type=kind)


__all__ = [
    "Action", "AudioFrame", "BODIES", "Body", "Capability", "Control", "Cursor", "DeviceEvent", "DeviceState",
    "DeviceStatus", "Direction", "EngineState", "Envelope", "EventType", "Hello", "Interrupt", "MAX_JSON_BYTES",
    "PROTOCOL_VERSION", "PlaybackEvent", "PlaybackReport", "REGISTRY", "Segment", "SequenceTracker",
    "Telemetry", "Topic", "Topics", "Utterance", "Verdict", "Wake", "WakeSource", "decode", "encode",
    "split_pcm", "topic_level",
]
