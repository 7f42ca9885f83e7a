"""The conversation: a tree of threads over one chronological log of user turns and assistant items.

Two timelines live here. The *generated* one is each assistant item's `text`; the *heard* one is each
item's `heard` count, moved only by the device's cursor reports through `Playout`. The LLM context is
built from the heard one only (see `icp.context`); the generated remainder is kept beside it so a held
thread can be resumed from the first word the listener did not fully hear.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from icp.words import WordTiming, heard_fraction, split_words


class ThreadStatus(StrEnum):
    ACTIVE = "active"
    HELD = "held"
    DONE = "done"
    CANCELLED = "cancelled"


@dataclass
class Thread:
    id: str
    parent: str | None
    status: ThreadStatus = ThreadStatus.ACTIVE
    held_item: str | None = None  # the item to resume from, when held
    resume_word: int = 0  # first word of held_item not fully heard


@dataclass
class UserTurn:
    id: str
    thread: str
    text: str


@dataclass
class AssistantItem:
    id: str
    thread: str
    text: str = ""  # everything generated so far (the generated timeline)
    complete: bool = False  # generation finished
    truncated: bool = False  # ...because it was stopped before the model had finished
    cut: bool = False  # playback stopped before the end was heard
    bridge_words: int = 0  # leading words that are a resume bridge
    resumes: str | None = None  # the item this one continues
    heard: int = 0  # words heard, a prefix (the heard timeline); only ever grows
    segmented_chars: int = 0  # text[:segmented_chars] is cut into segments
    segmented_words: int = 0

    @property
    def words(self) -> list[str]:
        return split_words(self.text)

    def text_from_word(self, index: int) -> str:
        """The raw text from word `index` on (keeps a half-generated last word whole when it grows)."""
        matches = list(re.finditer(r"\S+", self.text))
        if index >= len(matches):
            return ""
        return self.text[matches[index].start() :]


@dataclass
class SentSegment:
    """A segment as sent to the device, and how much of it reached the ear."""

    id: int
    item: str
    first_word: int  # index in the item's words of this segment's first word
    words: tuple[WordTiming, ...]
    samples: int
    sample_rate: int
    heard_samples: int = 0
    dropped: bool = False  # flushed before it finished playing, or lost on the way
    sent_at: float = 0.0  # engine time it was sent (to tell lost audio from audio still in flight)

    @property
    def duration_ms(self) -> float:
        return self.samples * 1000.0 / self.sample_rate

    @property
    def heard_ms(self) -> float:
        return self.heard_samples * 1000.0 / self.sample_rate

    def heard_words(self, threshold: float) -> int:
        """Words of this segment heard (a prefix): more than `threshold` of each played."""
        count = 0
        for word in self.words:
            if heard_fraction(word, self.heard_ms) > threshold or self.heard_samples >= self.samples:
                count += 1
            else:
                break
        return count

    def fully_heard_words(self) -> int:
        if self.heard_samples >= self.samples:
            return len(self.words)
        return sum(1 for w in self.words if heard_fraction(w, self.heard_ms) >= 1.0)


@dataclass
class Conversation:
    """All of one device's conversation state; serialisable for persistence."""

    threads: dict[str, Thread] = field(default_factory=dict)
    log: list[UserTurn | AssistantItem] = field(default_factory=list)
    segments: list[SentSegment] = field(default_factory=list)  # in playback order
    counter: int = 0

    # -- ids and lookup ------------------------------------------------------------------------
    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def item(self, item_id: str) -> AssistantItem:
        for entry in reversed(self.log):
            if isinstance(entry, AssistantItem) and entry.id == item_id:
                return entry
        raise KeyError(item_id)

    def segment(self, segment_id: int) -> SentSegment | None:
        for seg in reversed(self.segments):
            if seg.id == segment_id:
                return seg
        return None

    # -- threads -----------------------------------------------------------------------------
    def new_thread(self, parent: str | None) -> Thread:
        thread = Thread(self.new_id("t"), parent)
        self.threads[thread.id] = thread
        return thread

    def held_threads(self) -> list[Thread]:
        return [t for t in self.threads.values() if t.status is ThreadStatus.HELD]

    def nearest_held(self, from_thread: str | None) -> Thread | None:
        """The held ancestor closest to `from_thread`, else the most recently held thread."""
        seen = set()
        current = self.threads.get(from_thread) if from_thread else None
        while current is not None and current.id not in seen:
            seen.add(current.id)
            if current.status is ThreadStatus.HELD:
                return current
            current = self.threads.get(current.parent) if current.parent else None
        held = self.held_threads()
        return held[-1] if held else None

    def add_user_turn(self, thread: str, text: str) -> UserTurn:
        turn = UserTurn(self.new_id("u"), thread, text)
        self.log.append(turn)
        return turn

    def add_item(self, thread: str, text: str = "", bridge_words: int = 0, resumes: str | None = None) -> AssistantItem:
        item = AssistantItem(self.new_id("a"), thread, text, bridge_words=bridge_words, resumes=resumes)
        self.log.append(item)
        return item

    # -- the heard timeline -------------------------------------------------------------------
    def apply_cursor(self, segment_id: int, sample: int, threshold: float) -> bool:
        """Move the heard cursor. Monotone and idempotent: stale or duplicate reports change nothing.

        Returns True if anything moved. Playback is in order, so every earlier segment that was not
        dropped has been heard to its end.
        """
        index = next((i for i, s in enumerate(self.segments) if s.id == segment_id), None)
        if index is None or self.segments[index].dropped:
            return False
        moved = False
        for seg in self.segments[:index]:
            if not seg.dropped and seg.heard_samples < seg.samples:
                seg.heard_samples = seg.samples
                moved = True
                self._update_heard(seg, threshold)
        seg = self.segments[index]
        sample = min(sample, seg.samples)
        if sample > seg.heard_samples:
            seg.heard_samples = sample
            moved = True
            self._update_heard(seg, threshold)
        return moved

    def _update_heard(self, seg: SentSegment, threshold: float) -> None:
        item = self.item(seg.item)
        item.heard = max(item.heard, seg.first_word + seg.heard_words(threshold))

    def word_offset(self, item: AssistantItem, index: int) -> int:
        """Character offset in `item.text` where word `index` starts (len(text) past the end)."""
        matches = list(re.finditer(r"\S+", item.text))
        return matches[index].start() if index < len(matches) else len(item.text)

    def drop_unplayed(self) -> list[int]:
        """After a flush: every segment not fully heard stops where the cursor left it."""
        dropped = []
        for seg in self.segments:
            if not seg.dropped and seg.heard_samples < seg.samples:
                seg.dropped = True
                dropped.append(seg.id)
        return dropped

    def unheard_ms(self) -> float:
        """Audio sent to the device and not yet heard: what the lookahead bounds."""
        return sum(
            (s.samples - s.heard_samples) * 1000.0 / s.sample_rate for s in self.segments if not s.dropped
        )

    def resume_point(self, item: AssistantItem) -> int:
        """First word of `item` not fully heard: resume replays at most one word, skips none.

        Segments play in order, and a reply sent again (after lost audio) starts at the old resume
        point, so the point only moves over segments that start at or before it.
        """
        point = 0
        for seg in self.segments:
            if seg.item != item.id or seg.first_word > point:
                continue
            point = max(point, seg.first_word + seg.fully_heard_words())
        return point

    def playing_item(self) -> AssistantItem | None:
        for seg in self.segments:
            if not seg.dropped and seg.heard_samples < seg.samples:
                return self.item(seg.item)
        return None

    # -- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "counter": self.counter,
            "threads": [vars(t) | {"status": t.status.value} for t in self.threads.values()],
            "log": [{"kind": "user", **vars(e)} if isinstance(e, UserTurn) else {"kind": "assistant", **vars(e)}
                    for e in self.log],
            "segments": [
                vars(s) | {"words": [[w.word, w.start_ms, w.end_ms] for w in s.words]} for s in self.segments
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Conversation":
        conv = cls(counter=int(data["counter"]))
        for t in data["threads"]:
            conv.threads[t["id"]] = Thread(**(t | {"status": ThreadStatus(t["status"])}))
        for e in data["log"]:
            fields = {k: v for k, v in e.items() if k != "kind"}
            conv.log.append(UserTurn(**fields) if e["kind"] == "user" else AssistantItem(**fields))
        for s in data["segments"]:
            words = tuple(WordTiming(w, a, b) for w, a, b in s["words"])
            conv.segments.append(SentSegment(**(s | {"words": words})))
        return conv
