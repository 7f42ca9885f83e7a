"""MQTT topic names: `<root>/<device id>/up|down/<level>` and `<root>/<device id>/status`."""

from __future__ import annotations

from dataclasses import dataclass

from icp.errors import ProtocolError
from icp.messages.base import Direction
from icp.messages.rules import DEVICE_ID_PATTERN

STATUS = "status"


@dataclass(frozen=True, slots=True)
class Topic:
    device_id: str
    direction: Direction | None  # None for the status topic
    level: str


@dataclass(frozen=True, slots=True)
class Topics:
    root: str = "segue"

    def __post_init__(self) -> None:
        if not self.root or any(c in self.root for c in "+#") or self.root.startswith("$"):
            raise ValueError(f"topic root {self.root!r} must be non-empty, without + # or a leading $")

    def up(self, device_id: str, level: str) -> str:
        return f"{self.root}/{device_id}/up/{level}"

    def down(self, device_id: str, level: str) -> str:
        return f"{self.root}/{device_id}/down/{level}"

    def status(self, device_id: str) -> str:
        return f"{self.root}/{device_id}/{STATUS}"

    def device_subscription(self, device_id: str) -> str:
        return f"{self.root}/{device_id}/down/#"

    def engine_subscriptions(self, group: str) -> list[str]:
        """Shared subscription, so several engine workers can split a fleet."""
        return [f"$share/{group}/{self.root}/+/up/#", f"$share/{group}/{self.root}/+/{STATUS}"]

    def parse(self, topic: str) -> Topic:
        parts = topic.split("/")
        root_parts = self.root.split("/")
        if parts[: len(root_parts)] != root_parts:
            raise ProtocolError("topic", f"{topic!r} is not under root {self.root!r}")
        rest = parts[len(root_parts) :]
        if not rest or not DEVICE_ID_PATTERN.fullmatch(rest[0]):
            raise ProtocolError("topic", f"{topic!r} has no valid device id")
        if rest[1:] == [STATUS]:
            return Topic(rest[0], None, STATUS)
        if len(rest) != 3 or rest[1] not in ("up", "down") or not rest[2]:
            raise ProtocolError("topic", f"{topic!r} is not <root>/<id>/up|down/<level>")
        return Topic(rest[0], Direction(rest[1]), rest[2])
