"""Speculation (issue 12): a confident partial starts the answer's generation before the final; the
final adopts it (same words, same disposition) or it is cancelled and nothing of it is ever seen."""

from __future__ import annotations

from evaluation.coresim import Sim
from icp import commands as C
from icp import events as E
from icp.conversation import AssistantItem, ThreadStatus
from icp.dispositions import Classification, Disposition
from icp.engine.partials import is_partial_request
from icp.machine import AutoResume, EngineSettings, State
from icp.messages.playback import Action

LONG = ("Tides are caused by the moon pulling on the oceans. The near side bulges toward it. "
        "The far side bulges too because the earth is pulled away. Most coasts see two tides a day.")
POOLS = "Tidal pools are little seas left behind by the tide, full of crabs."
REPLIES = {"pools": POOLS, "tides": LONG, "bulge": "A bulge is where the sea stands a little higher.",
           "joke": "Why did the sea wave? It was tide up.", "": "Fine."}


def make(*finals: Disposition, partials: Disposition = Disposition.NEW, confidence: float = 0.9, **knobs) -> Sim:
    queue = list(finals)
    settings = EngineSettings(auto_resume=AutoResume.OFF, **knobs)
    sim = Sim(dict(REPLIES), lambda req: Classification(queue.pop(0), 0.9), settings=settings)
    sim.classify_partial = lambda req: Classification(partials, confidence)
    return sim


def speculative(cmds: list[C.Command]) -> list[C.StartGeneration]:
    return [c for c in cmds if isinstance(c, C.StartGeneration) and is_partial_request(c.generation_id)]


def idle_partial(sim: Sim, text: str, uid: str = "u1") -> list[C.Command]:
    n = len(sim.log)
    sim.send(E.WakeDetected(sim.now))
    sim.send(E.UtterancePartial(sim.now, uid, text))
    for _ in range(6):  # the partial's classification, then generation text (3 words a step)
        sim.step()
    return sim.log[n:]


def test_an_equal_final_adopts_the_speculation_and_audio_follows_at_once():
    sim = make(Disposition.NEW)
    out = idle_partial(sim, "tell me about tides")
    [spec] = speculative(out)
    assert spec.messages[-1] == {"role": "user", "content": "tell me about tides"}
    assert not sim.session.conv.log and not sim.session.conv.threads  # nothing in the tree
    assert not any(isinstance(c, (C.Synthesise, C.SendSegment)) for c in out)  # nothing voiced
    assert sim.session.speculation is not None and sim.session.speculation.text.startswith("Tides are")
    sim.send(E.UtteranceFinal(sim.now, "u1", "Tell me about tides."))
    n = len(sim.log)
    sim.step()  # the final's classification: NEW, as the partial's
    first = sim.log[n:]
    assert [c for c in first if isinstance(c, C.StartGeneration)] == []  # no second request
    assert not any(isinstance(c, C.CancelGeneration) for c in first)
    assert any(isinstance(c, C.SendSegment) for c in first)  # the first segment goes out in that step
    sim.run_until(sim.idle)
    item = next(e for e in sim.session.conv.log if isinstance(e, AssistantItem))
    assert item.text == LONG.rstrip() or item.text.strip() == LONG.strip()
    assert sim.heard_words(item.id) == item.words  # the adopted reply plays like any other
    user = next(e for e in sim.session.conv.log if not isinstance(e, AssistantItem))
    assert user.text == "Tell me about tides."
    sim.classify = lambda req: Classification(Disposition.NEW, 0.9)
    sim.classify_partial = None
    sim.say("tell me a joke")
    said = [w for m in sim.llm_requests[-1] if m["role"] == "assistant" for w in m["content"].split()]
    assert said == item.words


def test_a_different_final_cancels_it_and_none_of_its_text_is_ever_seen():
    sim = make(Disposition.NEW, Disposition.NEW)
    [spec] = speculative(idle_partial(sim, "tell me about tides"))
    out = sim.send(E.UtteranceFinal(sim.now, "u1", "tell me about tidal pools"))
    assert [c.generation_id for c in out if isinstance(c, C.CancelGeneration)] == [spec.generation_id]
    sim.run_until(sim.idle)
    sim.classify_partial = None
    sim.say("tell me a joke")
    sim.run_until(sim.idle)
    spoken = " ".join(c.segment.text for c in sim.log if isinstance(c, C.SendSegment))
    assert "moon" not in spoken and "crabs" in spoken
    for request in sim.llm_requests[1:]:
        assert all("moon" not in m["content"] for m in request)
    items = [e for e in sim.session.conv.log if isinstance(e, AssistantItem)]
    assert all("moon" not in i.text for i in items)


def test_a_newer_partial_with_other_words_cancels_the_older_speculation():
    sim = make(Disposition.NEW)
    [first] = speculative(idle_partial(sim, "tell me about tides"))
    n = len(sim.log)
    sim.send(E.UtterancePartial(sim.now, "u1", "tell me about tidal pools"))
    assert [c.generation_id for c in sim.log[n:] if isinstance(c, C.CancelGeneration)] == [first.generation_id]
    sim.step()
    [second] = speculative(sim.log[n:])
    assert second.messages[-1]["content"] == "tell me about tidal pools"
    sim.send(E.UtterancePartial(sim.now, "u1", "Tell me about tidal pools"))  # the same words: kept
    assert sim.session.speculation is not None and sim.session.speculation.generation == second.generation_id


def test_a_different_disposition_for_the_same_words_cancels_it():
    sim = make(Disposition.DROP, Disposition.NEW)
    [spec] = speculative(idle_partial(sim, "never mind the tides"))
    sim.send(E.UtteranceFinal(sim.now, "u1", "never mind the tides"))
    n = len(sim.log)
    sim.step()
    assert [c.generation_id for c in sim.log[n:] if isinstance(c, C.CancelGeneration)] == [spec.generation_id]
    assert sim.session.state is State.IDLE and not sim.gens


def test_unconfident_or_switched_off_speculates_nothing():
    for sim in (make(Disposition.NEW, confidence=0.5), make(Disposition.NEW, speculate=False)):
        assert speculative(idle_partial(sim, "tell me about tides")) == []


def speaking(sim: Sim) -> AssistantItem:
    sim.classify_partial = None
    sim.say("tell me about tides")
    sim.run_until(lambda: sim.heard)
    for _ in range(20):
        sim.step()
    return next(e for e in sim.session.conv.log if isinstance(e, AssistantItem))


def test_a_branch_while_interrupted_is_adopted_and_the_parent_is_held_as_usual():
    sim = make(Disposition.NEW, Disposition.BRANCH, partials=Disposition.BRANCH)
    parent = speaking(sim)
    sim.classify_partial = lambda req: Classification(Disposition.BRANCH, 0.86)
    sim.paused = True
    sim.send(E.InterruptReported(sim.now, "u2", sim.cursor()))
    n = len(sim.log)
    sim.send(E.UtterancePartial(sim.now, "u2", "what is a bulge"))
    sim.step()
    [spec] = speculative(sim.log[n:])
    assert not any(isinstance(c, C.DeviceControl) and c.action is Action.FLUSH for c in sim.log[n:])
    assert sim.session.state is State.INTERRUPTED
    sim.send(E.UtteranceFinal(sim.now, "u2", "What is a bulge?"))
    m = len(sim.log)
    sim.step()
    out = sim.log[m:]
    assert [c for c in out if isinstance(c, C.StartGeneration)] == []
    assert [(c.action, c.disposition) for c in out if isinstance(c, C.DeviceControl)][:1] == [
        (Action.FLUSH, Disposition.BRANCH)]
    assert sim.session.conv.threads[parent.thread].status is ThreadStatus.HELD
    sim.run_until(sim.idle)
    child = [e for e in sim.session.conv.log if isinstance(e, AssistantItem)][-1]
    assert child.text.startswith("A bulge") and sim.heard_words(child.id) == child.words
    assert spec.messages[-1]["content"] == "what is a bulge"


def test_a_speculation_dies_with_its_utterance():
    sim = make(Disposition.NEW)
    [spec] = speculative(idle_partial(sim, "tell me about tides"))
    n = len(sim.log)
    for _ in range(400):  # no final: the listen deadline
        sim.step()
    assert sim.session.state is State.IDLE and sim.session.speculation is None
    assert [c.generation_id for c in sim.log[n:] if isinstance(c, C.CancelGeneration)] == [spec.generation_id]
