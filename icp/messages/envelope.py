"""The JSON envelope every control message travels in: version, type, id, session, sequence."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from icp.errors import ProtocolError
from icp.messages import rules
from icp.messages.base import Body

PROTOCOL_VERSION = 1
MAX_JSON_BYTES = 16 * 1024
ENVELOPE_KEYS = ("v", "type", "id", "session", "seq")


@dataclass(frozen=True, slots=True)
class Envelope:
    session: str
    seq: int
    id: str
    body: Body

    @property
    def type(self) -> str:
        return self.body.TYPE


def encode(envelope: Envelope) -> bytes:
    fields = envelope.body.to_json()
    # Encoding validates too: what we send must pass the peer's decoder.
    type(envelope.body).from_json(fields)
    rules.ident()("session", envelope.session)
    rules.ident()("id", envelope.id)
    rules.integer(0, rules.MAX_SEQ)("seq", envelope.seq)
    doc = {"v": PROTOCOL_VERSION, "type": envelope.type, "id": envelope.id,
           "session": envelope.session, "seq": envelope.seq, **fields}
    data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    if len(data) > MAX_JSON_BYTES:
        raise ProtocolError("", f"message is {len(data)} bytes, more than {MAX_JSON_BYTES}")
    return data


def decode(payload: bytes, registry: dict[str, type[Body]], expected_type: str | None = None) -> Envelope:
    if len(payload) > MAX_JSON_BYTES:
        raise ProtocolError("", f"message is {len(payload)} bytes, more than {MAX_JSON_BYTES}")
    try:
        doc: Any = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("", f"not valid UTF-8 JSON: {exc}") from None
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as exc:  # absurd numbers or nesting
        raise ProtocolError("", f"JSON too deep or a number too long: {type(exc).__name__}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("", "must be a JSON object")
    if "v" not in doc:
        raise ProtocolError("v", "missing")
    if type(doc["v"]) is not int or doc["v"] != PROTOCOL_VERSION:
        raise ProtocolError("v", f"unsupported version {doc['v']!r} (this side speaks {PROTOCOL_VERSION})")
    kind = rules.text(32, 1)("type", doc.get("type"))
    if expected_type is not None and kind != expected_type:
        raise ProtocolError("type", f"{kind!r} does not belong on a '{expected_type}' topic")
    cls = registry.get(kind)
    if cls is None:
        raise ProtocolError("type", f"unknown message type {kind!r}")
    msg_id = rules.ident()("id", doc.get("id"))
    session = rules.ident()("session", doc.get("session"))
    seq = rules.integer(0, rules.MAX_SEQ)("seq", doc.get("seq"))
    body_fields = {k: v for k, v in doc.items() if k not in ENVELOPE_KEYS}
    return Envelope(session, seq, msg_id, cls.from_json(body_fields))


def _reject_constant(name: str) -> Any:
    raise ProtocolError("", f"{name} is not allowed in JSON")
