"""What one scenario run recorded: the raw material of the metrics and the plot.

Everything carries simulated time (the card's clock). The engine's commands come from its observer
hook, the user's turns from the virtual user, the LLM requests from the endpoint itself, and what
reached the ear from the card's ear tap (`EarIndex`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

from evaluation.harness.ear import EarIndex
from icp import commands as C
from icp.messages import Cursor, Segment


@dataclass
class TurnRecord:
    index: int
    say: str | None
    expect: str | None
    start: float = 0.0  # speech starts (first sample at the mic / onset injected)
    end: float = 0.0  # speech ends (the final ASR result goes out)
    utterance_id: str | None = None
    text_heard: str | None = None  # what the ASR made of it (audio mode) or the script (text mode)
    agent_speaking: bool = False  # the device was playing the agent when the user started
    interrupt_cursor: Cursor | None = None  # what the device reported in `interrupt`
    interrupted: bool = False  # an `interrupt` went out for this turn
    playing_item: str | None = None  # the item at the ear when the user started
    last_segment_before: int = 0  # highest segment announced before the turn ended


@dataclass
class LlmRequest:
    time: float  # simulated time the engine asked for it
    messages: list[dict[str, Any]]


@dataclass
class Trace:
    scenario: str
    strategy: str
    mode: str
    threshold: float
    sample_rate: int
    output_latency_s: float
    ear: EarIndex
    segments: dict[int, Segment] = field(default_factory=dict)
    segment_sent: dict[int, float] = field(default_factory=dict)
    dispositions: list[tuple[float, C.DispositionApplied]] = field(default_factory=list)
    resumes: list[tuple[float, C.ResumePlanned]] = field(default_factory=list)
    generations: list[tuple[float, C.StartGeneration]] = field(default_factory=list)
    transitions: list[tuple[float, C.Transition]] = field(default_factory=list)
    controls: list[tuple[float, str, str]] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)
    llm_requests: list[LlmRequest] = field(default_factory=list)
    items: dict[str, tuple[str, str]] = field(default_factory=dict)  # item id -> (thread, generated text)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    end: float = 0.0
    wall_s: float = 0.0
    narrate: Callable[[str], None] | None = None  # live transcript (the demo)

    def record(self, now: float, cmd: C.Command) -> None:
        """The engine observer (runs on the engine's thread)."""
        if isinstance(cmd, C.SendSegment):
            self.segments[cmd.segment.segment] = cmd.segment
            self.segment_sent[cmd.segment.segment] = now
            self._say(now, f"generated  [{cmd.segment.thread}] {cmd.segment.text}")
        elif isinstance(cmd, C.DispositionApplied):
            self.dispositions.append((now, cmd))
            what = repr(cmd.text) if cmd.text else f"({cmd.source})"
            self._say(now, f"engine     {what} -> {cmd.applied.value} (classified {cmd.classified.value}, "
                           f"{cmd.confidence:.2f}, {cmd.source})")
        elif isinstance(cmd, C.ResumePlanned):
            self.resumes.append((now, cmd))
            words = self.items_text(cmd.item_id).split()
            at = " ".join(words[cmd.resume_word : cmd.resume_word + 6])
            self._say(now, f"resume     thread {cmd.thread_id} from word {cmd.resume_word} of {cmd.item_id}: "
                           f"\"{at} ...\"")
        elif isinstance(cmd, C.StartGeneration):
            self.generations.append((now, cmd))
        elif isinstance(cmd, C.Transition):
            self.transitions.append((now, cmd))
        elif isinstance(cmd, C.DeviceControl):
            self.controls.append((now, str(cmd.action), cmd.reason))

    def _say(self, now: float, text: str) -> None:
        if self.narrate is not None:
            self.narrate(f"{now:7.2f}s  {text}")

    def items_text(self, item: str) -> str:
        """What was sent of an item so far (the live view; `items` holds the full text after the run)."""
        if item in self.items:
            return self.items[item][1]
        return " ".join(s.text for s in self.item_segments(item))

    # -- views -----------------------------------------------------------------------------------
    def item_segments(self, item: str) -> list[Segment]:
        return [s for _, s in sorted(self.segments.items()) if s.item == item]

    def item_of(self, segment: int) -> str | None:
        seg = self.segments.get(segment)
        return seg.item if seg else None

    def disposition_for(self, utterance_id: str | None) -> C.DispositionApplied | None:
        for _, d in self.dispositions:
            if utterance_id is not None and d.utterance_id == utterance_id:
                return d
        return None


def item_heard(trace: Trace, item: str, t: float, content_only: bool = True) -> int:
    """Words of `item` the listener had heard by time t (a prefix; bridge words left out if asked)."""
    from evaluation.harness.ear import words_heard

    total = 0
    segments = trace.item_segments(item)
    played = [trace.ear.heard_samples(seg.segment, t) for seg in segments]
    for i, seg in enumerate(segments):
        if played[i] == 0 and any(played[i + 1 :]):
            continue  # lost on the way and sent again later: the listener never heard this copy
        heard = words_heard(seg, played[i], trace.threshold)
        if content_only:
            heard = max(0, heard - seg.bridge_words)
        total += heard
        if heard + (seg.bridge_words if content_only else 0) < len(seg.words):
            break
    return total


def item_heard_ms(trace: Trace, item: str, t: float) -> float:
    """Milliseconds of `item`'s audio the listener had heard by time t, from its first sample (a
    resumed reply's bridge phrase included)."""
    samples = sum(trace.ear.heard_samples(seg.segment, t) for seg in trace.item_segments(item))
    return 1000.0 * samples / trace.sample_rate
