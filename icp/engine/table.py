"""The engine machine's states and its transition table: the table IS the machine.

A handler never names the state it goes to. It reports what happened (the event's type, or a `Step`
for an outcome only the handler knows, such as "a reply begins") and the next state is looked up in
`TABLE[state][trigger]`. A trigger missing from the current state's row is a bug in the core, never a
wire input (wire inputs that do not belong are filtered by `ACCEPTS` first and become `Ignored`).

docs/architecture.md shows `render_markdown()`; tests/unit/test_machine_table.py keeps the two equal.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from icp import events as E
from icp.statetable import render, trigger_name  # noqa: F401 - trigger_name re-exported
from icp.engine.settings import EngineSettings


class State(StrEnum):
    OFFLINE = "offline"  # no device connected
    IDLE = "idle"  # nothing playing or pending (held threads may wait)
    LISTENING = "listening"  # the user is talking to an idle device
    THINKING = "thinking"  # a reply is being generated, no audio sent yet
    SPEAKING = "speaking"  # reply audio is playing
    INTERRUPTED = "interrupted"  # the device paused on speech; waiting for the user's final words
    CLASSIFYING = "classifying"  # waiting for the classifier's disposition


class Step(StrEnum):
    """Outcomes a handler reports when the event's type alone does not say where the machine goes."""

    DEVICE_RESTARTED = "device restarted mid-reply"  # its queue is gone: what played is held
    HEARD_NOTHING = "empty final utterance"  # noise the VAD took for speech
    CLASSIFY = "utterance to classify"
    REPLY = "a reply begins"  # new answer, branch, correction, resumed thread, or the ask phrase
    STOPPED = "stopped"  # bare CANCEL, DROP: nothing to say
    ABSORBED_PLAYING = "ABSORB, audio queued"  # the device resumes what it paused
    ABSORBED_WAITING = "ABSORB, nothing queued yet"
    ABSORBED_EARLY = "ABSORB from a partial, audio queued"  # resumed before the final (provisional)
    DECIDED_LATE = "the final revises an early ABSORB"  # pause now, then apply as if interrupted
    AUDIO_SENT = "first segment sent"
    REPLY_DONE = "reply fully heard"


class Deadline(StrEnum):
    """Timeouts the machine keeps; each one lives only as long as its state."""

    INTERRUPT = "interrupt"  # no final words after an interrupt: a backchannel (ABSORB)
    CLASSIFY = "classify"  # the classifier did not answer: fall back
    AUTO_RESUME = "auto_resume"  # a quiet moment after a side answer: resume the held thread
    LISTEN = "listen"  # a wake or words, then no final utterance: back to idle
    UNDO = "undo"  # the undo window after a CANCEL/MODIFY closed: the cancelled reply is gone
    LOST_AUDIO = "lost_audio"  # a device that ran dry still has not played audio sent to it: re-send
    LATE_CURSOR = "late_cursor"  # a decision revising an early ABSORB waited for the paused cursor


class Previous:
    """The target of reconnecting: the state the connection dropped in (a history state)."""

    def __repr__(self) -> str:
        return "PREVIOUS"


PREVIOUS: Final = Previous()

Trigger = type[E.Event] | Step | Deadline
Target = State | Previous

S = State
_LIVE = (S.IDLE, S.LISTENING, S.THINKING, S.SPEAKING, S.INTERRUPTED, S.CLASSIFYING)
_DECIDING = (S.IDLE, S.LISTENING, S.INTERRUPTED, S.CLASSIFYING)  # where a disposition can be applied


def _row(*pairs: tuple[Trigger, Target]) -> dict[Trigger, Target]:
    return dict(pairs)


TABLE: dict[State, dict[Trigger, Target]] = {
    S.OFFLINE: _row((E.DeviceConnected, PREVIOUS)),
    S.IDLE: _row(
        (E.WakeDetected, S.LISTENING), (E.UtterancePartial, S.LISTENING), (Step.HEARD_NOTHING, S.IDLE),
        (Step.CLASSIFY, S.CLASSIFYING), (Step.REPLY, S.THINKING), (Step.STOPPED, S.IDLE),
        (Deadline.UNDO, S.IDLE),
    ),
    S.LISTENING: _row(
        (E.WakeDetected, S.LISTENING), (E.UtterancePartial, S.LISTENING), (Step.HEARD_NOTHING, S.IDLE),
        (Step.CLASSIFY, S.CLASSIFYING), (Step.REPLY, S.THINKING), (Step.STOPPED, S.IDLE),
        (Deadline.LISTEN, S.IDLE),
    ),
    S.CLASSIFYING: _row(
        (Step.REPLY, S.THINKING), (Step.STOPPED, S.IDLE), (Step.ABSORBED_PLAYING, S.SPEAKING),
        (Step.ABSORBED_WAITING, S.THINKING),
    ),
    S.THINKING: _row(
        (E.UtterancePartial, S.INTERRUPTED), (E.UtteranceFinal, S.INTERRUPTED), (E.InterruptReported, S.INTERRUPTED),
        (Step.AUDIO_SENT, S.SPEAKING), (Step.REPLY_DONE, S.IDLE), (Step.DECIDED_LATE, S.INTERRUPTED),
    ),
    S.SPEAKING: _row(
        (E.UtterancePartial, S.INTERRUPTED), (E.UtteranceFinal, S.INTERRUPTED), (E.InterruptReported, S.INTERRUPTED),
        (Step.REPLY_DONE, S.IDLE), (Step.DECIDED_LATE, S.INTERRUPTED),
    ),
    S.INTERRUPTED: _row(
        (Step.CLASSIFY, S.CLASSIFYING), (Step.REPLY, S.THINKING), (Step.STOPPED, S.IDLE),
        (Step.ABSORBED_PLAYING, S.SPEAKING), (Step.ABSORBED_WAITING, S.THINKING), (Step.ABSORBED_EARLY, S.SPEAKING),
    ),
}
for _state in _LIVE:
    TABLE[_state][E.DeviceDisconnected] = S.OFFLINE
    TABLE[_state][Step.DEVICE_RESTARTED] = S.IDLE

# Which deadline belongs to which state: a deadline whose state has passed is dropped unfired.
DEADLINE_STATE: dict[Deadline, State] = {
    Deadline.INTERRUPT: S.INTERRUPTED, Deadline.CLASSIFY: S.CLASSIFYING, Deadline.AUTO_RESUME: S.IDLE,
    Deadline.LISTEN: S.LISTENING, Deadline.UNDO: S.IDLE, Deadline.LOST_AUDIO: S.SPEAKING,
    Deadline.LATE_CURSOR: S.INTERRUPTED,
}
# How long each deadline is (the `EngineSettings` field) and what happens when it fires.
DEADLINE_RULE: dict[Deadline, tuple[str, str]] = {
    Deadline.INTERRUPT: ("interrupt_timeout_s", "no final words after an interrupt (nor a partial in this "
                         "long): ABSORB"),
    Deadline.CLASSIFY: ("classify_timeout_s", "no disposition: ABSORB while speaking, NEW while idle"),
    Deadline.AUTO_RESUME: ("auto_resume_delay_s", "quiet after a side answer: RESUME the held thread"),
    Deadline.LISTEN: ("listen_timeout_s", "no final utterance: back to idle"),
    Deadline.UNDO: ("undo_window_s", "idle this long after a CANCEL/MODIFY: \"go back\" no longer undoes it "
                    "(the next decided utterance other than ABSORB closes it sooner)"),
    Deadline.LOST_AUDIO: ("lost_audio_s", "the device reported nothing queued while audio sent to it was unplayed, "
                          "and no report since says otherwise: that audio was lost; re-send from the heard cursor "
                          "(counted from the oldest unplayed segment's sending)"),
    Deadline.LATE_CURSOR: ("late_cursor_wait_s", "a final that revises an early ABSORB paused the device and "
                           "waits for its `paused` cursor (the words played meanwhile were heard); none by "
                           "then: applied with the cursor known"),
}

# Which events belong in which state; any other is an `Ignored` no-op. Background work (generation,
# synthesis, playback reports, ticks) goes on in every state: stale ids are ignored by the handlers.
ALWAYS: tuple[type[E.Event], ...] = (
    E.DeviceConnected, E.PlaybackReported, E.GenerationText, E.GenerationFinished, E.GenerationFailed,
    E.SegmentSynthesised, E.SynthesisFailed, E.SegmentNotSent, E.Tick,
)
SPEECH: tuple[type[E.Event], ...] = (E.UtterancePartial, E.UtteranceFinal)
# The classifier answers in every live state: a partial's answer (early ABSORB, speculation) comes
# while listening or interrupted, a provisionally absorbed final's while speaking; stale ones are ignored.
ANSWERS: tuple[type[E.Event], ...] = (E.DeviceDisconnected, E.Classified, E.ClassifyFailed)
ACCEPTS: dict[State, frozenset[type[E.Event]]] = {
    S.OFFLINE: frozenset(ALWAYS),
    S.IDLE: frozenset(ALWAYS + SPEECH + ANSWERS + (E.WakeDetected,)),
    S.LISTENING: frozenset(ALWAYS + SPEECH + ANSWERS + (E.WakeDetected,)),
    S.THINKING: frozenset(ALWAYS + SPEECH + ANSWERS + (E.InterruptReported,)),
    S.SPEAKING: frozenset(ALWAYS + SPEECH + ANSWERS + (E.InterruptReported,)),
    S.INTERRUPTED: frozenset(ALWAYS + SPEECH + ANSWERS + (E.InterruptReported,)),
    S.CLASSIFYING: frozenset(ALWAYS + ANSWERS + (E.UtterancePartial,)),
}


def _closure() -> frozenset[tuple[State, State]]:
    """Pairs one event can move the machine between: one or more table steps. (A `Transition` command
    reports the state before and after the whole event, e.g. speaking -> idle -> thinking.) A
    reconnect restores the state before the drop and may go on from there; a drop ends an event."""
    live = {(s, t) for s, row in TABLE.items() if s is not S.OFFLINE
            for t in row.values() if isinstance(t, State) and t is not S.OFFLINE}
    pairs = set(live)
    while more := {(a, d) for a, b in pairs for c, d in live if b == c} - pairs:
        pairs |= more
    pairs |= {(S.OFFLINE, t) for t in _LIVE} | {(S.OFFLINE, t) for _, t in pairs}
    pairs |= {(s, S.OFFLINE) for s in _LIVE}
    return frozenset((a, b) for a, b in pairs if a != b)


TRANSITIONS: frozenset[tuple[State, State]] = _closure()


def render_markdown() -> str:
    """The table as docs/architecture.md shows it: a row per trigger, a column per state, the next
    state in the cell (blank: the trigger never happens there). Generated; a test keeps the doc equal."""
    lines = render(TABLE, State, Step, lambda t: "(before the drop)" if isinstance(t, Previous) else t.value)
    lines += ["", "| deadline | lives in | length (`EngineSettings`, default) | when it fires |", "|---|---|---|---|"]
    defaults = EngineSettings()
    for deadline in Deadline:
        field, rule = DEADLINE_RULE[deadline]
        lines.append(f"| `Deadline.{deadline.name}` | `{DEADLINE_STATE[deadline].value}` | "
                     f"`{field}` ({getattr(defaults, field):g} s) | {rule} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m icp.engine.table > the table for docs/architecture.md
    print(render_markdown(), end="")
