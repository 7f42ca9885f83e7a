"""Early ABSORB (issue 12): a backchannel's first partial resumes the paused reply; the final may
still revise it, and then it is applied as if decided late, from the heard cursor of that moment."""

from __future__ import annotations

from evaluation.coresim import Sim
from icp import commands as C
from icp import events as E
from icp.conversation import AssistantItem, ThreadStatus
from icp.dispositions import Classification, Disposition, Hint
from icp.engine.partials import is_partial_request
from icp.machine import AutoResume, EngineSettings, State
from icp.messages.playback import Action, PlaybackEvent

LONG = ("Tides are caused by the moon pulling on the oceans. The near side bulges toward it. "
        "The far side bulges too because the earth is pulled away. Most coasts see two tides a day. "
        "The sun adds a smaller pull of its own.")
REPLIES = {"tides": LONG, "bulge": "A bulge is where the sea stands a little higher.", "": "Fine."}


def speaking_sim(*finals: Disposition, **knobs) -> Sim:
    queue = [Disposition.NEW, *finals]
    settings = EngineSettings(auto_resume=AutoResume.OFF, speculate=False, **knobs)
    sim = Sim(dict(REPLIES), lambda req: Classification(queue.pop(0), 0.9), settings=settings)
    sim.say("tell me about tides")
    sim.run_until(lambda: sim.heard)
    for _ in range(20):
        sim.step()
    assert sim.session.state is State.SPEAKING
    return sim


def interrupt(sim: Sim, uid: str = "u1", hint: Hint | None = None) -> None:
    sim.paused = True  # the device paused itself on the speech
    sim.send(E.InterruptReported(sim.now, uid, sim.cursor(), hint))
    assert sim.session.state is State.INTERRUPTED


def partial(sim: Sim, text: str, uid: str = "u1") -> str | None:
    """Send a partial; the id of the classify request it made, if any."""
    out = sim.send(E.UtterancePartial(sim.now, uid, text))
    asked = [c.request_id for c in out if isinstance(c, C.Classify)]
    assert all(is_partial_request(r) for r in asked) and len(asked) <= 1
    return asked[0] if asked else None


def answer(sim: Sim, request_id: str, d: Disposition, confidence: float = 0.97) -> list[C.Command]:
    return sim.send(E.Classified(sim.now, request_id, d, confidence, "rules"))


def controls(out: list[C.Command]) -> list[tuple[Action, Disposition | None]]:
    return [(c.action, c.disposition) for c in out if isinstance(c, C.DeviceControl)]


def test_a_backchannel_partial_resumes_at_once_and_its_final_changes_nothing():
    sim = speaking_sim(Disposition.ABSORB)
    interrupt(sim)
    rid = partial(sim, "uh huh")
    assert rid is not None and rid != "u1"  # never confused with the final's request
    out = answer(sim, rid, Disposition.ABSORB)
    assert controls(out) == [(Action.RESUME, Disposition.ABSORB)]
    assert sim.session.state is State.SPEAKING and sim.session.provisional == "u1"
    sim.paused = False
    heard = len(sim.heard)
    for _ in range(5):
        sim.step()
    assert len(sim.heard) > heard  # playing again before any final
    out = sim.send(E.UtteranceFinal(sim.now, "u1", "uh huh"))
    assert controls(out) == [] and sim.session.state is State.SPEAKING  # no pause for the final
    assert [c.request_id for c in out if isinstance(c, C.Classify)] == ["u1"]
    n = len(sim.log)
    sim.step()  # the final's classification: ABSORB
    later = sim.log[n:]
    assert controls(later) == []  # no second resume, no gap
    applied = [c for c in sim.log if isinstance(c, C.DispositionApplied) and c.utterance_id == "u1"]
    assert [c.applied for c in applied] == [Disposition.ABSORB]  # one decision per utterance
    assert not any(isinstance(c, C.StartGeneration) for c in later)


def test_a_final_that_says_branch_pauses_then_branches_from_the_cursor_of_that_moment():
    sim = speaking_sim(Disposition.BRANCH)
    interrupt(sim)
    parent = next(e for e in sim.session.conv.log if isinstance(e, AssistantItem))
    heard_at_interrupt = parent.heard
    answer(sim, partial(sim, "yeah"), Disposition.ABSORB)
    sim.paused = False
    for _ in range(20):  # a second of playback: those words are heard
        sim.step()
    heard_at_final = parent.heard
    assert heard_at_final > heard_at_interrupt
    sim.send(E.UtteranceFinal(sim.now, "u1", "yeah but what is a bulge"))
    n = len(sim.log)
    sim.step()  # the final's classification: BRANCH; the device is paused, its cursor awaited
    assert controls(sim.log[n:]) == [(Action.PAUSE, None)]
    assert not any(isinstance(c, C.StartGeneration) for c in sim.log[n:])
    heard_at_final = parent.heard
    sim.step()  # the device's `paused` report: applied with the cursor it paused at
    out = sim.log[n:]
    assert controls(out)[:2] == [(Action.PAUSE, None), (Action.FLUSH, Disposition.BRANCH)]
    applied = [c for c in out if isinstance(c, C.DispositionApplied)]
    assert [(c.utterance_id, c.applied) for c in applied] == [("u1", Disposition.BRANCH)]
    thread = sim.session.conv.threads[parent.thread]
    assert thread.status is ThreadStatus.HELD and thread.resume_word >= heard_at_final - 1
    gens = [c for c in out if isinstance(c, C.StartGeneration)]
    assert len(gens) == 1 and "bulge" in gens[0].messages[-1]["content"]
    assert sim.session.state in (State.THINKING, State.SPEAKING)


def test_stale_and_unconfident_partials_do_nothing():
    sim = speaking_sim()
    interrupt(sim)
    first = partial(sim, "uh")
    second = partial(sim, "uh what")
    assert first and second and first != second
    out = answer(sim, first, Disposition.ABSORB)  # the older partial's answer is stale
    assert controls(out) == [] and isinstance(out[0], C.Ignored) and sim.session.state is State.INTERRUPTED
    out = answer(sim, second, Disposition.ABSORB, confidence=0.8)  # below early_absorb_confidence
    assert controls(out) == [] and sim.session.state is State.INTERRUPTED
    assert partial(sim, "uh what") is None  # the same words are not asked twice
    assert partial(sim, "") is None  # nor nothing


def test_a_cancel_hint_never_absorbs():
    sim = speaking_sim()
    interrupt(sim, hint=Hint.CANCEL)
    assert partial(sim, "uh huh") is None
    sim2 = speaking_sim()
    interrupt(sim2)
    rid = partial(sim2, "uh huh")
    sim2.send(E.InterruptReported(sim2.now, "u1", sim2.cursor(), Hint.CANCEL))  # the hint comes after
    out = answer(sim2, rid, Disposition.ABSORB)
    assert controls(out) == [] and sim2.session.state is State.INTERRUPTED


def test_a_cancel_hint_on_the_final_stops_the_early_absorbed_reply():
    sim = speaking_sim()
    interrupt(sim)
    answer(sim, partial(sim, "okay"), Disposition.ABSORB)
    sim.paused = False
    sim.step()
    out = sim.send(E.UtteranceFinal(sim.now, "u1", "okay stop", Hint.CANCEL))
    assert controls(out) == [(Action.PAUSE, None)]
    n = len(sim.log)
    sim.step()  # the `paused` report
    assert controls(sim.log[n:])[:1] == [(Action.FLUSH, Disposition.CANCEL)]
    assert sim.session.state is State.IDLE


def test_an_empty_final_after_an_early_absorb_is_an_absorb():
    sim = speaking_sim()
    interrupt(sim)
    answer(sim, partial(sim, "mm"), Disposition.ABSORB)
    out = sim.send(E.UtteranceFinal(sim.now, "u1", ""))
    assert controls(out) == [] and sim.session.state is State.SPEAKING
    assert [(c.applied, c.source) for c in out if isinstance(c, C.DispositionApplied)] == [
        (Disposition.ABSORB, "empty, early")]


def test_a_later_partial_of_the_absorbed_utterance_does_not_pause_again():
    sim = speaking_sim()
    interrupt(sim)
    answer(sim, partial(sim, "yeah"), Disposition.ABSORB)
    out = sim.send(E.UtterancePartial(sim.now, "u1", "yeah yeah"))
    assert controls(out) == [] and sim.session.state is State.SPEAKING
    out = sim.send(E.InterruptReported(sim.now, "u1", sim.cursor()))  # a late report of the same speech
    assert sim.session.state is State.SPEAKING


def test_off_waits_for_the_final_as_before():
    sim = speaking_sim(Disposition.ABSORB, early_absorb=False)
    interrupt(sim)
    assert partial(sim, "uh huh") is None  # nothing to decide from it (speculation off too)
    sim.send(E.UtteranceFinal(sim.now, "u1", "uh huh"))
    n = len(sim.log)
    sim.step()
    assert controls(sim.log[n:]) == [(Action.RESUME, Disposition.ABSORB)]


def test_the_early_absorbed_reply_still_ends_and_the_context_holds_only_heard_words():
    sim = speaking_sim(Disposition.ABSORB, Disposition.NEW)
    interrupt(sim)
    answer(sim, partial(sim, "uh huh"), Disposition.ABSORB)
    sim.paused = False
    sim.send(E.UtteranceFinal(sim.now, "u1", "uh huh"))
    sim.run_until(sim.idle)
    parent = next(e for e in sim.session.conv.log if isinstance(e, AssistantItem))
    assert sim.heard_words(parent.id) == parent.words  # every word played once, none lost
    sim.say("tell me about the bulge")
    last = sim.llm_requests[-1]
    said = [w for m in last if m["role"] == "assistant" for w in m["content"].split()]
    assert said == parent.words


def test_a_partial_of_nothing_but_an_opening_is_not_resumed_on_even_when_called_absorb():
    """Live mode: the first partial of "I wait, what is magma?" was "I" (a filler to the rules: ABSORB
    0.97), the reply resumed over the user's question. An opening alone is too early to resume on."""
    for opening in ("I", "Uh", "So", "Go.", "Go-go.", "Got"):
        sim = speaking_sim()
        interrupt(sim)
        rid = partial(sim, opening)
        assert rid is not None
        assert controls(answer(sim, rid, Disposition.ABSORB)) == []
        assert sim.session.state is State.INTERRUPTED


def test_a_phrase_that_starts_with_an_opening_still_resumes_at_once():
    for text in ("Go on.", "Got it.", "I see.", "Oh, okay."):
        sim = speaking_sim()
        interrupt(sim)
        rid = partial(sim, text)
        assert rid is not None
        assert controls(answer(sim, rid, Disposition.ABSORB)) == [(Action.RESUME, Disposition.ABSORB)], text


def test_a_long_interruption_still_being_spoken_is_not_timed_out_as_a_backchannel():
    """The interrupt timeout (8 s) treats an interruption that never produced words as a backchannel.
    A user still talking after 8 s (the device captures up to 15 s) sends partials: the timeout runs
    from the latest one, so the reply does not resume over the user's voice."""
    sim = speaking_sim(Disposition.MODIFY, early_absorb=False)
    interrupt(sim)
    t0 = sim.now
    words = "no I meant the one we saw last summer with the kids on the way to the coast near the lighthouse"
    last = sim.now
    for i, _ in enumerate(words.split()):
        if i % 2 == 0:
            partial(sim, " ".join(words.split()[: i + 1]))
            last = sim.now
        sim.step(0.5)
        assert sim.session.state is State.INTERRUPTED, f"resumed {sim.now - t0:.1f} s into the user's speech"
    assert sim.now - t0 > 9.0
    # silence from the device after the last partial: the timeout still fires (then, and not before)
    while sim.session.state is State.INTERRUPTED and sim.now - last < 10.0:
        sim.step(0.25)
    assert sim.session.state is not State.INTERRUPTED
    assert 7.99 <= sim.now - last <= 8.3


def test_words_that_go_on_past_a_backchannel_pause_the_reply_again_before_the_final():
    """Live mode: the first look read "Wait," as "All right." (ABSORB, resumed); the reply then played
    over "Wait, what is the crust?" until the final, 2.9 s later. A later partial that is no longer a
    backchannel now pauses at once; the final then decides as for any interruption, from the cursor
    the device reports when it pauses."""
    sim = speaking_sim(Disposition.BRANCH)
    interrupt(sim)
    parent = next(e for e in sim.session.conv.log if isinstance(e, AssistantItem))
    answer(sim, partial(sim, "all right"), Disposition.ABSORB)
    assert sim.session.provisional == "u1"
    sim.paused = False
    for _ in range(4):
        sim.step()
    rid = partial(sim, "wait what is")
    assert rid is not None  # the user went on: the new words are classified
    out = answer(sim, rid, Disposition.BRANCH, confidence=0.8)
    assert controls(out) == [(Action.PAUSE, None)]
    assert sim.session.state is State.INTERRUPTED and sim.session.provisional is None
    sim.paused = True
    paused_at = sim.cursor()
    sim.send(E.PlaybackReported(sim.now, PlaybackEvent.PAUSED, paused_at, 0.0))
    heard = parent.heard
    for _ in range(10):
        sim.step()
    assert sim.session.state is State.INTERRUPTED  # waiting for the final, as for any interruption
    sim.send(E.UtteranceFinal(sim.now, "u1", "wait what is a bulge"))
    n = len(sim.log)
    sim.step()
    out = sim.log[n:]
    assert controls(out)[:1] == [(Action.FLUSH, Disposition.BRANCH)]  # no second pause
    thread = sim.session.conv.threads[parent.thread]
    assert thread.status is ThreadStatus.HELD and thread.resume_word >= heard - 1


def test_a_backchannel_that_grows_into_another_backchannel_keeps_playing():
    sim = speaking_sim(Disposition.ABSORB)
    interrupt(sim)
    answer(sim, partial(sim, "uh huh"), Disposition.ABSORB)
    sim.paused = False
    sim.step()
    out = answer(sim, partial(sim, "uh huh yeah"), Disposition.ABSORB, confidence=0.97)
    assert controls(out) == [] and sim.session.state is State.SPEAKING and sim.session.provisional == "u1"
    out = answer(sim, partial(sim, "uh huh yeah right"), Disposition.BRANCH, confidence=0.4)  # unsure
    assert controls(out) == [] and sim.session.provisional == "u1"


def test_a_late_decision_waits_for_the_paused_cursor_and_counts_the_words_heard_meanwhile():
    """The cursor the engine knows when a final revises an early ABSORB is the last report's (the real
    device's heartbeat: up to a second old); the words played since were heard. The decision waits
    for the device's `paused` report, so they reach the context. No report within
    `late_cursor_wait_s`: applied anyway, with the cursor known."""
    sim = speaking_sim(Disposition.BRANCH)
    interrupt(sim)
    parent = next(e for e in sim.session.conv.log if isinstance(e, AssistantItem))
    answer(sim, partial(sim, "yeah"), Disposition.ABSORB)
    sim.paused = False
    sim.step()
    seg, pos = sim.playing
    n = min(16000, seg.segment.samples - pos - 1)  # a second played that no report has told yet
    sim.heard.append((seg.segment.segment, pos, pos + n))
    sim.playing = (seg, pos + n)
    stale = parent.heard
    heard_when_asked: list[int] = []
    sim.on_generation = lambda messages: heard_when_asked.append(parent.heard)
    sim.send(E.UtteranceFinal(sim.now, "u1", "yeah but what is a bulge"))
    sim.step()  # classified BRANCH: paused, waiting
    assert heard_when_asked == []
    sim.step()  # the `paused` report, then the decision
    assert len(heard_when_asked) == 1 and heard_when_asked[0] > stale, "words heard since the last report left out"
    assert sim.session.conv.threads[parent.thread].resume_word >= heard_when_asked[0] - 1

    lost = speaking_sim(Disposition.BRANCH)
    interrupt(lost)
    answer(lost, partial(lost, "yeah"), Disposition.ABSORB)
    lost.paused = False
    lost.send(E.UtteranceFinal(lost.now, "u1", "yeah but what is a bulge"))
    asked: list[float] = []
    lost.on_generation = lambda messages: asked.append(lost.now)
    lost.step()
    t = lost.now
    while not asked and lost.now - t < 2:
        lost.paused_reports.clear()  # the report never comes
        lost.step()
    assert asked and 0.45 <= asked[0] - t <= 0.6
