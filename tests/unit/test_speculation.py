"""Speculation (issue 12): a confident partial starts the answer's generation before the final; the
final adopts it (same words, same disposition) or it is cancelled and nothing of it is ever seen."""

from __future__ import annotations

from evaluation.coresim import Sim, timings
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
SHORT = "Yes. Tides are high. The moon pulls."  # its first cut: "Yes." once finished, not before
REPLIES = {"pools": POOLS, "tides": LONG, "high": SHORT, "bulge": "A bulge is where the sea stands a little higher.",
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
    assert not any(isinstance(c, C.SendSegment) for c in out)  # nothing voiced
    spec_state = sim.session.speculation
    assert spec_state is not None and spec_state.text.startswith("Tides are")
    # only the first segment is synthesised ahead, and held back (never sent before the final)
    assert [c.segment_id for c in out if isinstance(c, C.Synthesise)] == [spec_state.held.id]
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


# -- the first segment synthesised ahead (held back until the final adopts the speculation) -----------
def held_back(sim: Sim) -> C.Synthesise:
    spec = sim.session.speculation
    assert spec is not None and spec.held is not None
    [synth] = [c for c in sim.log if isinstance(c, C.Synthesise) and c.segment_id == spec.held.id]
    return synth


def classify_final(sim: Sim) -> list[C.Command]:
    """Deliver the final's classification alone: the commands of that one `handle()`."""
    rid, result = sim.pending_classification
    sim.pending_classification = None
    return sim.send(E.Classified(sim.now, rid, result.disposition, result.confidence, result.source))


def divert_synthesis(sim: Sim, count: int = 1) -> list[C.Synthesise]:
    """The next `count` syntheses are not answered by the world (the test answers them)."""
    diverted: list[C.Synthesise] = []
    original = sim.carry_out

    def carry_out(cmd: C.Command) -> None:
        if isinstance(cmd, C.Synthesise) and len(diverted) < count:
            diverted.append(cmd)
            return
        original(cmd)

    sim.carry_out = carry_out  # type: ignore[method-assign]
    return diverted


def test_the_adopted_first_segment_is_sent_in_the_same_handle_as_the_final_classification():
    sim = make(Disposition.NEW)
    idle_partial(sim, "tell me about tides")
    synth = held_back(sim)
    assert synth.text == "Tides are caused by the moon pulling"  # the first phrase (cut before "on")
    assert not any(isinstance(c, C.SendSegment) for c in sim.log)
    sim.send(E.UtteranceFinal(sim.now, "u1", "Tell me about tides."))
    out = classify_final(sim)
    sends = [c.segment for c in out if isinstance(c, C.SendSegment)]
    assert [s.segment for s in sends][:1] == [synth.segment_id] and sends[0].text == synth.text
    assert sends[0].words and sends[0].samples > 0
    assert not any(isinstance(c, C.Synthesise) and c.text == synth.text for c in out)  # not synthesised again
    assert not any(isinstance(c, C.DiscardAudio) for c in out)
    sim.run_until(sim.idle)
    assert [c.segment_id for c in sim.log if isinstance(c, C.Synthesise) and c.text == synth.text] == [synth.segment_id]
    item = next(e for e in sim.session.conv.log if isinstance(e, AssistantItem))
    assert sim.heard_words(item.id) == item.words


def test_a_cancelled_speculation_discards_its_held_audio_and_never_sends_it():
    sim = make(Disposition.NEW, Disposition.NEW)
    idle_partial(sim, "tell me about tides")
    synth = held_back(sim)
    out = sim.send(E.UtteranceFinal(sim.now, "u1", "tell me about tidal pools"))
    assert any(isinstance(c, C.DiscardAudio) and synth.segment_id in c.segment_ids for c in out)
    sim.run_until(sim.idle)
    assert all(c.segment.segment != synth.segment_id for c in sim.log if isinstance(c, C.SendSegment))
    spoken = " ".join(c.segment.text for c in sim.log if isinstance(c, C.SendSegment))
    assert "moon" not in spoken and "crabs" in spoken
    sent = [c.segment.segment for c in sim.log if isinstance(c, C.SendSegment)]
    assert sent == sorted(sent) and sent[0] > synth.segment_id  # ids stay unique and rising (a gap)


def test_a_different_disposition_or_newer_words_discard_the_held_audio():
    sim = make(Disposition.DROP)
    idle_partial(sim, "never mind the tides")
    synth = held_back(sim)
    sim.send(E.UtteranceFinal(sim.now, "u1", "never mind the tides"))
    out = classify_final(sim)
    assert any(isinstance(c, C.DiscardAudio) and synth.segment_id in c.segment_ids for c in out)
    sim = make(Disposition.NEW)
    idle_partial(sim, "tell me about tides")
    synth = held_back(sim)
    out = sim.send(E.UtterancePartial(sim.now, "u1", "tell me about tidal pools"))
    assert any(isinstance(c, C.DiscardAudio) and synth.segment_id in c.segment_ids for c in out)


def test_a_failed_held_synthesis_drops_it_and_the_first_segment_is_synthesised_at_adoption():
    sim = make(Disposition.NEW)
    diverted = divert_synthesis(sim)
    idle_partial(sim, "tell me about tides")
    [held] = diverted
    out = sim.send(E.SynthesisFailed(sim.now, held.segment_id, "piper died"))
    assert sim.session.speculation is not None and sim.session.speculation.held is None
    assert not any(isinstance(c, C.Synthesise) for c in out)  # not tried again before the final
    for _ in range(3):
        sim.step()
    assert not any(isinstance(c, C.Synthesise) for c in sim.log if c is not held)
    sim.send(E.UtteranceFinal(sim.now, "u1", "Tell me about tides."))
    out = classify_final(sim)
    [again] = [c for c in out if isinstance(c, C.Synthesise)]
    assert again.text == held.text and again.segment_id > held.segment_id
    sim.run_until(sim.idle)
    assert all(c.segment.segment != held.segment_id for c in sim.log if isinstance(c, C.SendSegment))
    item = next(e for e in sim.session.conv.log if isinstance(e, AssistantItem))
    assert sim.heard_words(item.id) == item.words


def test_a_held_synthesis_still_running_at_adoption_becomes_the_reply_s_first_synthesis():
    sim = make(Disposition.NEW)
    diverted = divert_synthesis(sim)
    idle_partial(sim, "tell me about tides")
    [held] = diverted
    sim.send(E.UtteranceFinal(sim.now, "u1", "Tell me about tides."))
    out = classify_final(sim)
    assert not any(isinstance(c, (C.Synthesise, C.DiscardAudio, C.SendSegment)) for c in out)
    words, samples = timings(held.text)
    out = sim.send(E.SegmentSynthesised(sim.now, held.segment_id, samples, 16000, words))
    assert [c.segment.segment for c in out if isinstance(c, C.SendSegment)] == [held.segment_id]
    sim.run_until(sim.idle)
    item = next(e for e in sim.session.conv.log if isinstance(e, AssistantItem))
    assert sim.heard_words(item.id) == item.words


def test_the_held_cut_is_kept_where_the_whole_text_would_cut_elsewhere():
    sim = make(Disposition.NEW)
    idle_partial(sim, "is the sea high")
    synth = held_back(sim)
    assert synth.text == "Yes. Tides are high."
    assert sim.session.speculation.finished  # finished, `_segment` alone would now cut "Yes." first
    sim.send(E.UtteranceFinal(sim.now, "u1", "is the sea high"))
    out = classify_final(sim)
    assert [c.segment.segment for c in out if isinstance(c, C.SendSegment)][:1] == [synth.segment_id]
    assert [c.text for c in out if isinstance(c, C.Synthesise)] == ["The moon pulls."]
    assert not any(isinstance(c, C.DiscardAudio) for c in out)
    sim.run_until(sim.idle)
    item = next(e for e in sim.session.conv.log if isinstance(e, AssistantItem))
    assert item.text.strip() == SHORT and sim.heard_words(item.id) == item.words
    sent = [c.segment.segment for c in sim.log if isinstance(c, C.SendSegment)]
    assert sent == sorted(sent)


def test_held_words_that_do_not_begin_the_reply_are_discarded_and_synthesised_as_today():
    sim = make(Disposition.NEW)
    idle_partial(sim, "tell me about tides")
    synth = held_back(sim)
    sim.session.speculation.held.text = "Tides are caused by the sun."  # cannot happen; the guard holds
    sim.send(E.UtteranceFinal(sim.now, "u1", "Tell me about tides."))
    out = classify_final(sim)
    assert any(isinstance(c, C.DiscardAudio) and synth.segment_id in c.segment_ids for c in out)
    assert [c.text for c in out if isinstance(c, C.Synthesise)] == [synth.text]
    sim.run_until(sim.idle)
    assert all(c.segment.segment != synth.segment_id for c in sim.log if isinstance(c, C.SendSegment))
    item = next(e for e in sim.session.conv.log if isinstance(e, AssistantItem))
    assert sim.heard_words(item.id) == item.words


def test_a_branch_adopts_the_held_segment_after_the_flush():
    sim = make(Disposition.NEW, Disposition.BRANCH, partials=Disposition.BRANCH)
    speaking(sim)
    sim.classify_partial = lambda req: Classification(Disposition.BRANCH, 0.86)
    sim.paused = True
    sim.send(E.InterruptReported(sim.now, "u2", sim.cursor()))
    sim.send(E.UtterancePartial(sim.now, "u2", "what is a bulge"))
    for _ in range(4):
        sim.step()
    synth = held_back(sim)
    assert not any(isinstance(c, C.SendSegment) and c.segment.segment == synth.segment_id for c in sim.log)
    sim.send(E.UtteranceFinal(sim.now, "u2", "What is a bulge?"))
    out = classify_final(sim)
    flush = next(i for i, c in enumerate(out) if isinstance(c, C.DeviceControl) and c.action is Action.FLUSH)
    send = next(i for i, c in enumerate(out) if isinstance(c, C.SendSegment))
    assert flush < send and out[send].segment.segment == synth.segment_id and out[send].segment.prev == 0
    sim.run_until(sim.idle)
    child = [e for e in sim.session.conv.log if isinstance(e, AssistantItem)][-1]
    assert child.text.startswith("A bulge") and sim.heard_words(child.id) == child.words


def test_nothing_is_synthesised_ahead_while_the_reply_is_being_synthesised_or_when_switched_off():
    sim = make(Disposition.NEW, Disposition.BRANCH, partials=Disposition.BRANCH)
    sim.classify_partial = None
    diverted = divert_synthesis(sim)
    sim.say("tell me about tides")  # its first segment stays in flight (the world does not answer)
    for _ in range(4):
        sim.step()
    [first] = diverted
    assert sim.session.in_flight is not None and sim.session.in_flight.id == first.segment_id
    sim.classify_partial = lambda req: Classification(Disposition.BRANCH, 0.9)
    sim.send(E.InterruptReported(sim.now, "u2", None))
    sim.send(E.UtterancePartial(sim.now, "u2", "what is a bulge"))
    for _ in range(5):
        sim.step()
    assert sim.session.speculation is not None and sim.session.speculation.text.startswith("A bulge is")
    assert sim.session.speculation.held is None  # waits for the reply's synthesis
    words, samples = timings(first.text)
    out = sim.send(E.SegmentSynthesised(sim.now, first.segment_id, samples, 16000, words))
    assert [c.text for c in out if isinstance(c, C.Synthesise)] == ["A bulge is where the sea stands a little higher."]
    sim = make(Disposition.NEW, speculate_audio=False)
    out = idle_partial(sim, "tell me about tides")
    assert speculative(out) and not any(isinstance(c, C.Synthesise) for c in out)
