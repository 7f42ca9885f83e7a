"""Continuing a device another worker was serving: the in-flight state to store, and how to pick it up.

`SessionCore.snapshot()` keeps what survives an engine *restart* (the tree, heard cursors, unheard
tails); a restart then holds nothing and waits for the user. A takeover must do better: the device is
mid-reply. So each write-behind snapshot also carries `live` (the machine's state, the item being
voiced, the generations running, pending utterance/classification and deadlines as time left), and the
new owner:

1. restores the session *with* its sent segments still playing (not dropped), so the device's next
   playback report moves the heard cursor to where the user really is;
2. stops the voice at that cursor and holds its thread (`_stop_voice(hold=True)`, the same step as an
   interruption), flushing the device: everything after the first word not fully heard is discarded;
3. a reply whose generation died with the old worker is cut back to its heard words, so that resuming
   asks the model to continue from the heard prefix (never from scratch, and no generated-but-unheard
   word is kept: no phantom words); a complete reply keeps its unheard tail, which is re-sent;
4. resumes at once (the auto-resume deadline set to now): the bridge, then the rest.

A held parent whose background generation died is cut back the same way, so it stays resumable.

This works on the core's session from outside (`icp.engine` is being changed by others right now); it
is pure (no I/O, no clock) and belongs in `icp/engine` as `Session.take_over()` once that settles.
"""

from __future__ import annotations

from typing import Any

from icp import commands as C
from icp import events as E
from icp.conversation import AssistantItem, Conversation, ThreadStatus
from icp.engine.settings import EngineSettings, Undo
from icp.engine.table import Deadline, State, Step
from icp.machine import Session
from icp.strategies import Strategy


def live_state(session: Session) -> dict[str, Any]:
    """What a snapshot leaves out and a new owner needs (times as seconds left, clocks differ)."""
    return {
        "state": session.state.value,
        "before_offline": session.before_offline.value,
        "voice_item": session.voice_item,
        "generating": sorted({g.item for g in session.generations.values()}),
        "utterance_id": session.utterance_id,
        "classify_id": session.classify_id,
        "classify_text": session.classify_text,
        "classify_speaking": session.classify_speaking,
        "awaiting_yes": session.awaiting_yes,
        "last_sent": session.last_sent,
        "deadlines": {d.value: max(0.0, t - session.now) for d, t in session.deadlines.items()},
    }


def restore(snapshot: dict[str, Any], settings: EngineSettings, strategy: Strategy, now: float) -> Session:
    """The session as the old owner left it, minus the work that died with it (module docstring, 1)."""
    live = snapshot["live"]
    session = Session(snapshot["device_id"], settings, strategy)
    session.conv = Conversation.from_dict(snapshot["conversation"])
    session.active_thread = snapshot.get("active_thread")
    session.next_segment = int(snapshot.get("next_segment", 1))
    session.now = now
    session.state = State(live["state"])
    session.before_offline = State(live.get("before_offline", "idle"))
    session.voice_item = live.get("voice_item")
    session.utterance_id = live.get("utterance_id")
    session.classify_id = live.get("classify_id")
    session.classify_text = live.get("classify_text", "")
    session.classify_speaking = bool(live.get("classify_speaking"))
    session.awaiting_yes = bool(live.get("awaiting_yes"))
    session.last_sent = None  # the device's chain is unknown: the first send flushes first
    if snapshot.get("undo"):  # as Session.restore: the undo window starts again when next idle
        session.undo = Undo(**(snapshot["undo"] | {"expires": None}))
    for name, left in live.get("deadlines", {}).items():
        session.deadlines[Deadline(name)] = now + float(left)
    if session.classify_id is not None:
        session.deadlines[Deadline.CLASSIFY] = now  # the classifier call died: fall back at once
    dead = set(live.get("generating", ()))
    for item_id in dead - {session.voice_item}:
        _cut_to_heard(session, session.conv.item(item_id))
    return session


def pending(snapshot: dict[str, Any]) -> bool:
    return bool(snapshot.get("live", {}).get("voice_item"))


def user_deciding(session: Session) -> bool:
    """Is the user interrupting the reply (the device paused, their turn not yet decided)? A takeover
    then waits for the disposition: an ABSORB lets the dead reply go on (hold and resume it then), a
    BRANCH, MODIFY or CANCEL stops it (then it is only cut back to its heard words)."""
    return session.state in (State.INTERRUPTED, State.CLASSIFYING)


def hold_and_resume(session: Session, snapshot: dict[str, Any], now: float) -> list[C.Command]:
    """Steps 2-4 of the module docstring; the commands to carry out (flush, state, resumed reply)."""
    item_id = session.voice_item
    dead = snapshot["live"].get("voice_item")
    generating = dead in set(snapshot["live"].get("generating", ()))
    if generating and dead is not None and item_id != dead:
        # The user's turn stopped the reply the old worker was voicing (a BRANCH holds it, a CANCEL or
        # MODIFY may be undone): keep only its heard words, so that resuming it asks the model to go
        # on from there and no generated-but-unheard word survives (no phantom words).
        _cut_to_heard(session, session.conv.item(dead))
    if item_id is None or item_id != dead or session.state not in (State.THINKING, State.SPEAKING):
        return []
    item = session.conv.item(item_id)
    session._out = []
    session._stop_voice(hold=True, reason="TAKEOVER")
    if generating:
        _cut_to_heard(session, item)
    thread = session.conv.threads[item.thread]
    thread.resume_word = _heard_point(session, item) if generating else session.conv.resume_point(item)
    session._step(Step.DEVICE_RESTARTED)
    session.deadlines[Deadline.AUTO_RESUME] = now
    commands = list(session._out)
    session._out = []
    return commands + session.handle(E.Tick(now))


def _cut_to_heard(session: Session, item: AssistantItem) -> None:
    """A reply whose generation died: keep its heard words only; resuming continues it from there."""
    word = _heard_point(session, item)
    item.text = item.text[: session.conv.word_offset(item, word)].rstrip() if word else ""
    item.segmented_words = min(item.segmented_words, word)
    item.segmented_chars = min(item.segmented_chars, len(item.text))
    item.complete, item.cut, item.truncated = True, True, True  # the model had more to say
    thread = session.conv.threads[item.thread]
    if thread.status is ThreadStatus.HELD and thread.held_item == item.id:
        thread.resume_word = min(thread.resume_word, word)


def _heard_point(session: Session, item: AssistantItem) -> int:
    """Words to keep of a reply that stops growing: every word heard (past the threshold), none other."""
    return min(len(item.words), max(item.heard, session.conv.resume_point(item)))
