"""Rejected messages: every one counted by device and reason, a bounded number logged, and each
misbehaving device's counts published (retained) for dashboards.

35,000 malformed messages at one device's topics in a minute used to write 35,000 warning lines. Now
each (device, reason) writes at most `per_interval` lines per `interval_s` (the policy is
`icp.ratelimit.LogBudget`, shared with the device), then one summary line; the counts go to
`<root>/<id>/engine/rejections` (`icp.messages.monitor`), at most once per `publish_every_s` per device.

Counts are published only for devices that have spoken valid protocol at least once (`known`), so a
stream of made-up device ids cannot fill the broker with retained topics; their rejections are still
counted (under `unattributed` beyond `max_devices`) and logged within the budget.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable

from icp.messages.monitor import RejectionCounts, rejections_topic
from icp.ratelimit import LogBudget
from server.wire import Rejected

log = logging.getLogger("segue.mqtt")

Publish = Callable[[str, bytes, int, bool], None]
UNATTRIBUTED = "(no device)"


def reason_key(reason: str) -> str:
    """The counted reason: the text before the first colon ("invalid: utterance.text must ...")."""
    return reason.split(":")[0]


class RejectionMonitor:
    """Thread-safe: MQTT callbacks record, the engine's ticker calls `tick()`."""

    def __init__(self, root: str, publish: Publish, known: Callable[[str], bool] = lambda device: True,
                 budget: LogBudget | None = None, publish_every_s: float = 10.0, max_devices: int = 10_000) -> None:
        self.root = root
        self.publish = publish
        self.known = known
        self.budget = budget or LogBudget(per_interval=5, interval_s=60.0)
        self.publish_every_s = publish_every_s
        self.max_devices = max_devices
        self.counts: dict[str, Counter[str]] = {}  # device (or UNATTRIBUTED) -> reason -> count
        self._dirty: set[str] = set()
        self._published_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def record(self, topic: str, rejected: Rejected, now: float) -> None:
        reason = reason_key(rejected.reason)
        with self._lock:
            device = rejected.device_id or UNATTRIBUTED
            if device not in self.counts and len(self.counts) >= self.max_devices:
                device = UNATTRIBUTED
            self.counts.setdefault(device, Counter())[reason] += 1
            admission = self.budget.admit((device, reason), now)
            if device != UNATTRIBUTED:
                self._dirty.add(device)
        if admission.summary is not None:
            self._log_summary(admission.summary.key, admission.summary.describe())
        if admission.log:
            log.warning("rejected message on %s (device=%s): %s", topic, rejected.device_id, rejected.reason)
        self.tick(now, only=rejected.device_id)

    def tick(self, now: float, only: str | None = None) -> None:
        """Write the summaries of intervals that ended; publish counts that changed (rate-limited)."""
        with self._lock:
            summaries = self.budget.due(now) if only is None else []
            due = [d for d in self._dirty if (only is None or d == only)
                   and now - self._published_at.get(d, -1e18) >= self.publish_every_s]
            ready: list[tuple[str, RejectionCounts]] = []
            for device in due:
                if not self.known(device):
                    continue
                self._dirty.discard(device)
                self._published_at[device] = now
                counts = self.counts[device]
                ready.append((device, RejectionCounts(sum(counts.values()), tuple(counts.most_common(32)))))
        for summary in summaries:
            self._log_summary(summary.key, summary.describe())
        for device, report in ready:
            payload = json.dumps(report.to_json(), separators=(",", ":")).encode()
            self.publish(rejections_topic(self.root, device), payload, 1, True)

    def _log_summary(self, key: object, text: str) -> None:
        device, reason = key if isinstance(key, tuple) else (None, key)
        log.warning("rejected messages (device=%s, reason %s): %s", device, reason, text)

    def total(self, device: str) -> int:
        with self._lock:
            return sum(self.counts.get(device, Counter()).values())
