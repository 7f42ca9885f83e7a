"""A bounded log for repeated trouble: the first few lines per key and interval, then a summary.

Bad input must not flood the logs (35,000 malformed messages from one device in a minute once wrote
35,000 warning lines), yet none of it may go unnoticed. `LogBudget` is the policy only: the caller
counts every occurrence itself, asks `admit(key, now)` whether to write this one, and writes the
summaries `admit()` and `due(now)` hand back ("... and N more like it in the last 60 s").

Pure (time is passed in, nothing is written here) so that the engine and the device share it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

OVERFLOW = "(other keys)"  # where keys beyond `max_keys` are counted, so memory stays bounded


@dataclass(frozen=True, slots=True)
class Suppressed:
    """What was not written for `key` during [since, until)."""

    key: Hashable
    count: int
    since: float
    until: float

    def describe(self) -> str:
        return f"{self.count} more like it suppressed in the last {self.until - self.since:.0f} s"


@dataclass(frozen=True, slots=True)
class Admission:
    log: bool  # write this occurrence
    summary: Suppressed | None = None  # write this first: the key's previous interval ended with some suppressed


@dataclass(slots=True)
class _Window:
    start: float
    logged: int = 0
    suppressed: int = 0


@dataclass
class LogBudget:
    per_interval: int = 5  # lines written per key and interval
    interval_s: float = 60.0
    max_keys: int = 1000
    _windows: dict[Hashable, _Window] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.per_interval < 1 or self.interval_s <= 0 or self.max_keys < 1:
            raise ValueError("per_interval and max_keys must be >= 1, interval_s > 0")

    def admit(self, key: Hashable, now: float) -> Admission:
        """One occurrence of `key` at `now`: write it or not (and a summary of the last interval)."""
        summary = None
        window = self._windows.get(key)
        if window is not None and now - window.start >= self.interval_s:
            summary = self._close(key, window, now)
            window = None
        if window is None:
            if len(self._windows) >= self.max_keys and key not in self._windows:
                key = OVERFLOW
                window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(now)
        if window.logged < self.per_interval:
            window.logged += 1
            return Admission(True, summary)
        window.suppressed += 1
        return Admission(False, summary)

    def due(self, now: float) -> list[Suppressed]:
        """Close every interval that has ended; the summaries of those that suppressed something.

        Call it now and then (a ticker): a burst followed by silence is summarised too."""
        out = []
        for key, window in list(self._windows.items()):
            if now - window.start >= self.interval_s:
                summary = self._close(key, window, now)
                if summary is not None:
                    out.append(summary)
        return out

    def _close(self, key: Hashable, window: _Window, now: float) -> Suppressed | None:
        del self._windows[key]
        if not window.suppressed:
            return None
        return Suppressed(key, window.suppressed, window.start, min(now, window.start + self.interval_s))
