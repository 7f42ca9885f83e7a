"""The one error type the core raises for bad input from the wire."""

from __future__ import annotations


class ProtocolError(ValueError):
    """A message broke docs/protocol.md. `field` names the offending field (dotted path)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)
