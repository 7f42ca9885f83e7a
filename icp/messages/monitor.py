"""What the engine tells dashboards about a device's bad input: `<root>/<id>/engine/rejections`.

Retained, plain JSON (no envelope: it is a status for dashboards, like Home Assistant discovery, not
a message between device and engine). Outside `up/` and `down/` on purpose: the device neither
receives it (it subscribes to `down/#`) nor can forge it (it may write only `up/#` and `status`).

    {"total": 35012, "reasons": {"invalid": 35000, "replay": 12}}

`total` and the counts only grow while the engine runs (a dashboard takes the rate); they start from
zero when the engine worker restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from icp.errors import ProtocolError
from icp.messages import rules

LEVEL = "engine/rejections"
REASON_RULE = rules.text(64, 1)
COUNT_RULE = rules.integer(0, rules.MAX_SEQ)
MAX_REASONS = 32


def rejections_topic(root: str, device_id: str) -> str:
    return f"{root}/{device_id}/{LEVEL}"


@dataclass(frozen=True, slots=True)
class RejectionCounts:
    total: int
    reasons: tuple[tuple[str, int], ...]  # (reason, count), most frequent first

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "reasons": dict(self.reasons)}

    @classmethod
    def from_json(cls, doc: Any) -> "RejectionCounts":
        if not isinstance(doc, dict):
            raise ProtocolError("", "must be an object")
        fields = rules.check_fields("", doc, {"total": COUNT_RULE, "reasons": _reasons})
        if sum(n for _, n in fields["reasons"]) != fields["total"]:
            raise ProtocolError("total", "must be the sum of the reasons' counts")
        return cls(fields["total"], fields["reasons"])


def _reasons(path: str, value: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, dict) or len(value) > MAX_REASONS:
        raise ProtocolError(path, f"must be an object of at most {MAX_REASONS} reasons")
    return tuple((REASON_RULE(path, k), COUNT_RULE(f"{path}.{k}", v)) for k, v in value.items())
