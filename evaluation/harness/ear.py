"""The virtual listener: what reached the ear, in words, from the virtual card's ear tap.

The card records every agent sample that reached the ear with its segment and time; this index
answers "how much of segment k had been heard at time t" in O(log n), and maps samples to words with
the engine's own rule (`SentSegment.heard_words`: more than `threshold` of a word has played), so the
ground truth and the engine count a word the same way.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from device.audio.virtual import EarTap
from icp.conversation import SentSegment
from icp.messages import Segment


@dataclass
class _Runs:
    ear: list[int] = field(default_factory=list)  # ear sample where each run starts (ascending)
    start: list[int] = field(default_factory=list)  # segment sample of each run's first sample
    count: list[int] = field(default_factory=list)


class RunIndex:
    """The questions both ears answer (the virtual card's tap here, the live recording in
    `evaluation.live.ear`), over runs of segment samples placed on the ear's timeline. A subclass
    fills `_runs`, `_order`, `_first_ear` and says how a time maps to an ear sample (`_m`)."""

    sample_rate: int
    _runs: dict[int, _Runs]
    _order: list[int]  # segments in the order their first sample reached the ear
    _first_ear: dict[int, int]

    def _m(self, t: float) -> int:
        raise NotImplementedError

    def heard_samples(self, segment: int, t: float) -> int:
        raise NotImplementedError

    def first_heard(self, segment: int) -> float | None:
        """When the segment's first sample reached the ear."""
        ear = self._first_ear.get(segment)
        return None if ear is None else ear / self.sample_rate

    def segments_heard(self, t: float) -> list[int]:
        """Segments with at least one sample at the ear before t, in ear order."""
        m = self._m(t)
        return [s for s in self._order if self._first_ear[s] < m]

    def last_heard(self, t: float) -> tuple[int, int] | None:
        """(segment, samples heard) of the agent sample that most recently reached the ear before t."""
        m = self._m(t)
        best: tuple[int, int, int] | None = None
        for seg in self._order:
            runs = self._runs[seg]
            i = bisect.bisect_left(runs.ear, m) - 1
            if i < 0:
                continue
            n = min(runs.count[i], m - runs.ear[i])
            ear_end = runs.ear[i] + n
            if best is None or ear_end > best[0]:
                best = (ear_end, seg, runs.start[i] + n)
        return None if best is None else (best[1], best[2])

    def last_agent_time(self, before: float) -> float | None:
        """When the last agent sample before `before` reached the ear."""
        m = self._m(before)
        end = 0
        for runs in self._runs.values():
            i = bisect.bisect_left(runs.ear, m) - 1
            if i >= 0:
                end = max(end, runs.ear[i] + min(runs.count[i], m - runs.ear[i]))
        return None if end == 0 else (end - 1) / self.sample_rate

    def heard_ms_total(self, t: float) -> float:
        return 1000.0 * sum(self.heard_samples(s, t) for s in self._order) / self.sample_rate


class EarIndex(RunIndex):
    def __init__(self, tap: EarTap) -> None:
        self.tap = tap
        self.sample_rate = tap.sample_rate
        self._seen = 0
        self._runs: dict[int, _Runs] = {}
        self._order: list[int] = []  # segments in the order their first sample reached the ear
        self._first_ear: dict[int, int] = {}

    def update(self) -> None:
        """Take in the spans the card recorded since the last call."""
        spans = self.tap.spans
        while self._seen < len(spans):
            s = spans[self._seen]
            self._seen += 1
            runs = self._runs.get(s.segment)
            if runs is None:
                runs = self._runs[s.segment] = _Runs()
                self._order.append(s.segment)
                self._first_ear[s.segment] = s.ear_sample
            runs.ear.append(s.ear_sample)
            runs.start.append(s.start)
            runs.count.append(s.count)

    def _m(self, t: float) -> int:
        return self.tap.sample_index(t) if math.isfinite(t) else 1 << 62

    def heard_samples(self, segment: int, t: float) -> int:
        """Samples of `segment` that reached the ear before time t (segments play forward only)."""
        runs = self._runs.get(segment)
        if runs is None:
            return 0
        m = self._m(t)
        i = bisect.bisect_left(runs.ear, m) - 1
        if i < 0:
            return 0
        return runs.start[i] + min(runs.count[i], m - runs.ear[i])


def words_heard(segment: Segment, samples: int, threshold: float) -> int:
    """Words of `segment` heard when `samples` of it have played (the engine's rule, as a prefix)."""
    sent = SentSegment(segment.segment, segment.item, 0, segment.words, segment.samples, segment.sample_rate,
                       heard_samples=min(samples, segment.samples))
    return sent.heard_words(threshold)


def words_fully_heard(segment: Segment, samples: int) -> int:
    sent = SentSegment(segment.segment, segment.item, 0, segment.words, segment.samples, segment.sample_rate,
                       heard_samples=min(samples, segment.samples))
    return sent.fully_heard_words()
