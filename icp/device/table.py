"""The device machine's states and its transition table: the table IS the machine.

As in the engine's machine (`icp.engine.table`), a handler never names the state it goes to: it
reports what happened (the event's type, or a `Step` only the handler can tell) and the next state is
looked up in `TABLE[state][trigger]`. A trigger without a cell in the current state's row changes
nothing: the table says where each thing that happens matters. Mute and a lost sound card are flags
beside the state (the wire shows them as `muted` / `error`), not states.

docs/architecture.md shows `render_markdown()`; tests/unit/test_device_table.py keeps the two equal.
"""

from __future__ import annotations

from enum import StrEnum

from icp.device import events as E
from icp.statetable import render


class State(StrEnum):
    IDLE = "idle"            # nothing playing, nobody talking to the device
    LISTENING = "listening"  # the user talks to an idle device (after a wake, a talk press, or `listen`)
    THINKING = "thinking"    # the user's words went to the engine; no reply audio yet
    SPEAKING = "speaking"    # reply audio is queued and playing
    PAUSED = "paused"        # playback paused at an exact sample (barge-in, or the engine's `pause`)


class Step(StrEnum):
    """Outcomes a handler reports when the event's type alone does not say where the machine goes."""

    BARGE_IN = "speech, a talk press or a cancel while speaking: paused at once"
    SUSPECT = "first speech-like frame while speaking: paused, nothing sent"
    DISMISS = "the suspected speech broke off: resumed at the paused sample"
    WAKE = "wake word or talk button"
    HEARD_WORDS = "final words sent"
    HEARD_NOTHING = "empty or abandoned utterance"
    ENGINE_PAUSE = "control pause"
    ENGINE_RESUME = "control resume"
    ENGINE_FLUSH = "control flush"
    ENGINE_LISTEN = "control listen"
    ENGINE_STOP_LISTENING = "control stop_listening"
    ENGINE_IDLE = "engine idle with no reply for us"


class Deadline(StrEnum):
    LISTEN = "listen"  # listening with no speech for listen_timeout_s


Trigger = type[E.Event] | Step | Deadline

S = State
TABLE: dict[State, dict[Trigger, State]] = {
    S.IDLE: {
        E.SegmentQueued: S.SPEAKING, Step.WAKE: S.LISTENING, Step.HEARD_WORDS: S.THINKING,
        Step.HEARD_NOTHING: S.IDLE, Step.ENGINE_RESUME: S.SPEAKING, Step.ENGINE_LISTEN: S.LISTENING,
    },
    S.LISTENING: {
        E.SegmentQueued: S.SPEAKING, Step.WAKE: S.LISTENING, Step.HEARD_WORDS: S.THINKING,
        Step.HEARD_NOTHING: S.IDLE, Step.ENGINE_RESUME: S.SPEAKING, Step.ENGINE_LISTEN: S.LISTENING,
        Step.ENGINE_STOP_LISTENING: S.IDLE, E.MuteSet: S.IDLE, Deadline.LISTEN: S.IDLE,
    },
    S.THINKING: {
        E.SegmentQueued: S.SPEAKING, Step.WAKE: S.LISTENING, Step.ENGINE_RESUME: S.SPEAKING,
        Step.ENGINE_LISTEN: S.LISTENING, Step.ENGINE_IDLE: S.IDLE,
    },
    S.SPEAKING: {
        E.PlaybackIdle: S.IDLE, Step.BARGE_IN: S.PAUSED, Step.ENGINE_PAUSE: S.PAUSED,
        Step.SUSPECT: S.SPEAKING, Step.DISMISS: S.SPEAKING,
        Step.ENGINE_FLUSH: S.THINKING, Step.ENGINE_LISTEN: S.LISTENING,
    },
    S.PAUSED: {
        Step.ENGINE_RESUME: S.SPEAKING, Step.ENGINE_FLUSH: S.THINKING, Step.ENGINE_LISTEN: S.LISTENING,
    },
}
for _row in TABLE.values():
    _row[E.AudioLost] = S.IDLE  # no card: nothing plays, nothing is heard


def render_markdown() -> str:
    """A row per trigger, a column per state, the next state in the cell (blank: nothing changes)."""
    return "\n".join(render(TABLE, State, Step)) + "\n"


if __name__ == "__main__":  # python -m icp.device.table > the table for docs/architecture.md
    print(render_markdown(), end="")
