"""Deterministic tests of the engine's dispositions and settings, through the core alone."""

from __future__ import annotations

from dataclasses import replace

from evaluation.coresim import Sim
from icp import commands as C
from icp import events as E
from icp.conversation import AssistantItem, ThreadStatus
from icp.dispositions import Classification, Disposition
from icp.machine import AutoResume, EngineSettings, Session, State
from icp.strategies import Icp

LONG = ("Tides are caused by the moon pulling on the oceans. The near side bulges toward it. "
        "The far side bulges too because the earth is pulled away. Most coasts see two tides a day. "
        "The sun adds a smaller pull of its own.")
REPLIES = {"tides": LONG, "bulge": "A bulge is where the sea stands a little higher.", "": "Fine."}


def scripted(*decisions: Disposition):
    queue = list(decisions)
    return lambda req: Classification(queue.pop(0), 0.9)


def branch_sim(auto: AutoResume, *decisions: Disposition) -> tuple[Sim, AssistantItem]:
    settings = EngineSettings(auto_resume=auto, auto_resume_delay_s=1.0)
    sim = Sim(dict(REPLIES), scripted(Disposition.NEW, Disposition.BRANCH, *decisions), settings=settings)
    sim.say("tell me about tides")
    for _ in range(60):
        sim.step()
    parent = next(e for e in sim.session.conv.log if isinstance(e, AssistantItem))
    sim.say("wait what is a bulge")
    sim.run_until(sim.idle)
    return sim, parent


def resumed_items(sim: Sim, parent: AssistantItem) -> list[AssistantItem]:
    return [e for e in sim.session.conv.log if isinstance(e, AssistantItem) and e.resumes == parent.id]


def test_auto_resume_continues_the_held_thread_after_a_quiet_moment():
    sim, parent = branch_sim(AutoResume.AUTO)
    assert sim.session.conv.threads[parent.thread].status is ThreadStatus.HELD
    for _ in range(30):  # 1.5 s of silence > auto_resume_delay_s
        sim.step()
    assert len(resumed_items(sim, parent)) == 1


def test_auto_resume_off_waits_for_go_back():
    sim, parent = branch_sim(AutoResume.OFF, Disposition.RESUME)
    for _ in range(60):
        sim.step()
    assert not resumed_items(sim, parent) and sim.session.state is State.IDLE
    sim.say("okay go back")
    assert len(resumed_items(sim, parent)) == 1


def test_ask_mode_asks_and_a_yes_resumes():
    sim, parent = branch_sim(AutoResume.ASK)
    sim.run_until(sim.idle)
    asked = [s.segment.text for s in sim.sent]
    assert any("go back" in t for t in asked)
    sim.say("yes please")
    assert len(resumed_items(sim, parent)) == 1


def test_never_mind_drops_held_threads():
    sim, parent = branch_sim(AutoResume.OFF, Disposition.DROP)
    sim.say("never mind")
    assert sim.session.conv.threads[parent.thread].status is ThreadStatus.CANCELLED
    assert not sim.session.conv.held_threads()


def test_modify_keeps_the_heard_prefix_and_continues_the_same_thread():
    sim = Sim(dict(REPLIES), scripted(Disposition.NEW, Disposition.MODIFY))
    sim.say("tell me about tides")
    for _ in range(50):
        sim.step()
    first = next(e for e in sim.session.conv.log if isinstance(e, AssistantItem))
    heard = sim.heard_words(first.id)
    sim.say("no I meant the tides of the sun")
    request = sim.llm_requests[-1]
    assert request[-1] == {"role": "user", "content": "no I meant the tides of the sun"}
    assistant = [m["content"] for m in request if m["role"] == "assistant"]
    assert assistant[0].startswith(" ".join(heard)) and "[interrupted after:" in assistant[0]
    items = [e for e in sim.session.conv.log if isinstance(e, AssistantItem)]
    assert items[-1].thread == first.thread and first.cut


def test_a_bare_stop_goes_idle_and_a_redirect_starts_a_new_thread():
    sim = Sim(dict(REPLIES), scripted(Disposition.NEW, Disposition.CANCEL))
    sim.say("tell me about tides")
    for _ in range(30):
        sim.step()
    sim.say("stop")
    assert sim.session.state is State.IDLE and len(sim.llm_requests) == 1
    sim2 = Sim(dict(REPLIES), scripted(Disposition.NEW, Disposition.CANCEL))
    sim2.say("tell me about tides")
    for _ in range(30):
        sim2.step()
    sim2.say("tell me a joke instead")
    assert len(sim2.llm_requests) == 2 and sim2.session.state is not State.IDLE
    threads = list(sim2.session.conv.threads.values())
    assert threads[0].status is ThreadStatus.CANCELLED and threads[-1].status is ThreadStatus.ACTIVE


def test_a_held_thread_survives_snapshot_and_restore():
    sim, parent = branch_sim(AutoResume.OFF)
    snapshot = sim.session.snapshot()
    restored = Session.restore(snapshot, sim.session.settings, Icp())
    assert restored.state is State.OFFLINE
    held = restored.conv.nearest_held(restored.active_thread)
    assert held is not None and held.held_item == parent.id
    assert held.resume_word == sim.session.conv.threads[parent.thread].resume_word


def test_an_event_illegal_in_the_state_is_a_logged_no_op():
    session = Session("d", EngineSettings())
    out = session.handle(E.InterruptReported(0.0, "u1", None))
    assert session.state is State.OFFLINE
    assert [type(c) for c in out] == [C.Ignored] and "not legal in state offline" in out[0].reason
    session.handle(E.DeviceConnected(0.1))
    out = session.handle(E.Classified(0.2, "nobody-asked", Disposition.BRANCH))
    assert session.state is State.IDLE and isinstance(out[0], C.Ignored)


def test_settings_are_checked():
    import pytest

    with pytest.raises(ValueError):
        EngineSettings(heard_threshold=1.5)
    with pytest.raises(ValueError):
        replace(EngineSettings(), lookahead_ms=0)


def test_a_segment_that_cannot_be_synthesised_is_retried_then_the_reply_stops_before_it():
    """Its words are never skipped: a later segment heard must not make unspoken words count as heard."""
    sim = Sim(dict(REPLIES), scripted(Disposition.NEW, Disposition.NEW))
    failures = []
    carry_out = sim.carry_out

    def tts_down_for_the_first_segment(cmd):
        if isinstance(cmd, C.Synthesise) and cmd.segment_id == 1:
            failures.append(cmd.segment_id)
            sim.send(E.SynthesisFailed(sim.now, cmd.segment_id, "tts down"))
        else:
            carry_out(cmd)

    sim.carry_out = tts_down_for_the_first_segment
    sim.say("tell me about tides")
    sim.run_until(sim.idle)
    item = next(e for e in sim.session.conv.log if isinstance(e, AssistantItem))
    assert failures == [1, 1] and item.cut and item.heard == 0 and not sim.sent
    sim.say("what else")
    assert not [m for m in sim.llm_requests[-1] if m["role"] == "assistant" and "Tides" in m["content"]]


def _context_when_interrupted(after_words: int) -> tuple[str, list[str]]:
    """Interrupt the tides reply once `after_words` of it were heard; the classifier's context then."""
    asked: list[str] = []

    def classify(req):
        asked.append(req.last_heard_sentence)
        return Classification(Disposition.NEW if not req.speaking else Disposition.BRANCH, 0.9)

    sim = Sim(dict(REPLIES), classify)
    sim.say("tell me about tides")
    sim.run_until(lambda: any(isinstance(e, AssistantItem) for e in sim.session.conv.log))
    item = next(e for e in sim.session.conv.log if isinstance(e, AssistantItem))
    sim.run_until(lambda: len(sim.heard_words(item.id)) >= after_words)
    sim.say("wait what is a bulge")
    return asked[-1], sim.heard_words(item.id)


def test_a_context_cut_a_few_words_in_comes_with_the_sentence_before_it():
    """The classifier's context is the last sentence the user heard; cut under six words in, the
    sentence before comes too ("The near" alone says nothing about what the user may correct)."""
    context, heard = _context_when_interrupted(11)  # sentence 1 is 9 words: 2-5 words of sentence 2
    assert 11 <= len(heard) <= 14, heard
    assert context.startswith("Tides are caused by the moon pulling on the oceans. The"), context
    context, heard = _context_when_interrupted(26)  # well into sentence 3 (15 words from word 16)
    assert context.startswith("The far side bulges too") and "toward it." not in context, context
