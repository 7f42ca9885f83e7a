"""The LLM context, built from the tree: only heard words of assistant items.

Where an item was cut, an explicit note says so. Notes are in square brackets and contain only
words the user heard, so nothing unheard ever reaches the model as said.
"""

from __future__ import annotations

import re

from icp.conversation import Conversation, UserTurn
from icp.strategies import Strategy

NOTE = re.compile(r"\s*\[[^\]]*\]")
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant on a smart speaker. Answer in plain spoken sentences, no lists "
    "or markup. The user may interrupt you; an assistant turn ending in [interrupted after: ...] was cut "
    "off there and the user heard nothing after it."
)


def interrupted_note(heard_words: list[str]) -> str:
    if not heard_words:
        return "[interrupted before any word was heard]"
    return f"[interrupted after: {' '.join(heard_words[-4:])}]"


def strip_notes(text: str) -> str:
    """Assistant text without the engine's notes: the words presented as said."""
    return NOTE.sub("", text).strip()


def build_messages(
    conv: Conversation, strategy: Strategy, system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    exclude_item: str | None = None,
) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = [{"role": "system", "content": system_prompt}]
    for entry in conv.log:
        if isinstance(entry, UserTurn):
            _append(messages, "user", entry.text)
            continue
        if entry.id == exclude_item:
            continue
        view = strategy.view(entry)
        if view is None or (not view.words and not view.cut):
            continue
        content = " ".join(view.words)
        if view.cut:
            content = f"{content} {interrupted_note(view.words)}".strip()
        _append(messages, "assistant", content)
    return messages


def _append(messages: list[dict[str, str]], role: str, content: str) -> None:
    """Consecutive turns of one role are merged: chat templates expect alternation."""
    if messages[-1]["role"] == role:
        messages[-1] = {"role": role, "content": f"{messages[-1]['content']}\n{content}"}
    else:
        messages.append({"role": role, "content": content})

