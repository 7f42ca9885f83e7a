"""The live verdict on a synthetic run: recordings and wire messages made up here, no processes (fast).

Timeline (seconds of the ear recording):
  0.2-0.7  the user at the mic: "tell me numbers"      0.9  final utterance; 0.92 LLM request; 0.95 segment 1
  1.0-2.0  the ear plays segment 1's first 4 words      1.9-2.4  the user: "wait what" (barge-in)
  1.95     interrupt, cursor (1, 16000)                 2.6  final; 2.61 flush BRANCH; 2.62 LLM request
  2.65     segment 2 announced; 3.0-3.5 it plays
"""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.harness.trace import Trace, TurnRecord
from evaluation.live.ear import LiveEarIndex
from evaluation.live.user import Spoken
from evaluation.live.verdict import live_verdict
from evaluation.live.wire import WireEvent
from evaluation.live.world import LiveRun
from evaluation.scenario import Scenario
from icp.messages import Action, Control, Cursor, Interrupt, Segment, Utterance
from icp.words import WordTiming

SR = 16000
T0 = 100.0  # monotonic time of ear sample 0


def _noise(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 3000).astype(np.int16)


def _segment(sid: int, item: str, words: list[str], prev: int) -> Segment:
    timings = tuple(WordTiming(w, i * 250.0, (i + 1) * 250.0 - 10.0) for i, w in enumerate(words))
    return Segment(sid, item, "t1" if item == "a1" else "t2", " ".join(words), timings, 0, SR, len(words) * 4000, prev)


def _run(assistant_said: str, interrupt_at: float = 1.95) -> LiveRun:
    seg1 = _segment(1, "a1", "one two three four five six seven eight".split(), 0)
    seg2 = _segment(2, "a2", "nine ten".split(), 0)
    pcm = {1: _noise(seg1.samples, 1), 2: _noise(seg2.samples, 2)}
    ear = np.zeros(4 * SR, dtype=np.int16)
    ear[SR : 2 * SR] = pcm[1][:SR]
    ear[3 * SR : 3 * SR + seg2.samples] = pcm[2]
    voice1, voice2 = _noise(8000, 3), _noise(8000, 4)
    mic = (np.random.default_rng(5).standard_normal(4 * SR) * 50).astype(np.int16)
    mic[int(0.2 * SR) : int(0.2 * SR) + 8000] += voice1
    mic[int(1.9 * SR) : int(1.9 * SR) + 8000] += voice2
    index = LiveEarIndex(SR)
    index.update(ear, pcm)
    trace = Trace("synthetic", "icp", "live", 0.5, SR, 0.0, index)  # type: ignore[arg-type]
    trace.segments = {1: seg1, 2: seg2}
    trace.turns = [TurnRecord(0, "tell me numbers", "NEW", start=0.1),
                   TurnRecord(1, "wait what", "BRANCH", start=1.8, agent_speaking=True, playing_item="a1")]
    from evaluation.harness.trace import LlmRequest

    trace.llm_requests = [
        LlmRequest(0.92, [{"role": "user", "content": "tell me numbers"}]),
        LlmRequest(2.62, [{"role": "user", "content": "tell me numbers"},
                          {"role": "assistant", "content": assistant_said},
                          {"role": "user", "content": "wait what"}]),
    ]
    ev = lambda t, d, level, body: WireEvent(T0 + t, d, level, body)  # noqa: E731
    events = [
        ev(0.9, "up", "utterance", Utterance("u1", True, "tell me numbers")),
        ev(0.95, "down", "segment", seg1),
        ev(interrupt_at, "up", "interrupt", Interrupt("u2", Cursor(1, 16000), 1000.0 * interrupt_at)),
        ev(2.6, "up", "utterance", Utterance("u2", True, "wait what")),
        ev(2.61, "down", "control", Control(Action.FLUSH, "BRANCH")),
        ev(2.65, "down", "segment", seg2),
    ]
    spoken = [Spoken(0, "tell me numbers", voice1, T0 + 0.1), Spoken(1, "wait what", voice2, T0 + 1.8)]
    return LiveRun(Scenario("synthetic", ()), trace, index, ear, mic, 0.0, spoken, T0, None, True,
                   llm_replies=["one two three four five six seven eight", "nine ten"], wire_events=events,
                   segment_pcm=pcm)


def test_verdict_from_the_recordings_and_the_wire() -> None:
    result = live_verdict(_run("one two three four"), transcribe=False)
    rep = result.report
    assert rep["errors"] == []
    assert rep["dispositions"] == [{"turn": 1, "expected": "NEW", "got": "NEW"},
                                   {"turn": 2, "expected": "BRANCH", "got": "BRANCH"}]
    assert rep["phantom_words"] == 0 and rep["lost_words"] == 0
    # the user's voice found at the mic: 1.9 s; the last agent sample at the ear: 2.0 s - 1 sample
    assert rep["barge_in_stop_ms"]["p50"] == pytest.approx(100.0, abs=1.0)
    assert rep["live"]["user_speech"]["2"]["start"] == pytest.approx(1.9, abs=0.011)
    # first audio: voice end 0.7 -> 1.0 s, and 2.4 -> 3.0 s
    assert rep["first_audio_ms"]["p50"] == pytest.approx(300.0, abs=15)
    assert rep["first_audio_ms"]["p95"] == pytest.approx(600.0, abs=15)
    assert rep["cursor_error_words"]["max"] == 0
    assert rep["live"]["capture_detect_ms"]["p50"] == pytest.approx(50.0, abs=12)
    assert rep["live"]["dropouts"]["count"] == 0
    assert result.passed, result.failures


def test_an_interrupt_heard_before_the_recording_places_the_turn_is_not_the_previous_turns() -> None:
    """A live finding: the device's interrupt came more than 0.3 s before the start the mic recording
    gave the barge-in turn, so it fell in the previous turn's window and renamed that turn's
    utterance: turn 1 was judged by turn 2's flush (NEW expected, BRANCH got)."""
    rep = live_verdict(_run("one two three four", interrupt_at=1.5), transcribe=False).report
    assert rep["dispositions"] == [{"turn": 1, "expected": "NEW", "got": "NEW"},
                                   {"turn": 2, "expected": "BRANCH", "got": "BRANCH"}]


def test_phantom_and_lost_words_keep_one_word_of_tolerance_at_the_cut() -> None:
    # word 5 never played at all: it is phantom; the partly-played-word tolerance does not cover it
    rep = live_verdict(_run("one two three four five"), transcribe=False).report
    assert rep["phantom_words"] == 1 and rep["lost_words"] == 0
    # word 4 played fully: leaving it out of the next request loses it
    rep = live_verdict(_run("one two three"), transcribe=False).report
    assert rep["phantom_words"] == 0 and rep["lost_words"] == 1


def test_an_early_absorb_on_a_partial_is_the_turns_disposition_unless_the_final_says_otherwise() -> None:
    """Issue 12: the engine resumes on a backchannel's partial (`resume`, disposition ABSORB) before the
    final; the final then sends nothing and the reply goes on. Judged by what followed the final
    alone, that turn read NEW (the reply's next segment) in live mode."""
    from evaluation.harness.trace import TurnRecord

    def run_with(after_final: list) -> dict:
        run = _run("one two three four")
        run.trace.turns[1] = TurnRecord(1, "uh huh", "ABSORB", start=1.8, agent_speaking=True, playing_item="a1")
        ev = lambda t, d, level, body: WireEvent(T0 + t, d, level, body)  # noqa: E731
        run.wire_events = run.wire_events[:3] + [
            ev(2.2, "up", "utterance", Utterance("u2", False, "Uh-huh.")),
            ev(2.25, "down", "control", Control(Action.RESUME, "ABSORB (partial)", "ABSORB")),
            ev(2.6, "up", "utterance", Utterance("u2", True, "Uh-huh.")),
        ] + after_final
        return live_verdict(run, transcribe=False).report["dispositions"][1]

    seg = _segment(3, "a1", "nine ten".split(), 1)
    assert run_with([WireEvent(T0 + 2.65, "down", "segment", seg)])["got"] == "ABSORB"  # the reply goes on
    assert run_with([])["got"] == "ABSORB"  # the reply ended before the final: nothing followed
    late = [WireEvent(T0 + 2.61, "down", "control", Control(Action.FLUSH, "BRANCH"))]
    assert run_with(late)["got"] == "BRANCH"  # decided late: the final's decision counts


def test_an_early_resume_is_measured_from_the_ear_not_from_the_end_of_the_users_voice() -> None:
    """Live mode reported a backchannel gap of 3.2 s and a barge-in stop of 860 ms for an ABSORB the
    wire showed paused for ~300 ms: the agent played again (resumed on a partial) while the user was
    still speaking, and both figures were read from the last agent sample before the voice ended."""
    run = _run("one two three four")
    run.trace.turns[1] = TurnRecord(1, "uh huh", "ABSORB", start=1.8, agent_speaking=True, playing_item="a1")
    resumed = run.segment_pcm[1][SR : SR + 8000]
    run.ear_pcm[int(2.3 * SR) : int(2.3 * SR) + len(resumed)] = resumed  # 2.3-2.8: the reply plays on
    run.ear = LiveEarIndex(SR)
    run.ear.update(run.ear_pcm, run.segment_pcm)
    run.trace.ear = run.ear
    ev = lambda t, d, level, body: WireEvent(T0 + t, d, level, body)  # noqa: E731
    run.wire_events = run.wire_events[:3] + [
        ev(2.2, "up", "utterance", Utterance("u2", False, "Uh-huh.")),
        ev(2.25, "down", "control", Control(Action.RESUME, "ABSORB (partial)", "ABSORB")),
        ev(2.6, "up", "utterance", Utterance("u2", True, "Uh-huh.")),
    ]
    rep = live_verdict(run, transcribe=False).report
    assert rep["dispositions"][1]["got"] == "ABSORB"
    # the user's voice at the mic from 1.9 s; the ear silent from 2.0 to 2.3 s
    assert rep["barge_in_stop_ms"]["p50"] == pytest.approx(100.0, abs=2.0)
    assert rep["absorb_gap_ms"]["p50"] == pytest.approx(300.0, abs=2.0)
