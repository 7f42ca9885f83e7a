"""The virtual user counts `heard_words` / `heard_ms` from the start of the reply now playing
(shared/SCENARIOS.md): after a backchannel at word 10, `heard_words: 22` comes at word 22 of that
reply, not 22 words later; after a branch, the count is the new reply's, not the interrupted one's."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.harness import RunOptions, run_scenario
from evaluation.harness.trace import item_heard, item_heard_ms
from evaluation.scenario import load

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory):
    from evaluation.broker import Mosquitto

    with Mosquitto(tmp_path_factory.mktemp("broker")) as b:
        yield b


def _fired_at(trace, scenario):  # (turn index, kind, value, item, words heard of it, ms heard of it)
    out = []
    for rec in trace.turns:
        after = scenario.turns[rec.index].after
        if after is None or after.kind not in ("heard_words", "heard_ms"):
            continue
        item = rec.playing_item
        assert item is not None, f"turn {rec.index} fired with no reply playing"
        out.append((rec.index, after.kind, after.value, item, item_heard(trace, item, rec.start),
                    item_heard_ms(trace, item, rec.start)))
    return out


@pytest.mark.broker
@pytest.mark.parametrize("name", ["06_absorb_backchannels.yaml", "07_nested_branches.yaml",
                                  "15_mixed_turn_conditions.yaml"])
def test_heard_counts_from_the_start_of_the_reply_now_playing(module_broker, name: str) -> None:
    scenario = load(ROOT / "scenarios" / name)
    trace = run_scenario(scenario, RunOptions(broker_url=module_broker.url, mode="text", speed=10.0))
    assert not trace.errors, trace.errors
    fired = _fired_at(trace, scenario)
    assert fired
    for index, kind, value, item, words, ms in fired:
        if kind == "heard_words":
            assert words == value, (index, item, words, value)  # the turn fires on the word itself
        else:
            assert value <= ms < value + 100, (index, item, ms, value)
    if name.startswith("06"):  # three backchannels on one reply: 10, 22, 34 words of it in all
        assert [f[4] for f in fired] == [10, 22, 34] and len({f[3] for f in fired}) == 1
    if name.startswith("07"):  # the second interruption counts the branch's words, not the first reply's
        assert fired[0][3] != fired[1][3] and fired[1][4] == 12


@pytest.mark.slow
@pytest.mark.broker
def test_audio_mode_on_a_44k_card_with_backchannels(module_broker) -> None:
    """Audio mode end to end on a 44.1 kHz card (the mic path resamples to 16 kHz): the user's voice
    through the real AEC, VAD and Whisper; three backchannels counted from the reply's start."""
    import dataclasses

    from evaluation.metrics import evaluate

    scenario = load(ROOT / "scenarios" / "06_absorb_backchannels.yaml")
    scenario = dataclasses.replace(scenario, audio=dataclasses.replace(scenario.audio, sample_rate=44100))
    trace = run_scenario(scenario, RunOptions(broker_url=module_broker.url, mode="audio", speed=2.0))
    result = evaluate(trace, scenario.audio.buffer_ms, scenario.audio.jitter_ms)
    assert result.passed, (result.failures, [(t.say, t.text_heard) for t in trace.turns])
    assert [f[4] for f in _fired_at(trace, scenario)] == [10, 22, 34]
