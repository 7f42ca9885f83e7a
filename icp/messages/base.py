"""The base of every JSON message body: declared rules in, plain JSON out."""

from __future__ import annotations

import dataclasses
from enum import Enum, StrEnum
from collections.abc import Mapping
from typing import Any, ClassVar

from icp.messages import rules
from icp.messages.common import Cursor, word_to_json
from icp.words import WordTiming


class Direction(StrEnum):
    UP = "up"  # device -> engine
    DOWN = "down"  # engine -> device


class Body:
    """Subclasses are frozen dataclasses declaring TYPE (the topic's last level), DIRECTION, RULES."""

    TYPE: ClassVar[str]
    DIRECTION: ClassVar[Direction]
    RULES: ClassVar[dict[str, rules.Rule]]
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> "Body":
        body = cls(**rules.check_fields("", fields, cls.RULES, cls.OPTIONAL))
        body.check()
        return body

    def check(self) -> None:
        """Rules across fields; raise ProtocolError."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, WordTiming):
        return word_to_json(value)
    if isinstance(value, Cursor):
        return {"segment": value.segment, "sample": value.sample}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
