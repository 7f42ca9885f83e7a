"""The scenario format is strict: every file in scenarios/ and the documented example parse; every
mistake is rejected with an error that names the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evaluation.scenario import After, AudioSpec, NetworkSpec, ScenarioError, load, load_many, loads

ROOT = Path(__file__).resolve().parents[1]
SPEC = Path("/work/shared/SCENARIOS.md")
EXAMPLE = """
name: transformers-side-question
description: free text
seed: 7
audio:
  sample_rate: 16000
  buffer_ms: 20
  output_latency_ms: 120
  jitter_ms: 3
  echo_gain: 0.3
  echo_delay_ms: 30
network:
  delay_ms: [5, 40]
  drop_heartbeats: 0.0
  disconnect_at_s: null
  reconnect_after_s: null
llm:
  - match: "transformers"
    reply: "Transformers are a kind of neural network that ..."
  - match: "attention"
    reply: "Attention is the mechanism that ..."
  - default: "Sorry, I do not know that one."
turns:
  - say: "Explain how transformers work."
  - after: {heard_words: 30}
    say: "Wait, what's attention?"
    expect: BRANCH
  - after: {reply_done: true}
    say: "Okay, go back."
    expect: RESUME
  - after: {reply_done: true}
"""
MINIMAL = "name: x\nturns:\n  - say: hi\n"


def test_documented_example_parses() -> None:
    text = EXAMPLE
    if SPEC.exists():  # the example exactly as documented, when the spec is at hand
        text = re.search(r"```yaml\n(.*?)```", SPEC.read_text(), re.S).group(1)
    s = loads(text)
    assert s.name == "transformers-side-question" and s.seed == 7
    assert s.audio == AudioSpec(16000, 20, 120, 3, 0.3, 30)
    assert s.network == NetworkSpec((5, 40), 0.0, None, None)
    assert [r.match for r in s.llm] == ["transformers", "attention", None]
    assert s.llm_rules()[-1] == {"default": "Sorry, I do not know that one."}
    assert [t.expect for t in s.turns] == [None, "BRANCH", "RESUME", None]
    assert s.turns[1].after == After("heard_words", 30)
    assert s.turns[3].say is None and s.turns[3].after == After("reply_done", 1)


def test_defaults() -> None:
    s = loads(MINIMAL)
    assert s.audio == AudioSpec() and s.audio.output_latency_ms == 100 and s.audio.echo_delay_ms == 20
    assert s.network == NetworkSpec() and s.seed == 0 and s.llm == () and s.turns[0].after is None


def test_every_shipped_scenario_parses_and_names_are_unique() -> None:
    scenarios = load_many([ROOT / "scenarios"])
    assert len(scenarios) >= 12
    expected = {t.expect for s in scenarios for t in s.turns}
    assert {"BRANCH", "MODIFY", "CANCEL", "ABSORB", "RESUME", "DROP", "NEW"} <= expected


BAD = [
    ("turns:\n  - say: hi\n", "name"),
    ("name: 3\nturns:\n  - say: hi\n", "name"),
    ("name: x\n", "turns"),
    ("name: x\nturns: []\n", "turns"),
    ("name: x\nturns: {say: hi}\n", "turns"),
    ("name: x\nbogus: 1\nturns:\n  - say: hi\n", "bogus"),
    ("name: x\nname: y\nturns:\n  - say: hi\n", "name"),
    ("name: x\nseed: true\nturns:\n  - say: hi\n", "seed"),
    ("name: x\nseed: 1.5\nturns:\n  - say: hi\n", "seed"),
    ("name: x\ndescription: [1]\nturns:\n  - say: hi\n", "description"),
    ("name: x\naudio: 3\nturns:\n  - say: hi\n", "audio"),
    ("name: x\naudio: {sample_rate: 100}\nturns:\n  - say: hi\n", "audio.sample_rate"),
    ("name: x\naudio: {sample_rate: 16000.0}\nturns:\n  - say: hi\n", "audio.sample_rate"),
    ("name: x\naudio: {buffer_ms: 0}\nturns:\n  - say: hi\n", "audio.buffer_ms"),
    ("name: x\naudio: {buffer_ms: 0.01}\nturns:\n  - say: hi\n", "audio.buffer_ms"),
    ("name: x\naudio: {output_latency_ms: -1}\nturns:\n  - say: hi\n", "audio.output_latency_ms"),
    ("name: x\naudio: {jitter_ms: fast}\nturns:\n  - say: hi\n", "audio.jitter_ms"),
    ("name: x\naudio: {echo_gain: true}\nturns:\n  - say: hi\n", "audio.echo_gain"),
    ("name: x\naudio: {latency: 5}\nturns:\n  - say: hi\n", "audio.latency"),
    ("name: x\nnetwork: {delay_ms: 5}\nturns:\n  - say: hi\n", "network.delay_ms"),
    ("name: x\nnetwork: {delay_ms: [40, 5]}\nturns:\n  - say: hi\n", "network.delay_ms"),
    ("name: x\nnetwork: {delay_ms: [1, 2, 3]}\nturns:\n  - say: hi\n", "network.delay_ms"),
    ("name: x\nnetwork: {drop_heartbeats: 1.5}\nturns:\n  - say: hi\n", "network.drop_heartbeats"),
    ("name: x\nnetwork: {disconnect_at_s: -2}\nturns:\n  - say: hi\n", "network.disconnect_at_s"),
    ("name: x\nnetwork: {reconnect_after_s: 2}\nturns:\n  - say: hi\n", "network.reconnect_after_s"),
    ("name: x\nnetwork: {disconnect_at_s: 1, reconnect_after_s: 0}\nturns:\n  - say: hi\n",
     "network.reconnect_after_s"),
    ("name: x\nllm: {match: a}\nturns:\n  - say: hi\n", "llm"),
    ("name: x\nllm:\n  - match: a\nturns:\n  - say: hi\n", "llm[0].reply"),
    ("name: x\nllm:\n  - reply: a\nturns:\n  - say: hi\n", "llm[0].match"),
    ("name: x\nllm:\n  - match: a\n    reply: b\n    delay: 1\nturns:\n  - say: hi\n", "llm[0].delay"),
    ("name: x\nllm:\n  - default: a\n    match: b\nturns:\n  - say: hi\n", "llm[0]"),
    ("name: x\nllm:\n  - default: a\n  - default: b\nturns:\n  - say: hi\n", "llm[1]"),
    ("name: x\nllm:\n  - match: 3\n    reply: b\nturns:\n  - say: hi\n", "llm[0].match"),
    ("name: x\nturns:\n  - hi\n", "turns[0]"),
    ("name: x\nturns:\n  - {}\n", "turns[0]"),
    ("name: x\nturns:\n  - say: 5\n", "turns[0].say"),
    ("name: x\nturns:\n  - say: ''\n", "turns[0].say"),
    ("name: x\nturns:\n  - say: hi\n    when: now\n", "turns[0].when"),
    ("name: x\nturns:\n  - say: hi\n  - after: {}\n    say: b\n", "turns[1].after"),
    ("name: x\nturns:\n  - say: hi\n  - after: {heard_words: 3, wait_s: 1}\n    say: b\n", "turns[1].after"),
    ("name: x\nturns:\n  - say: hi\n  - after: {heard_words: 3.5}\n    say: b\n", "turns[1].after.heard_words"),
    ("name: x\nturns:\n  - say: hi\n  - after: {heard_words: -1}\n    say: b\n", "turns[1].after.heard_words"),
    ("name: x\nturns:\n  - say: hi\n  - after: {heard_ms: x}\n    say: b\n", "turns[1].after.heard_ms"),
    ("name: x\nturns:\n  - say: hi\n  - after: {reply_done: false}\n    say: b\n", "turns[1].after.reply_done"),
    ("name: x\nturns:\n  - say: hi\n  - after: {wait_s: -1}\n    say: b\n", "turns[1].after.wait_s"),
    ("name: x\nturns:\n  - say: hi\n  - after: {silence: 1}\n    say: b\n", "turns[1].after.silence"),
    ("name: x\nturns:\n  - say: hi\n  - after: 3\n    say: b\n", "turns[1].after"),
    ("name: x\nturns:\n  - say: hi\n    expect: branch\n", "turns[0].expect"),
    ("name: x\nturns:\n  - say: hi\n    expect: STOP\n", "turns[0].expect"),
    ("name: x\nturns:\n  - after: {wait_s: 1}\n    expect: NEW\n", "turns[0].expect"),
    ("- name: x\n", ""),
    ("name: x\nturns: [\n", "yaml"),
]


@pytest.mark.parametrize("text,field", BAD, ids=[f for _, f in BAD])
def test_rejections_name_the_field(text: str, field: str) -> None:
    with pytest.raises(ScenarioError) as info:
        loads(text, "bad.yaml")
    assert info.value.field == field
    assert str(info.value).startswith(f"bad.yaml: {field}: " if field else "bad.yaml: ")


def test_load_names_the_file_and_rejects_duplicate_names(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MINIMAL)
    (tmp_path / "b.yaml").write_text(MINIMAL)
    with pytest.raises(ScenarioError, match="name: 'x' is not unique"):
        load_many([tmp_path])
    with pytest.raises(ScenarioError, match=r"missing\.yaml: file"):
        load(tmp_path / "missing.yaml")
