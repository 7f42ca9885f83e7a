"""Rendering a state machine's transition table as Markdown: shared by the engine's machine
(`icp.engine.table`) and the device's (`icp.device.table`), whose tables have the same shape
(state -> trigger -> target; a trigger is an event type, a `Step` or a `Deadline`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Any


def trigger_name(trigger: Any) -> str:
    if isinstance(trigger, Enum) and type(trigger).__name__ == "Step":
        return f"`Step.{trigger.name}` ({trigger.value})"
    if isinstance(trigger, Enum):
        return f"`{type(trigger).__name__}.{trigger.name}`"
    return f"`{trigger.__name__}`"


def render(table: Mapping[Any, Mapping[Any, Any]], states: Iterable[Enum], steps: type[Enum],
           cell: Callable[[Any], str] = lambda target: target.value) -> list[str]:
    """A row per trigger (event types first, then steps in their order, then deadlines), a column per
    state, the target in the cell (blank: the trigger changes nothing there)."""
    states = list(states)
    triggers: list[Any] = []
    for row in table.values():
        triggers += [t for t in row if t not in triggers]

    def key(t: Any) -> tuple[int, int]:
        if isinstance(t, steps):
            return (1, list(steps).index(t))
        return (2, 0) if isinstance(t, Enum) else (0, 0)

    triggers.sort(key=key)
    lines = ["| trigger | " + " | ".join(f"`{s.value}`" for s in states) + " |", "|---" * (len(states) + 1) + "|"]
    for trigger in triggers:
        cells = ["" if table[state].get(trigger) is None else cell(table[state][trigger]) for state in states]
        lines.append(f"| {trigger_name(trigger)} | " + " | ".join(cells) + " |")
    return lines
