"""Property test of acting on partials (issue 12): random interleavings of partials, finals,
classifier answers (stale, unconfident, contradicting the final), generation text and playback.

Every LLM reply here starts with a word unique to its request, so its text can be traced. Invariants:
the text of a speculation the final did not adopt (same utterance, same words) never reaches the
speaker, the conversation or any LLM request; every ordinary request holds exactly the heard words
(the invariant of test_machine_properties); the machine keeps to its table. A speculation's first
segment synthesised ahead (held audio) is sent only once its speculation is adopted, and is otherwise
discarded (or still held by a speculation awaiting its final when the run ends).
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from evaluation.coresim import Sim
from icp import commands as C
from icp import events as E
from icp.conversation import AssistantItem
from icp.dispositions import Classification, ClassifyRequest, Disposition
from icp.engine.core import normalise
from icp.engine.partials import PARTIAL_MARK, is_partial_request
from icp.machine import TRANSITIONS, AutoResume, EngineSettings, State
from tests.unit.test_machine_properties import REPLIES, check_context

SENTENCES = ["explain transformers", "what is attention", "uh huh", "yeah", "no I meant something else",
             "tell me a joke", "stop", "okay go back", ""]
# What starts an answer first: hypothesis tries the first values most.
D = [Disposition.BRANCH, Disposition.NEW, Disposition.MODIFY, Disposition.ABSORB, Disposition.CANCEL,
     Disposition.RESUME, Disposition.DROP]


class TaggedSim(Sim):
    """Each generation's text starts with `tag<n>`, n its request's number. `held`: the segments a
    speculation synthesised ahead (segment id -> its generation), noted as their `Synthesise` goes out."""

    def send(self, event: E.Event) -> list[C.Command]:
        out = super().send(event)
        spec = self.session.speculation
        for cmd in out:
            if isinstance(cmd, C.Synthesise) and spec is not None and spec.held is not None \
                    and spec.held.id == cmd.segment_id:
                self.__dict__.setdefault("held", {})[cmd.segment_id] = spec.generation
        return out

    def carry_out(self, cmd: C.Command) -> None:
        super().carry_out(cmd)
        if isinstance(cmd, C.StartGeneration):
            tag = f"tag{len(self.llm_requests)} "
            self.tags[cmd.generation_id] = tag.strip()
            self.gens[cmd.generation_id] = [tag] + self.gens[cmd.generation_id]


# a whole turn: interrupt if the agent talks, a partial, time, then the final (the same words or not)
TURN = st.tuples(st.just("turn"), st.integers(0, len(SENTENCES) - 1), st.integers(1, 4), st.integers(1, 8),
                 st.integers(0, len(SENTENCES) - 1), st.booleans())
ACTION = st.one_of(
    TURN, TURN, TURN,
    st.tuples(st.just("step"), st.integers(1, 30)),
    st.tuples(st.just("interrupt")),
    st.tuples(st.just("partial"), st.integers(0, len(SENTENCES) - 1), st.integers(1, 4)),
    st.tuples(st.just("final"), st.integers(0, len(SENTENCES) - 1), st.booleans()),
    st.tuples(st.just("new_utterance")),
    st.tuples(st.just("wake")),
    st.tuples(st.just("stale_partial_answer"), st.sampled_from(D)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTION, min_size=1, max_size=30),
       st.lists(st.tuples(st.sampled_from(D[:5]), st.sampled_from([0.97, 0.8, 0.5])), min_size=1, max_size=8),
       st.lists(st.sampled_from(D), min_size=1, max_size=8))
def test_no_unadopted_speculation_is_ever_seen(actions, partial_answers, final_answers):
    check_run(actions, partial_answers, final_answers)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TURN | st.tuples(st.just("step"), st.integers(1, 30)), min_size=1, max_size=12),
       st.lists(st.sampled_from(D), min_size=1, max_size=8))
def test_confident_partials_every_turn(actions, final_answers):
    """Every partial starts an answer (BRANCH while interrupted, NEW while idle): many speculations,
    adopted or not by finals that say the same words or others, classified alike or not."""
    check_run(actions, [(Disposition.BRANCH, 0.97), (Disposition.NEW, 0.97), (Disposition.MODIFY, 0.97)],
              final_answers)


# a turn whose final mostly says the partial's words: adoptions (and held audio sent) are common
ADOPTABLE_TURN = st.tuples(st.just("turn"), st.integers(0, len(SENTENCES) - 1), st.just(4), st.integers(1, 8),
                           st.integers(0, len(SENTENCES) - 1), st.sampled_from([True, True, True, False]))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ADOPTABLE_TURN | st.tuples(st.just("step"), st.integers(1, 30)) | st.tuples(st.just("interrupt")),
                min_size=1, max_size=12))
def test_adopted_speculations_and_their_held_audio(actions):
    """Partials and finals classified alike (BRANCH while interrupted, NEW while idle): most finals
    adopt their speculation, whose first segment was often synthesised ahead (or is still being)."""
    check_run(actions, [], [], alike=True)


def alike(req: ClassifyRequest) -> Classification:
    return Classification(Disposition.BRANCH if req.speaking else Disposition.NEW, 0.97)


def check_run(actions, partial_answers, final_answers, alike: bool = False) -> None:
    finals = [Disposition.NEW, *final_answers]  # the first request starts a reply
    answers = list(partial_answers)
    classify = globals()["alike"] if alike else (
        lambda req: Classification(finals.pop(0) if finals else Disposition.NEW, 0.9))
    sim = TaggedSim(dict(REPLIES), classify,
                    settings=EngineSettings(auto_resume=AutoResume.AUTO, auto_resume_delay_s=1.0))
    sim.tags = {}
    sim.classify_partial = classify if alike else (lambda req: Classification(*answers[len(sim.log) % len(answers)]))
    checked: list[str] = []

    def check(messages: list[dict[str, str]]) -> None:
        checked.append("x")
        if not is_partial_request(sim.last_gen):
            check_context(sim, messages)

    original = sim.carry_out

    def carry_out(cmd: C.Command) -> None:
        if isinstance(cmd, C.StartGeneration):
            sim.last_gen = cmd.generation_id
        original(cmd)

    sim.carry_out = carry_out  # type: ignore[method-assign]
    sim.on_generation = check
    finals_said: dict[str, str] = {}  # utterance -> its final's words
    partial_words: dict[str, str] = {}  # speculative generation -> the partial's words
    uid, n = "u0", 0
    sim.classify_partial, keep = None, sim.classify_partial
    sim.say("explain transformers")
    sim.classify_partial = keep
    for action in actions:
        kind = action[0]
        if kind == "step":
            for _ in range(action[1]):
                sim.step()
        elif kind == "turn":
            n += 1
            uid = f"u{n}"
            if sim.session.state in (State.THINKING, State.SPEAKING):
                sim.paused = True
                sim.send(E.InterruptReported(sim.now, uid, sim.cursor()))
            else:
                sim.send(E.WakeDetected(sim.now))
            sim.send(E.UtterancePartial(sim.now, uid, " ".join(SENTENCES[action[1]].split()[: action[2]])))
            for _ in range(action[3]):
                sim.step()
            text = SENTENCES[action[1] if action[5] else action[4]]
            finals_said.setdefault(uid, text)
            sim.send(E.UtteranceFinal(sim.now, uid, text))
            n += 1
            uid = f"u{n}"
        elif kind == "interrupt" and sim.session.state in (State.THINKING, State.SPEAKING):
            n += 1
            uid = f"u{n}"
            sim.paused = True
            sim.send(E.InterruptReported(sim.now, uid, sim.cursor()))
        elif kind == "partial":
            words = SENTENCES[action[1]].split()[: action[2]]
            sim.send(E.UtterancePartial(sim.now, uid, " ".join(words)))
        elif kind == "final":
            text = SENTENCES[action[1]]
            text = text.capitalize() + "." if action[2] and text else text
            finals_said.setdefault(uid, text)
            sim.send(E.UtteranceFinal(sim.now, uid, text))
            n += 1
            uid = f"u{n}"
        elif kind == "new_utterance":
            n += 1
            uid = f"u{n}"
        elif kind == "wake":
            sim.send(E.WakeDetected(sim.now))
        elif kind == "stale_partial_answer":
            sim.send(E.Classified(sim.now, f"{uid}{PARTIAL_MARK}0", action[1], 0.99))
        for cmd in sim.log:
            if isinstance(cmd, C.StartGeneration) and is_partial_request(cmd.generation_id):
                partial_words.setdefault(cmd.generation_id, cmd.messages[-1]["content"])
    for _ in range(100):
        sim.step()

    def adoptable(gid: str) -> bool:
        utterance = gid[1:].split(PARTIAL_MARK)[0]
        return utterance in finals_said and normalise(finals_said[utterance]) == normalise(partial_words[gid])

    spoken = " ".join(c.segment.text for c in sim.log if isinstance(c, C.SendSegment))
    requests = " ".join(m["content"] for r in sim.llm_requests for m in r)
    tree = " ".join(e.text for e in sim.session.conv.log if isinstance(e, AssistantItem))
    event(f"speculations: {min(len(partial_words), 2)}")
    event(f"adopted: {any(sim.tags[g] in tree for g in partial_words)}")
    event(f"early absorb: {any(isinstance(c, C.DeviceControl) and c.reason == 'ABSORB (partial)' for c in sim.log)}")
    for gid in partial_words:
        tag = sim.tags[gid]
        if not adoptable(gid):
            assert f"{tag} " not in f"{spoken} " and f"{tag} " not in f"{requests} " and f"{tag} " not in f"{tree} "
    check_held_audio(sim, adoptable, tree)
    for cmd in sim.log:
        if isinstance(cmd, C.Transition):
            assert (State(cmd.before), State(cmd.after)) in TRANSITIONS
    assert checked


def check_held_audio(sim: TaggedSim, adoptable, tree: str) -> None:
    """Every segment a speculation synthesised ahead is sent after its adoption, or discarded before
    anything of it is sent, or still waits (held by a live speculation, or queued in the pipeline)."""
    held: dict[int, str] = sim.__dict__.get("held", {})
    event(f"held audio: {min(len(held), 2)}")
    sent_at = {c.segment.segment: i for i, c in enumerate(sim.log) if isinstance(c, C.SendSegment)}
    ids = [c.segment.segment for c in sim.log if isinstance(c, C.SendSegment)]
    assert len(ids) == len(set(ids))  # no id is sent twice
    spec = sim.session.speculation
    waiting = {s.id for s in sim.session.ready + sim.session.to_synth}
    if sim.session.in_flight is not None:
        waiting.add(sim.session.in_flight.id)
    for sid, gid in held.items():
        discarded = [i for i, c in enumerate(sim.log) if isinstance(c, C.DiscardAudio) and sid in c.segment_ids]
        if sid in sent_at:
            event("held audio sent")
            assert adoptable(gid) and f"{sim.tags[gid]} " in f"{tree} "  # adopted, so in the tree
            assert not [i for i in discarded if i < sent_at[sid]]
            adopted = next(i for i, c in enumerate(sim.log) if isinstance(c, C.DispositionApplied)
                           and c.utterance_id == gid[1:].split(PARTIAL_MARK)[0])
            assert adopted < sent_at[sid]
        elif sid in waiting:
            assert adoptable(gid) and f"{sim.tags[gid]} " in f"{tree} "
        else:
            live = spec is not None and spec.generation == gid and spec.held is not None and spec.held.id == sid
            assert discarded or live, f"held segment {sid} of {gid} neither sent nor discarded"
            if f"{sim.tags[gid]} " in f"{tree} ":
                event("held audio of an adopted speculation discarded")  # another cut, or stopped
