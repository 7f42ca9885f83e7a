"""How an interruption is treated: segue's own policy and the baselines other stacks use.

The state machine consults one of these at three points: which disposition to apply, which words of
an assistant item the LLM is shown, and where a resumed item starts. The baselines are policies of the
same engine (not copies of it), so the evaluation compares like with like (shared/SCENARIOS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from icp.conversation import AssistantItem, Conversation
from icp.dispositions import Disposition


@dataclass(frozen=True, slots=True)
class ItemView:
    words: list[str]  # the words the LLM is shown as said
    cut: bool  # add an explicit "interrupted" note


@dataclass(frozen=True)
class Strategy:
    name: str
    # After a side answer, a held thread may resume by itself (`auto_resume = "auto"`). A baseline that
    # never holds threads on purpose does not; a thread it holds (a device restart) waits for "go back".
    auto_resume: bool = True
    # A CANCEL or MODIFY keeps what "go back" would resume for a while (`EngineSettings.undo_window_s`).
    # The cancel-restart baseline drops everything at once, as the pipelines it stands for do.
    undo: bool = True

    def apply(self, disposition: Disposition, speaking: bool) -> Disposition:
        return disposition

    def view(self, item: AssistantItem) -> ItemView | None:
        """None: the item is left out of the context altogether."""
        return ItemView(item.words[: item.heard], item.cut)

    def resume_word(self, conv: Conversation, item: AssistantItem) -> int:
        return conv.resume_point(item)


@dataclass(frozen=True)
class Icp(Strategy):
    """segue: heard words only, typed dispositions, resume from the first word not fully heard."""

    name: str = "icp"


@dataclass(frozen=True)
class CancelRestart(Strategy):
    """Any speech stops the reply; what was said and unsaid alike is dropped; every turn is new."""

    name: str = "cancel-restart"
    auto_resume: bool = False
    undo: bool = False

    def apply(self, disposition: Disposition, speaking: bool) -> Disposition:
        return Disposition.CANCEL if speaking else Disposition.NEW

    def view(self, item: AssistantItem) -> ItemView | None:
        return None if item.cut else ItemView(item.words[: item.heard] if item.heard else item.words, False)


@dataclass(frozen=True)
class TruncateClear(Strategy):
    """Audio is cut at the heard point, but the interrupted item's transcript is cleared."""

    name: str = "truncate-clear"

    def view(self, item: AssistantItem) -> ItemView | None:
        return None if item.cut else ItemView(item.words[: item.heard], False)


@dataclass(frozen=True)
class GeneratedAsHeard(Strategy):
    """Everything generated counts as said: the LLM sees unheard words, resume starts past them."""

    name: str = "generated-as-heard"

    def view(self, item: AssistantItem) -> ItemView | None:
        return ItemView(item.words, False)

    def resume_word(self, conv: Conversation, item: AssistantItem) -> int:
        return len(item.words)


STRATEGIES: dict[str, Strategy] = {
    s.name: s for s in (Icp(), CancelRestart(), TruncateClear(), GeneratedAsHeard())
}


def strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None
