"""Reading the virtual card's ear tap for `segue-bench turns`: runs of agent audio and the gaps between.

The ear tap records which agent samples (segment, sample) reached the ear at which ear sample,
sample-exact on the card's clock. A *run* is a stretch of consecutive ear samples that all carry
agent audio (the words and the silences inside the synthesised audio alike: a run ends only where
playback handed the card no agent samples). A gap between two runs is a *pause inside agent speech*
when the same segment goes on after it (the playback was paused and resumed from its sample);
between two different segments it is a gap between segments (synthesis not ready, a new reply).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.audio.virtual import EarTap


@dataclass(frozen=True)
class Run:
    start: int  # first ear sample
    end: int  # ear sample after the last
    first_segment: int
    first_sample: int  # segment sample of the first ear sample
    last_segment: int
    last_sample_end: int  # segment sample after the last


@dataclass(frozen=True)
class Gap:
    start: float  # time of the first ear sample without agent audio
    end: float  # time of the next agent sample
    before: int  # segment playing before the gap
    after: int  # segment playing after it
    resumed_at_sample: bool  # the same segment went on from the very sample it stopped at

    @property
    def inside_segment(self) -> bool:
        return self.before == self.after

    @property
    def ms(self) -> float:
        return 1000.0 * (self.end - self.start)


def runs(tap: EarTap) -> list[Run]:
    out: list[Run] = []
    for s in tap.spans:  # in ear order (the card records buffer by buffer, spans by offset)
        if out and out[-1].end == s.ear_sample:
            r = out[-1]
            out[-1] = Run(r.start, s.ear_sample + s.count, r.first_segment, r.first_sample, s.segment, s.start + s.count)
        else:
            out.append(Run(s.ear_sample, s.ear_sample + s.count, s.segment, s.start, s.segment, s.start + s.count))
    return out


def gaps(tap: EarTap, since: float = 0.0, until: float = float("inf")) -> list[Gap]:
    """Gaps between agent runs that start in [since, until)."""
    sr = tap.sample_rate
    rs = runs(tap)
    out = []
    for a, b in zip(rs, rs[1:]):
        t = a.end / sr
        if since <= t < until:
            out.append(Gap(t, b.start / sr, a.last_segment, b.first_segment,
                           a.last_segment == b.first_segment and a.last_sample_end == b.first_sample))
    return out


def run_at(tap: EarTap, t: float) -> Run | None:
    """The run playing at time t (None: no agent audio at the ear then)."""
    m = tap.sample_index(t)
    for r in runs(tap):
        if r.start <= m < r.end:
            return r
    return None


def stop_after(tap: EarTap, t: float) -> float | None:
    """Time of the first ear sample without agent audio at or after t (None: agent audio goes on to the
    end of what the tap has recorded)."""
    m = tap.sample_index(t)
    rs = runs(tap)
    for r in rs:
        if r.end > m:
            if r is rs[-1] and r.end >= tap.pcm.size:  # still playing at the end of the recording
                return None
            return max(r.end, m) / tap.sample_rate
    return m / tap.sample_rate


def first_agent_after(tap: EarTap, t: float) -> float | None:
    """Time of the first agent sample at or after t."""
    m = tap.sample_index(t)
    for s in tap.spans:
        if s.ear_sample + s.count > m:
            return max(s.ear_sample, m) / tap.sample_rate
    return None


def first_audible_after(tap: EarTap, t: float, level: int = 300) -> float | None:
    """Time of the first agent sample at or after t that is louder than `level` (~-41 dBFS): what a
    listener hears first. A voice's leading silence (piper's is 50-65 ms) is agent audio but not
    yet an answer, so first-audio latency is timed to this, not to `first_agent_after`."""
    m = tap.sample_index(t)
    pcm = tap.pcm
    for s in tap.spans:
        end = s.ear_sample + s.count
        if end <= m:
            continue
        lo = max(s.ear_sample, m)
        loud = np.flatnonzero(np.abs(pcm[lo:end].astype(np.int32)) > level)
        if loud.size:
            return (lo + int(loud[0])) / tap.sample_rate
    return None


def agent_seconds(tap: EarTap) -> float:
    return sum(s.count for s in tap.spans) / tap.sample_rate
