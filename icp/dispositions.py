"""What an utterance does to the conversation.

Interruption dispositions apply while the agent speaks; navigation intents apply while it is idle.
Both are one enum because the classifier answers with one of them and the state machine switches on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Disposition(StrEnum):
    # while the agent speaks
    BRANCH = "BRANCH"  # side question: hold the thread at the heard cursor, answer in a child
    MODIFY = "MODIFY"  # correction: keep the heard prefix, drop the unheard tail, continue
    CANCEL = "CANCEL"  # stop or redirect: close the thread at the heard cursor
    ABSORB = "ABSORB"  # backchannel or noise: nothing changes, playback resumes
    # while the agent is idle
    RESUME = "RESUME"  # go back / continue / where were you: resume the nearest held thread
    DROP = "DROP"  # never mind: discard held threads
    NEW = "NEW"  # a new request


INTERRUPTION_DISPOSITIONS: frozenset[Disposition] = frozenset(
    {Disposition.BRANCH, Disposition.MODIFY, Disposition.CANCEL, Disposition.ABSORB}
)
NAVIGATION_INTENTS: frozenset[Disposition] = frozenset(
    {Disposition.RESUME, Disposition.DROP, Disposition.NEW}
)


class Hint(StrEnum):
    """A device-side short cut: it decides before any classifier runs."""

    CANCEL = "cancel"  # talk button long press, or a spotted "stop" word


@dataclass(frozen=True, slots=True)
class ClassifyRequest:
    utterance: str
    last_heard_sentence: str
    speaking: bool  # True: an interruption (BRANCH/MODIFY/CANCEL/ABSORB); False: navigation
    hint: Hint | None = None


@dataclass(frozen=True, slots=True)
class Classification:
    disposition: Disposition
    confidence: float  # 0..1
    source: str = "lexical"  # which backend decided: hint, lexical, local, llm, ...


class Classifier(Protocol):
    """Synchronous, side-effect free. Backends that do I/O (the LLM one) live outside icp/."""

    def classify(self, request: ClassifyRequest) -> Classification: ...
