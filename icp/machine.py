"""The engine's state machine for one device session: the one place that decides behaviour.

The code lives in `icp/engine/` (split by concern); this module is the stable name importers use.
"""

from __future__ import annotations

from icp.engine.apply import DISPOSITIONS
from icp.engine.session import HANDLERS, Session
from icp.engine.settings import AutoResume, EngineSettings, Generation, PendingSegment
from icp.engine.speech import AFFIRMATIVE
from icp.engine.table import ACCEPTS, DEADLINE_STATE, TABLE, TRANSITIONS, Deadline, State, Step, render_markdown

__all__ = [
    "ACCEPTS", "AFFIRMATIVE", "DEADLINE_STATE", "DISPOSITIONS", "HANDLERS", "TABLE", "TRANSITIONS", "AutoResume",
    "Deadline", "EngineSettings", "Generation", "PendingSegment", "Session", "State", "Step", "render_markdown",
]
