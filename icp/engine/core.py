"""What every part of the engine machine shares: the session's fields and the small helpers that emit
commands, step the state table and start or cancel generations.

The machine is split by concern into mixins over this one dataclass (`pipeline`, `speech`, `apply`,
`session`); they share state on purpose, because a disposition touches the audio pipeline and the
conversation in one step, and splitting the state would only hide that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import re
from typing import Any

from icp import commands as C
from icp import events as E
from icp.context import build_messages
from icp.conversation import AssistantItem, Conversation
from icp.dispositions import Disposition, Hint
from icp.engine.settings import EngineSettings, Generation, PartialRequest, PendingSegment, Speculation, Undo
from icp.engine.table import TABLE, Deadline, Previous, State, Trigger, trigger_name
from icp.strategies import Icp, Strategy


@dataclass
class SessionCore:
    """One device's engine session (fields); `Session` adds the behaviour."""

    device_id: str
    settings: EngineSettings = field(default_factory=EngineSettings)
    strategy: Strategy = field(default_factory=Icp)
    state: State = State.OFFLINE
    conv: Conversation = field(default_factory=Conversation)
    active_thread: str | None = None
    voice_item: str | None = None  # the item whose audio is being produced
    generations: dict[str, Generation] = field(default_factory=dict)  # running ones only
    to_synth: list[PendingSegment] = field(default_factory=list)
    in_flight: PendingSegment | None = None
    ready: list[PendingSegment] = field(default_factory=list)
    next_segment: int = 1
    last_sent: int | None = None  # the segment sent last since the last flush (the next `prev`);
    # None: the device's chain is unknown (this engine restarted), so the first send flushes first
    utterance_id: str | None = None
    utterance_hint: Hint | None = None
    classify_id: str | None = None
    classify_text: str = ""
    classify_speaking: bool = False
    deadlines: dict[Deadline, float] = field(default_factory=dict)
    before_offline: State = State.IDLE
    awaiting_yes: bool = False
    undo: Undo | None = None  # a CANCEL/MODIFY that "go back" can still undo (`apply`)
    # Acting on partials (`icp/engine/partials.py`): the latest partial sent to the classifier, the
    # utterance resumed by an early ABSORB until its final, that final's classification, and the
    # answer generated from a partial (at most one; `adopting`: the one the disposition now applies).
    partial: PartialRequest | None = None
    partial_seq: int = 0
    provisional: str | None = None
    late_id: str | None = None
    late_text: str = ""
    # A final's decision revising an early ABSORB, held for the device's paused cursor (`_decide_late`):
    # (utterance, text, classified, applied, confidence, source), as `_apply` takes them.
    late_decision: tuple[str, str, Disposition, Disposition, float, str] | None = None
    speculation: Speculation | None = None
    adopting: Speculation | None = None
    now: float = 0.0  # the latest time an event brought
    _out: list[C.Command] = field(default_factory=list)

    # -- output ---------------------------------------------------------------------------------
    def _emit(self, *cmds: C.Command) -> None:
        self._out.extend(cmds)

    def _ignore(self, event: E.Event | str, reason: str) -> None:
        name = event if isinstance(event, str) else type(event).__name__
        self._out.append(C.Ignored(name, reason))

    def _step(self, trigger: Trigger, publish: bool = True) -> None:
        """Move to `TABLE[state][trigger]`. A trigger the row lacks is a bug here, never a wire input."""
        target = TABLE[self.state].get(trigger)
        if target is None:
            raise AssertionError(f"no transition from {self.state} on {trigger_name(trigger)}")
        state = self.before_offline if isinstance(target, Previous) else target
        if state == self.state:
            return
        self.state = state
        if publish:
            self._publish_state()

    def _publish_state(self) -> None:
        self._emit(C.PublishState(self.state.value, len(self.conv.held_threads())))

    def _persist(self) -> None:
        self._emit(C.Persist(self.snapshot()))

    def snapshot(self) -> dict[str, Any]:
        """What survives a restart: the tree, heard cursors and unheard tails (not in-flight I/O)."""
        return {
            "device_id": self.device_id,
            "strategy": self.strategy.name,
            "conversation": self.conv.to_dict(),
            "active_thread": self.active_thread,
            "next_segment": self.next_segment,
            "undo": asdict(self.undo) if self.undo is not None else None,
        }

    # -- generations ------------------------------------------------------------------------------
    def _new_generation(self, item: AssistantItem, max_tokens: int | None = None) -> None:
        messages = tuple(build_messages(self.conv, self.strategy, self.settings.system_prompt, exclude_item=item.id))
        if self._adopt(item, messages):
            return
        gen = Generation(self.conv.new_id("g"), item.id)
        self.generations[gen.id] = gen
        self._emit(C.StartGeneration(gen.id, messages, max_tokens or self.settings.max_tokens))

    def _adopt(self, item: AssistantItem, messages: tuple[dict[str, str], ...]) -> bool:
        """Reuse the speculative generation being adopted (`partials`) for `item`, if it was asked
        exactly this (the same context; the same user words but for case and punctuation). Its
        text so far becomes the item's, and from here on it is an ordinary generation."""
        spec, self.adopting = self.adopting, None
        if spec is None:
            return False
        if spec.failed or not same_request(spec.messages, messages):
            self._emit(C.CancelGeneration(spec.generation))
            return False
        item.text = spec.text
        if spec.finished:
            item.complete = True
            if not item.words:
                item.text = self.settings.failure_phrase
        else:
            self.generations[spec.generation] = Generation(spec.generation, item.id)
        self._segment(item)
        return True

    def _segment(self, item: AssistantItem) -> None:  # pragma: no cover - `Pipeline` defines it
        raise NotImplementedError

    def _cancel_speculation(self) -> None:
        spec, self.speculation = self.speculation, None
        if spec is not None:
            self._emit(C.CancelGeneration(spec.generation))

    def _generation_for(self, item_id: str) -> Generation | None:
        return next((g for g in self.generations.values() if g.item == item_id), None)

    def _cancel_generation(self, item_id: str, truncate: bool = True) -> None:
        """Stop the item's generation. `truncate`: the model may go on later from what was heard
        (a resumed reply, once its generated rest is heard); not so for a reply given up on."""
        gen = self._generation_for(item_id)
        if gen is not None:
            del self.generations[gen.id]  # later text for it is ignored as "not running"
            item = self.conv.item(item_id)
            item.complete, item.truncated = True, truncate
            self._emit(C.CancelGeneration(gen.id))

    def _cancel_all_for_thread(self, thread_id: str) -> None:
        for gen in list(self.generations.values()):
            if self.conv.item(gen.item).thread == thread_id:
                self._cancel_generation(gen.item)


def normalise(text: str) -> str:
    """What must match for a final to adopt a partial's answer: the words, not case or punctuation."""
    return re.sub(r"[\W_]+", "", text.casefold())


def same_request(a: tuple[dict[str, str], ...], b: tuple[dict[str, str], ...]) -> bool:
    """The same LLM request but for the last user message's case and punctuation."""
    if len(a) != len(b):
        return False
    last = max((i for i, m in enumerate(b) if m.get("role") == "user"), default=-1)
    for i, (x, y) in enumerate(zip(a, b)):
        if i == last:
            if x.get("role") != y.get("role") or normalise(x.get("content", "")) != normalise(y.get("content", "")):
                return False
        elif x != y:
            return False
    return True
