"""MQTT topic names: `<root>/<device id>/up|down/<level>`, `<root>/<device id>/status` and the claim
tree `<root>/claim/<serial>/request|reply`.

Every topic (and every wildcard filter an ACL or a subscription needs) is built here, so the engine,
the device and the fleet tools cannot drift apart: pass `ANY` (`+`) where a filter matches every
device or serial.
"""

from __future__ import annotations

from dataclasses import dataclass

from icp.errors import ProtocolError
from icp.messages.base import Direction
from icp.messages.rules import DEVICE_ID_PATTERN

DEFAULT_ROOT = "segue"
STATUS = "status"
#: Plain-text payloads of `<root>/<id>/status` (retained; the Last Will is `offline`).
STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"
STATUS_PAYLOADS = (STATUS_ONLINE, STATUS_OFFLINE)
#: The claim (enrollment) tree under the root; hence no device may be called "claim".
CLAIM = "claim"
RESERVED_DEVICE_IDS = frozenset({CLAIM})
#: The single-level wildcard, for filters over every device or serial.
ANY = "+"


@dataclass(frozen=True, slots=True)
class Topic:
    device_id: str
    direction: Direction | None  # None for the status topic
    level: str


@dataclass(frozen=True, slots=True)
class Topics:
    root: str = DEFAULT_ROOT

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
        return self.down_tree(device_id)

    def up_tree(self, device_id: str = ANY) -> str:
        """Filter over a device's (by default every device's) up topics."""
        return f"{self.root}/{device_id}/up/#"

    def engine_tree(self, device_id: str = ANY) -> str:
        """What the engine publishes about a device for dashboards (`<root>/<id>/engine/...`,
        e.g. `engine/rejections`, icp.messages.monitor); neither the device's up nor its down tree."""
        return f"{self.root}/{device_id}/engine/#"

    def down_tree(self, device_id: str = ANY) -> str:
        """Filter over a device's (by default every device's) down topics."""
        return f"{self.root}/{device_id}/down/#"

    def engine_topics(self) -> list[str]:
        """What the engine reads: every device's up topics and status."""
        return [self.up_tree(ANY), self.status(ANY)]

    def engine_subscriptions(self, group: str) -> list[str]:
        """Shared subscription, so several engine workers can split a fleet."""
        return [f"$share/{group}/{topic}" for topic in self.engine_topics()]

    # -- claim enrollment (docs/fleet.md) --------------------------------------------------------------
    def claim_tree(self) -> str:
        return f"{self.root}/{CLAIM}/#"

    def claim_request(self, serial: str = ANY) -> str:
        """Device -> enrollment service (`ANY`: the service's subscription)."""
        return f"{self.root}/{CLAIM}/{serial}/request"

    def claim_reply(self, serial: str = ANY) -> str:
        """Enrollment service -> the device whose MQTT client id is `serial`."""
        return f"{self.root}/{CLAIM}/{serial}/reply"

    def parse_claim(self, topic: str) -> tuple[str, str]:
        """(serial, "request" | "reply") of a claim topic; the serial is not validated here."""
        root_parts = self.root.split("/")
        parts = topic.split("/")
        rest = parts[len(root_parts):] if parts[: len(root_parts)] == root_parts else []
        if len(rest) != 3 or rest[0] != CLAIM or rest[2] not in ("request", "reply") or not rest[1]:
            raise ProtocolError("topic", f"{topic!r} is not <root>/{CLAIM}/<serial>/request|reply")
        return rest[1], rest[2]

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
