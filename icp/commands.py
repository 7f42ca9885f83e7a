"""Commands out of the engine's state machine: the I/O layer carries them out and decides nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from icp.dispositions import ClassifyRequest, Disposition
from icp.messages.playback import Action, Segment


@dataclass(frozen=True, slots=True)
class Command:
    pass


@dataclass(frozen=True, slots=True)
class StartGeneration(Command):
    generation_id: str
    messages: tuple[dict[str, str], ...]
    max_tokens: int


@dataclass(frozen=True, slots=True)
class CancelGeneration(Command):
    generation_id: str


@dataclass(frozen=True, slots=True)
class Synthesise(Command):
    segment_id: int
    text: str


@dataclass(frozen=True, slots=True)
class SendSegment(Command):
    """Publish the segment announcement, then its audio (the I/O layer holds the PCM)."""

    segment: Segment


@dataclass(frozen=True, slots=True)
class DiscardAudio(Command):
    """PCM of these segments will never be sent again: free it."""

    segment_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DeviceControl(Command):
    """A `control` message. `disposition` is set when the action carries out a disposition (flush for
    BRANCH/MODIFY/CANCEL, resume for ABSORB), so the device need not parse `reason`, which is for humans."""

    action: Action
    reason: str
    disposition: Disposition | None = None


@dataclass(frozen=True, slots=True)
class Classify(Command):
    request_id: str
    request: ClassifyRequest


@dataclass(frozen=True, slots=True)
class PublishState(Command):
    state: str
    held_threads: int


@dataclass(frozen=True, slots=True)
class Persist(Command):
    snapshot: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Transition(Command):
    """For the log: one line per state transition."""

    before: str
    event: str
    after: str


@dataclass(frozen=True, slots=True)
class Ignored(Command):
    """An event that was illegal or stale here; a logged no-op."""

    event: str
    reason: str


@dataclass(frozen=True, slots=True)
class DispositionApplied(Command):
    """What an utterance did (for logs, telemetry and the evaluation)."""

    utterance_id: str
    text: str
    classified: Disposition
    applied: Disposition
    confidence: float
    source: str


@dataclass(frozen=True, slots=True)
class ResumePlanned(Command):
    """A held thread resumes: from which item and word (for logs and the evaluation)."""

    thread_id: str
    item_id: str
    resume_word: int
    new_item_id: str
