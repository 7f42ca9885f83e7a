"""Mistakes that can be undone (issue 14, part 4), through the core alone.

A CANCEL or MODIFY that was a misreading keeps the stopped reply resumable for `undo_window_s` of
idle time: "no, go back" resumes it from its first word not fully heard, exactly like a held branch
(bridge phrase, then the rest; nothing unheard reaches the LLM before it is heard; no heard word is
lost). A backchannel taken as a side question ends with the held thread resuming by itself.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluation.coresim import Sim
from icp import commands as C
from icp.context import strip_notes
from icp.conversation import AssistantItem, ThreadStatus
from icp.dispositions import Classification, Disposition
from icp.machine import AutoResume, Deadline, EngineSettings, Session, State
from icp.strategies import Icp

D = Disposition
LONG = ("Tides are caused by the moon pulling on the oceans. The near side bulges toward it. "
        "The far side bulges too because the earth is pulled away. Most coasts see two tides a day. "
        "The sun adds a smaller pull of its own, and when sun and moon line up the tides are highest.")
REPLIES = {"tides": LONG, "joke": "Why did the sea wave? It saw the shore.",
           "think": "Take your time. There is no hurry at all, I can wait while you think it over.",
           "only": "No, every ocean has them, not only the Atlantic.", "": "Fine."}


def items(sim: Sim) -> list[AssistantItem]:
    return [e for e in sim.session.conv.log if isinstance(e, AssistantItem)]


def check_context(sim: Sim, messages: list[dict[str, str]]) -> None:
    """Every LLM request holds exactly the heard words of every earlier assistant item, in order."""
    expected = [w for item in items(sim)[:-1] for w in sim.heard_words(item.id)]
    said = [w for m in messages if m["role"] == "assistant" for w in strip_notes(m["content"]).split()]
    assert said == expected


def make(*decisions: Disposition, window: float = 20.0, auto: AutoResume = AutoResume.OFF,
         strategy: str = "icp") -> Sim:
    queue = [D.NEW, *decisions]
    sim = Sim(dict(REPLIES), lambda req: Classification(queue.pop(0) if queue else D.NEW, 0.9),
              strategy_name=strategy,
              settings=EngineSettings(auto_resume=auto, auto_resume_delay_s=1.0, undo_window_s=window))
    if strategy == "icp":  # the baselines show the model other words by design
        sim.on_generation = lambda messages: check_context(sim, messages)
    sim.say("tell me about tides")
    return sim


def listen(sim: Sim, steps: int) -> AssistantItem:
    for _ in range(steps):
        sim.step()
    return items(sim)[0]


def fully_heard(sim: Sim, item_id: str) -> int:
    """The first word not fully heard, from what reached the ear (the ground truth)."""
    count = 0
    for s in sim.sent:
        if s.segment.item != item_id:
            continue
        played = sum(b - a for sid, a, b in sim.heard if sid == s.segment.segment)
        for w in s.segment.words:
            if played * 1000.0 / 16000 >= w.end_ms or played >= s.segment.samples:
                count += 1
            else:
                return count
    return count


def assert_resumed_from_first_unheard(sim: Sim, parent: AssistantItem, first: int) -> AssistantItem | None:
    """The undone reply went on as a held one does: the bridge, then what was generated of it from
    word `first` (the first not fully heard) to its end; with what was heard before, every word once,
    in order. Where its generation had been stopped, the model then goes on from what was heard."""
    resumed = [e for e in items(sim) if e.resumes == parent.id]
    rest = parent.words[first:]
    if not rest:  # nothing generated is left unheard: a new generation goes on from what was heard
        assert not resumed and items(sim)[-1].thread == parent.thread and sim.session.generations
        sim.run_until(sim.idle)
        return None
    assert len(resumed) == 1
    sim.run_until(sim.idle)
    bridge = resumed[0].bridge_words
    said = [w for s in sim.sent if s.segment.item == resumed[0].id for w in s.segment.text.split()]
    assert said[:bridge] == EngineSettings().bridge.split()
    assert said[bridge:] == rest  # no word skipped, none replayed but the one half heard
    before = sim.heard_words(parent.id)
    assert first <= len(before) <= first + 1
    assert before[:first] + sim.heard_words(resumed[0].id)[bridge:] == parent.words
    later = items(sim)[items(sim).index(resumed[0]) + 1:]
    if parent.truncated:  # the model had not finished: it went on, from the heard words only
        assert later and later[0].thread == parent.thread and later[0].resumes is None
    return resumed[0]


def test_a_wrong_bare_cancel_is_undone_by_no_go_back():
    sim = make(D.CANCEL)
    parent = listen(sim, 60)
    sim.say("okay that's enough")  # said to someone else in the room, taken as a bare stop
    assert sim.session.state is State.IDLE and sim.session.undo is not None
    assert sim.session.conv.threads[parent.thread].status is ThreadStatus.CANCELLED
    assert Deadline.UNDO in sim.session.deadlines
    first = fully_heard(sim, parent.id)
    n = len(sim.llm_requests)
    sim.say("no, go back")
    applied = [c for c in sim.log if isinstance(c, C.DispositionApplied)][-1]
    assert (applied.applied, applied.source) == (D.RESUME, "undo")
    assert_resumed_from_first_unheard(sim, parent, first)
    assert len(sim.llm_requests) == n  # the rest was generated already: nothing re-asked
    assert sim.session.undo is None
    sim.say("tell me a joke")  # the context holds every heard word (checked as it is made)


def test_a_side_question_taken_as_cancel_resumes_after_its_answer():
    sim = make(D.CANCEL, D.RESUME)
    parent = listen(sim, 50)
    sim.say("wait, tell me a joke about it")  # a redirect: a new thread answers it
    first = fully_heard(sim, parent.id)
    sim.run_until(sim.idle)
    joke = items(sim)[-1]
    assert sim.heard_words(joke.id) == joke.words and sim.session.undo is not None
    sim.say("okay, go back")
    assert_resumed_from_first_unheard(sim, parent, first)
    assert sim.session.conv.threads[joke.thread].status is ThreadStatus.DONE


def test_go_back_while_the_answer_to_the_misreading_plays_stops_it_and_resumes():
    sim = make(D.CANCEL)
    parent = listen(sim, 50)
    sim.say("hold on, let me think")
    first = fully_heard(sim, parent.id)
    sim.run_until(lambda: bool(sim.heard_words(items(sim)[-1].id)))
    sim.say("no no, keep going")
    resumed = assert_resumed_from_first_unheard(sim, parent, first)
    flushes = [c.reason for c in sim.log if isinstance(c, C.DeviceControl) and c.action.value == "flush"]
    assert flushes[-1] == "UNDO" and resumed.thread == parent.thread


def test_a_side_question_taken_as_modify_is_recovered():
    sim = make(D.MODIFY, D.DROP)  # the classifier would even call the undo "never mind"
    parent = listen(sim, 60)
    sim.say("only the atlantic?")
    first = fully_heard(sim, parent.id)
    sim.run_until(sim.idle)
    assert sim.session.undo is not None and sim.session.undo.disposition == "MODIFY"
    sim.say("no, I was just asking. Go back.")
    resumed = assert_resumed_from_first_unheard(sim, parent, first)
    assert resumed.thread == parent.thread
    sim.say("tell me a joke")


def test_a_backchannel_taken_as_a_side_question_ends_in_the_held_thread_resuming():
    sim = make(D.BRANCH, auto=AutoResume.AUTO)
    parent = listen(sim, 60)
    sim.say("uh huh, right")
    first = fully_heard(sim, parent.id)
    sim.run_until(sim.idle)
    for _ in range(30):  # 1.5 s of quiet > auto_resume_delay_s
        sim.step()
    assert_resumed_from_first_unheard(sim, parent, first)


def test_after_the_window_a_cancelled_thread_is_gone():
    sim = make(D.CANCEL, D.RESUME, window=2.0)
    parent = listen(sim, 60)
    sim.say("okay that's enough")
    assert sim.session.next_deadline() == sim.session.undo.expires
    for _ in range(50):  # 2.5 s
        sim.step()
    assert sim.session.undo is None and Deadline.UNDO not in sim.session.deadlines
    sim.say("no, go back")  # now an ordinary "go back": nothing is held, so a new request
    assert not [e for e in items(sim) if e.resumes == parent.id]


def test_the_next_utterance_closes_the_undo_and_absorb_does_not():
    sim = make(D.CANCEL, D.ABSORB, D.NEW)
    listen(sim, 60)
    sim.say("tell me a joke instead")
    assert sim.session.undo is not None
    sim.say("uh huh")  # a backchannel over the joke changes nothing
    assert sim.session.undo is not None and sim.session.undo.expires is None  # not counting yet
    sim.run_until(sim.idle)
    sim.say("what time is it")
    assert sim.session.undo is None


def test_the_undo_survives_a_restart_and_its_window_starts_again():
    sim = make(D.CANCEL)
    parent = listen(sim, 60)
    sim.say("okay that's enough")
    restored = Session.restore(sim.session.snapshot(), sim.session.settings, Icp())
    assert restored.undo is not None and restored.undo.item == parent.id and restored.undo.expires is None
    assert restored.undo.word == sim.session.undo.word


def test_no_undo_without_a_window_nor_for_the_cancel_restart_baseline():
    for sim in (make(D.CANCEL, window=0.0), make(D.CANCEL, strategy="cancel-restart")):
        parent = listen(sim, 60)
        sim.say("okay that's enough")
        assert sim.session.undo is None and sim.session.conv.item(parent.id).complete
        sim.say("no, go back")
        assert not [e for e in items(sim) if e.resumes == parent.id]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(heard_steps=st.integers(1, 160), mistake=st.sampled_from([D.CANCEL, D.MODIFY]),
       said=st.sampled_from(["okay that's enough", "tell me a joke instead", "only the atlantic?"]),
       answer_first=st.booleans(), undo=st.sampled_from(["no, go back", "no, carry on", "okay, where were we"]),
       then_steps=st.integers(0, 200))
def test_an_undone_cancel_or_modify_never_loses_a_heard_word_nor_leaks_an_unheard_one(
        heard_steps, mistake, said, answer_first, undo, then_steps):
    """Every LLM request (checked as it is made) holds exactly the words heard so far; the undone
    reply goes on from its first word not fully heard; at the end every word was heard once, in order."""
    sim = make(mistake)
    parent = listen(sim, heard_steps)
    sim.say(said)
    first = fully_heard(sim, parent.id)
    if answer_first:
        sim.run_until(sim.idle)
    else:
        for _ in range(then_steps % 20):
            sim.step()
    sim.say(undo)
    assert_resumed_from_first_unheard(sim, parent, first)
    sim.run_until(sim.idle)
    for _ in range(then_steps):
        sim.step()
    sim.say("tell me a joke")


def test_go_on_over_the_answer_to_the_misreading_is_a_backchannel_not_an_undo():
    sim = make(D.CANCEL, D.ABSORB)
    listen(sim, 50)
    sim.say("hold on, let me think")
    answer = items(sim)[-1]
    sim.run_until(lambda: bool(sim.heard_words(answer.id)))
    sim.say("mm, go on")  # more of this answer, please: the classifier decides (ABSORB)
    applied = [c for c in sim.log if isinstance(c, C.DispositionApplied)][-1]
    assert (applied.applied, applied.source) == (D.ABSORB, "lexical")
    assert sim.session.undo is not None  # a backchannel leaves the undo open


def test_what_counts_as_go_back():
    sim = make(D.CANCEL)
    listen(sim, 40)
    sim.say("okay that's enough")
    session = sim.session
    for text in ("no, go back", "No, I was just asking. Go back.", "sorry, carry on", "keep going please",
                 "go back to what you were saying", "okay, where were we",
                 "No, carried on.", "No, carry going.", "No, carry gone."):  # tiny.en's "No, carry on."
        assert session._is_undo(text, speaking=False), text
    for text in ("don't go back", "does the universe continue to expand", "what is going on",
                 "never mind, I never go back", "tell me why the sea keeps going up and down and where it goes back",
                 "why has the war carried on so long"):
        assert not session._is_undo(text, speaking=False), text
    assert session._is_undo("no no, keep going", speaking=True)
    assert not session._is_undo("mm, go on", speaking=True)


def test_a_stop_still_stops_the_llm_and_an_undone_unfinished_reply_goes_on_from_what_was_heard():
    sim = make(D.CANCEL)
    parent = listen(sim, 6)  # the model is still writing the reply
    sim.say("okay that's enough")
    assert any(isinstance(c, C.CancelGeneration) for c in sim.log)  # a stop stops spending at once
    assert parent.truncated and sim.session.undo is not None
    first = fully_heard(sim, parent.id)
    n = len(sim.llm_requests)
    sim.say("no, go back")
    assert len(sim.llm_requests) == n  # first the generated rest, re-synthesised...
    assert_resumed_from_first_unheard(sim, parent, first)
    assert len(sim.llm_requests) == n + 1  # ...then, all of it heard, the model goes on (context checked)
