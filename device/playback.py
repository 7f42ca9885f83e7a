"""Playback: the segment queue and the heard cursor, timed by the sound card's DAC clock.

`render()` runs inside the audio callback: it copies queued PCM into the output buffer under a
short lock and records, for the buffer, which segment samples it carries and the DAC time of its
first sample. From those records `cursor_at(t)` says how many samples of which segment had reached
the speaker at stream time t. Samples handed to the card will play, so after `pause()` the cursor is
the end of the last buffer handed over, and `resume()` continues from exactly the next sample.
Audio that has not arrived yet (underrun) plays as silence and never advances a segment.

A segment whose audio stops arriving for `starve_s` of stream time was lost on the way (a broken
connection ate its last chunks; MQTT with a clean session does not redeliver them). It is dropped with
everything queued behind it, and nothing more plays until the next flush: otherwise the queue would
wait for it forever, reporting queued audio, and the engine would never see a device that ran dry.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple, Optional, Union

import numpy as np

from device.audio.base import Span
from icp.words import WordTiming, heard_fraction

log = logging.getLogger(__name__)


class Cursor(NamedTuple):
    """`sample` samples of `segment` have reached (or, after a pause, will reach) the ear."""

    segment: int
    sample: int


@dataclass(frozen=True)
class SegmentInfo:
    """One announced segment (the wire `segment` message, minus the envelope)."""

    segment: int
    samples: int
    words: tuple[WordTiming, ...] = ()
    bridge_words: int = 0
    sample_rate: int = 16000
    item: str = ""
    thread: str = ""
    text: str = ""
    prev: int | None = None  # from the wire: the segment sent just before this one since the last flush


class ChunkResult(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"        # offset before the next expected sample: dropped
    GAP = "gap"                    # offset after it: the whole segment is dropped
    UNKNOWN_SEGMENT = "unknown"    # never announced, or already flushed/finished
    OVERRUN = "overrun"            # would run past the announced `samples`: dropped


@dataclass(frozen=True)
class SegmentStarted:
    segment: int
    at: float  # stream time its first sample reaches the ear


@dataclass(frozen=True)
class SegmentEnded:
    segment: int
    samples: int
    at: float  # stream time its last sample has reached the ear


@dataclass(frozen=True)
class Idle:
    cursor: Optional[Cursor]
    at: float  # the last queued sample has reached the ear


@dataclass(frozen=True)
class SegmentsDropped:
    segments: tuple[int, ...]
    reason: str  # "flush", "gap" or "starved"
    at: float = -math.inf  # due at once


PlaybackEvent = Union[SegmentStarted, SegmentEnded, Idle, SegmentsDropped]


@dataclass(frozen=True)
class PlaybackSettings:
    sample_rate: int = 16000
    history_buffers: int = 512        # buffer records kept for cursor_at() (512 x 20 ms = 10 s)
    heard_word_threshold: float = 0.5  # a word counts as heard when this fraction has played
    starve_s: float = 2.0  # a queued segment that gets no audio for this long was lost (module doc)


@dataclass
class _Segment:
    info: SegmentInfo
    chunks: deque = field(default_factory=deque)
    chunk_pos: int = 0      # read position inside chunks[0]
    received: int = 0
    handed: int = 0
    complete: bool = False  # last frame seen, or all samples received
    end_at: float = 0.0     # DAC time just after the last handed sample


class _Record(NamedTuple):
    dac_time: float
    frames: int
    spans: tuple[Span, ...]


class Playback:
    """Thread-safe: the network thread adds segments and audio, the audio thread renders."""

    def __init__(self, settings: PlaybackSettings = PlaybackSettings()) -> None:
        self.settings = settings
        self.sample_rate = settings.sample_rate
        self._lock = threading.Lock()
        self._queue: deque[_Segment] = deque()
        self._by_id: dict[int, _Segment] = {}
        self._infos: dict[int, SegmentInfo] = {}
        self._last_announced = 0
        self._chain_end = 0  # the last segment received since the last flush (the expected `prev`)
        self._hole = False  # a segment was lost: drop the rest until the next flush
        self._paused = False
        self._busy = False
        self._history: deque[_Record] = deque()
        self._base: Optional[Cursor] = None  # cursor of records pruned from history
        self._handed: Optional[Cursor] = None
        self._last_end_at = 0.0
        self._events: list[PlaybackEvent] = []
        self.underruns = 0
        self._starving: Optional[tuple[int, int, float]] = None  # (segment, samples received, since)

    # ---- network side ----
    def add_segment(self, info: SegmentInfo) -> bool:
        """Queue an announced segment; a re-announcement (id not above the last) is ignored."""
        if info.sample_rate != self.sample_rate:
            log.warning("segment %d at %d Hz, device plays %d Hz: dropped", info.segment, info.sample_rate,
                        self.sample_rate)
            return False
        with self._lock:
            if info.segment <= self._last_announced:
                return False
            self._last_announced = info.segment
            if info.prev is not None and (self._hole or info.prev != self._chain_end):
                # A segment was lost on the way: never play past the hole. The engine notices the
                # unplayed audio when this device runs dry, flushes and re-sends from the cursor.
                self._hole = True
                log.warning("segment %d follows %d, expected %d: a segment was lost; dropped until the next flush",
                            info.segment, info.prev, self._chain_end)
                return False
            self._chain_end = info.segment
            seg = _Segment(info)
            self._queue.append(seg)
            self._by_id[info.segment] = seg
            self._infos[info.segment] = info
            self._prune_infos()
        return True

    def add_audio(self, segment: int, offset: int, pcm: np.ndarray, last: bool = False) -> ChunkResult:
        """Append PCM at `offset` of `segment`; only the next expected sample is accepted."""
        pcm = np.asarray(pcm, dtype=np.int16).reshape(-1)
        with self._lock:
            seg = self._by_id.get(segment)
            if seg is None:
                return ChunkResult.UNKNOWN_SEGMENT
            if offset < seg.received or (seg.complete and offset >= seg.received):
                return ChunkResult.DUPLICATE
            if offset > seg.received:
                self._hole = True  # and nothing after it plays either, until the next flush
                self._drop_locked([seg], "gap")
                log.warning("segment %d: gap (got offset %d, expected %d): dropped", segment, offset, seg.received)
                return ChunkResult.GAP
            if seg.received + len(pcm) > seg.info.samples:
                return ChunkResult.OVERRUN
            if len(pcm):
                seg.chunks.append(pcm)
                seg.received += len(pcm)
            if last or seg.received == seg.info.samples:
                seg.complete = True
        return ChunkResult.ACCEPTED

    def pause(self) -> Optional[Cursor]:
        """Stop handing audio over, keep the rest. Returns the cursor: end of the last buffer handed."""
        with self._lock:
            self._paused = True
            return self._handed

    def resume(self) -> None:
        """Continue from exactly the sample after the last one handed over."""
        with self._lock:
            self._paused = False

    def flush(self) -> tuple[int, ...]:
        """Drop every queued segment (already handed samples still play). Returns the dropped ids."""
        with self._lock:
            ids = tuple(s.info.segment for s in self._queue)
            self._drop_locked(list(self._queue), "flush")
            self._chain_end, self._hole = 0, False
            return ids

    def _drop_locked(self, segs: list[_Segment], reason: str) -> None:
        for seg in segs:
            self._by_id.pop(seg.info.segment, None)
            try:
                self._queue.remove(seg)
            except ValueError:
                pass
        self._events.append(SegmentsDropped(tuple(s.info.segment for s in segs), reason))
        if not self._queue and self._busy:
            self._busy = False
            self._events.append(Idle(self._handed, self._last_end_at))

    # ---- audio side ----
    def render(self, frames: int, dac_time: float) -> tuple[np.ndarray, tuple[Span, ...]]:
        """The next `frames` speaker samples and their provenance; `dac_time` is when the first plays."""
        out = np.zeros(frames, dtype=np.int16)
        sr = self.sample_rate
        with self._lock:
            if self._paused or not self._queue:
                self._starving = None  # a pause is not starvation: count again from the resume
                return out, ()
            spans: list[Span] = []
            pos = 0
            while pos < frames and self._queue:
                seg = self._queue[0]
                avail = seg.received - seg.handed
                if avail == 0:
                    if seg.complete:
                        self._finish_locked(seg)
                        continue
                    self.underruns += 1
                    self._starve_locked(seg, dac_time + pos / sr)
                    break
                n = min(avail, frames - pos)
                self._copy_locked(seg, out, pos, n)
                if seg.handed == 0:
                    self._events.append(SegmentStarted(seg.info.segment, dac_time + pos / sr))
                spans.append(Span(seg.info.segment, seg.handed, n, pos))
                seg.handed += n
                pos += n
                seg.end_at = dac_time + pos / sr
                self._last_end_at = seg.end_at
                self._busy = True
                self._handed = Cursor(seg.info.segment, seg.handed)
                if seg.complete and seg.handed == seg.received:
                    self._finish_locked(seg)
            if not self._queue and self._busy:
                self._busy = False
                self._events.append(Idle(self._handed, self._last_end_at))
            if spans:
                rec = _Record(dac_time, frames, tuple(spans))
                self._history.append(rec)
                if len(self._history) > self.settings.history_buffers:
                    old = self._history.popleft()
                    last = old.spans[-1]
                    self._base = Cursor(last.segment, last.start + last.count)
                return out, rec.spans
            return out, ()

    def _starve_locked(self, seg: _Segment, now: float) -> None:
        """Count how long the head segment has waited for audio; past `starve_s`, drop it and what
        follows it (module doc)."""
        key = (seg.info.segment, seg.received)
        if self._starving is None or self._starving[:2] != key:
            self._starving = (*key, now)
            return
        if now - self._starving[2] < self.settings.starve_s:
            return
        log.warning("segment %d: no audio for %.1f s (%d of %d samples came): lost; dropped with the %d queued "
                    "after it until the next flush", seg.info.segment, now - self._starving[2], seg.received,
                    seg.info.samples, len(self._queue) - 1)
        self._starving = None
        self._hole = True
        self._drop_locked(list(self._queue), "starved")

    def _copy_locked(self, seg: _Segment, out: np.ndarray, pos: int, n: int) -> None:
        while n > 0:
            chunk = seg.chunks[0]
            take = min(n, len(chunk) - seg.chunk_pos)
            out[pos : pos + take] = chunk[seg.chunk_pos : seg.chunk_pos + take]
            pos += take
            n -= take
            seg.chunk_pos += take
            if seg.chunk_pos == len(chunk):
                seg.chunks.popleft()
                seg.chunk_pos = 0

    def _finish_locked(self, seg: _Segment) -> None:
        self._queue.popleft()
        self._by_id.pop(seg.info.segment, None)
        self._events.append(SegmentEnded(seg.info.segment, seg.handed, seg.end_at))

    # ---- queries (any thread) ----
    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def handed_cursor(self) -> Optional[Cursor]:
        """End of the last buffer handed to the card (the heard cursor once it has played)."""
        return self._handed

    def cursor_at(self, t: float) -> Optional[Cursor]:
        """The heard cursor at stream time t: samples whose DAC time is before t have been heard."""
        sr = self.sample_rate
        with self._lock:
            for rec in reversed(self._history):
                if rec.dac_time >= t:
                    continue
                heard = min(rec.frames, max(0, math.ceil((t - rec.dac_time) * sr - 1e-6)))
                for span in reversed(rec.spans):
                    if span.offset < heard:
                        return Cursor(span.segment, span.start + min(span.count, heard - span.offset))
            return self._base

    def queued_ms(self, t: float) -> float:
        """Audio received and not yet heard at stream time t (queued plus in flight to the DAC)."""
        sr = self.sample_rate
        with self._lock:
            samples = sum(s.received - s.handed for s in self._queue)
            for rec in reversed(self._history):
                if rec.dac_time + rec.frames / sr <= t:
                    break
                heard = min(rec.frames, max(0, math.ceil((t - rec.dac_time) * sr - 1e-6)))
                for span in rec.spans:
                    samples += max(0, span.offset + span.count - max(heard, span.offset))
        return 1000.0 * samples / sr

    def is_playing(self) -> bool:
        """Segments are queued and not paused (underrun counts as playing)."""
        return bool(self._queue) and not self._paused

    def has_queued(self) -> bool:
        return bool(self._queue)

    def poll_events(self, now: float = math.inf) -> list[PlaybackEvent]:
        """Events due at stream time `now` (segment ends are due when their last sample is heard)."""
        with self._lock:
            if not self._events:
                return []
            due = [e for e in self._events if e.at <= now]
            if due:
                self._events = [e for e in self._events if e.at > now]
            if self._queue:  # an idle that came due after new segments were queued is no longer true
                due = [e for e in due if not isinstance(e, Idle)]
            return due

    def segment_info(self, segment: int) -> Optional[SegmentInfo]:
        return self._infos.get(segment)

    def heard_words(self, cursor: Cursor) -> int:
        """Words of the cursor's segment counted as heard (most of the word has played)."""
        info = self._infos.get(cursor.segment)
        if info is None:
            return 0
        played_ms = 1000.0 * cursor.sample / self.sample_rate
        th = self.settings.heard_word_threshold
        return sum(1 for w in info.words if heard_fraction(w, played_ms) >= th)

    def _prune_infos(self) -> None:
        if len(self._infos) > 1024:
            for k in sorted(self._infos)[:-512]:
                del self._infos[k]
