"""The ear in live mode: which sample of which segment the speaker played, read off the recording.

A null sink's monitor delivers the exact samples the device played (one stream at unity volume, no
resampling when the stream runs at the sink's rate), and the wire carried the exact PCM of every
segment. So each 10 ms block of `ear.wav` is either silence, the continuation of the segment sample
being played, or found byte for byte in a segment's PCM: the played timeline is recovered sample
exactly without reading anything from the device. Blocks that hold sound but match nothing are
counted (`unmatched_ms`): with a resampling or gain stage in between, this index would see nothing.

`LiveEarIndex` answers the questions of `evaluation.harness.ear.EarIndex` (heard samples of a
segment by time t, first/last heard, ...), with t in seconds of the ear recording, so the metrics
and the virtual user's conditions run unchanged on the recording.
"""

from __future__ import annotations

import math

import numpy as np

from evaluation.harness.ear import RunIndex, _Runs

SILENCE = 2  # |sample| at or below this is silence (a null sink's idle output is exact zeros)
MIN_KEY = 32  # shortest non-silent run searched for in the segments' PCM
KEY_PEAK = 200  # a run this quiet (TTS dither, breath) recurs all over a segment: it is not searched for


def _prefix_equal(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading samples of a and b are equal."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


class LiveEarIndex(RunIndex):
    """Incremental: call `update(ear_samples, segments)` as the recording grows (segments: id -> PCM)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.block = max(32, sample_rate // 100)
        self._pos = 0
        self._cur: tuple[int, int] | None = None  # (segment, next sample expected)
        self._runs: dict[int, _Runs] = {}
        self._order: list[int] = []
        self._first_ear: dict[int, int] = {}
        self.unmatched_samples = 0
        self._assigned = 0  # ear samples before this are placed (or passed over)
        self.agent_samples = 0

    # -- building ---------------------------------------------------------------------------------
    def _add(self, ear: int, seg: int, start: int, count: int) -> None:
        if count <= 0:
            return
        self._assigned = max(self._assigned, ear + count)
        self.agent_samples += count
        runs = self._runs.get(seg)
        if runs is None:
            runs = self._runs[seg] = _Runs()
            self._order.append(seg)
            self._first_ear[seg] = ear
        if runs.ear and runs.ear[-1] + runs.count[-1] == ear and runs.start[-1] + runs.count[-1] == start:
            runs.count[-1] += count
        else:
            runs.ear.append(ear)
            runs.start.append(start)
            runs.count.append(count)

    def _search(self, key: np.ndarray, segments: dict[int, np.ndarray]) -> tuple[int, int] | None:
        """(segment, sample) where `key` occurs, preferring the segment being played, then later ones."""
        raw = key.astype("<i2").tobytes()
        order = sorted(segments)
        if self._cur is not None:
            cur = self._cur[0]
            order = [s for s in order if s >= cur] + [s for s in reversed(order) if s < cur]
        for sid in order:
            hay = segments[sid].astype("<i2", copy=False).tobytes()
            at = hay.find(raw)
            while at >= 0 and at % 2:
                at = hay.find(raw, at + 1)
            if at >= 0:
                return sid, at // 2
        return None

    def _block(self, ear: np.ndarray, p: int, segments: dict[int, np.ndarray]) -> None:
        blk = ear[p : p + self.block]
        done = 0
        B = len(blk)
        guard = 0
        while done < B and guard < 4:
            guard += 1
            rest = blk[done:]
            if self._cur is not None and self._cur[0] in segments:
                sid, k = self._cur
                pcm = segments[sid]
                n = _prefix_equal(rest, pcm[k:])
                # Quiet samples match quiet samples anywhere (dither, a pause, the next segment's soft
                # onset after a flush): a continuation counts only with sound in it. Quiet runs left
                # out are given back by the backward extension when the next sound is found.
                if n > 0 and np.abs(rest[:n]).max() >= KEY_PEAK:
                    self._add(p + done, sid, k, n)
                    self._cur = (sid, k + n)
                    done += n
                    if k + n == len(pcm):  # the segment ended inside this block: the next one starts here
                        nxt = [s for s in sorted(segments) if s > sid]
                        if nxt:
                            m = _prefix_equal(blk[done:], segments[nxt[0]])
                            if m > 0:
                                self._cur = (nxt[0], 0)
                    continue
            loud = np.flatnonzero(np.abs(rest) > SILENCE)
            if loud.size == 0:
                return
            j = int(loud[0])
            key = rest[j:]
            if len(key) < MIN_KEY or np.abs(key).max() < KEY_PEAK:
                return  # too short or too quiet to place: it will be continued or found in the next block
            found = self._search(key, segments)
            if found is None:
                self.unmatched_samples += len(key)
                return
            sid, k = found
            # extend backwards over the quiet samples just before the key (a word's soft onset), as far
            # as they match and were not given to anything else
            at, back, pcm = p + done + j, 0, segments[sid]
            while k - back - 1 >= 0 and at - back - 1 >= self._assigned and pcm[k - back - 1] == ear[at - back - 1]:
                back += 1
            self._add(at - back, sid, k - back, back + len(key))
            self._cur = (sid, k + len(key))
            done = B

    def update(self, ear: np.ndarray, segments: dict[int, np.ndarray]) -> None:
        """Take in the recording up to its last whole block."""
        B = self.block
        while self._pos + B <= len(ear):
            self._block(ear, self._pos, segments)
            self._pos += B

    @property
    def position_s(self) -> float:
        """How far into the recording the index has looked."""
        return self._pos / self.sample_rate

    # -- the EarIndex questions (t: seconds of the recording) -------------------------------------
    def _m(self, t: float) -> int:
        return int(round(t * self.sample_rate)) if math.isfinite(t) else 1 << 62

    def heard_samples(self, segment: int, t: float) -> int:
        runs = self._runs.get(segment)
        if runs is None:
            return 0
        m = self._m(t)
        best = 0
        for e, s, c in zip(runs.ear, runs.start, runs.count):
            if e >= m:
                break
            best = max(best, s + min(c, m - e))
        return best

    def spans(self) -> list[tuple[float, float, int, int]]:
        """(ear start s, ear end s, segment, first segment sample) of every played run, in ear order."""
        out = []
        for seg, runs in self._runs.items():
            for e, s, c in zip(runs.ear, runs.start, runs.count):
                out.append((e / self.sample_rate, (e + c) / self.sample_rate, seg, s))
        return sorted(out)

    def agent_gaps(self, start: float, end: float, min_gap_s: float = 0.0) -> list[tuple[float, float]]:
        """Stretches within [start, end] where no agent sample reached the ear (longer than min_gap_s)."""
        gaps, at = [], start
        for s, e, _, _ in self.spans():
            if e <= start or s >= end:
                continue
            if s - at > min_gap_s:
                gaps.append((at, s))
            at = max(at, e)
        if end - at > min_gap_s:
            gaps.append((at, end))
        return gaps

