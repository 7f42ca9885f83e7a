"""`segue-bench turns`: the column knobs (fast) and one real-time trial of each kind (slow)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from evaluation.turns.columns import Column, baseline_segmenter, column


@dataclasses.dataclass(frozen=True)
class _Knobs:
    onset_frames: int = 3


def test_a_knob_the_settings_lack_is_reported_not_applied() -> None:
    col = Column("baseline", (("vad", "onset_frames", 10), ("vad", "not_there_yet", 1)))
    out = col.apply("vad", _Knobs())
    assert out.onset_frames == 10
    assert col.applied == ["vad.onset_frames=10"] and col.missing == ["vad.not_there_yet=1"]


def test_a_knob_applied_in_its_other_place_is_not_missing() -> None:
    @dataclasses.dataclass(frozen=True)
    class AsrConfig:
        end_silence_ms: float = 700.0

    @dataclasses.dataclass(frozen=True)
    class MachineConfig:
        heartbeat_s: float = 1.0

    col = Column("baseline", (("machine", "end_silence_s", 0.8), ("asr_config", "end_silence_ms", 800.0)))
    col.apply("machine", MachineConfig())
    assert col.apply("asr_config", AsrConfig()).end_silence_ms == 800.0
    col.settle()
    assert col.missing == []


def test_segue_column_changes_nothing_and_baseline_cuts_the_first_segment_at_the_sentence() -> None:
    from icp.engine.settings import EngineSettings
    from icp.segmenter import next_cut

    assert column("segue").knobs == ()
    engine = baseline_segmenter(EngineSettings())
    text = "The ocean covers most of our planet and holds nearly all of its water. Its surface"
    cut = next_cut(text, first=True, final=False, settings=engine.segmenter)
    assert cut is not None and text[:cut].strip().endswith("water.")


@pytest.mark.slow
def test_one_trial_of_each_kind_gives_plausible_numbers(tmp_path) -> None:
    from evaluation.bench import main

    out = tmp_path / "turns.json"
    assert main(["turns", "--trials", "1", "--columns", "segue", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"segue"}
    m = report["segue"]
    for key in ("bargein_stop_over_latency_ms", "absorb_gap_ms", "first_audio_ms"):
        assert set(m[key]) >= {"p50", "p95", "n"}
    assert m["first_audio_ms"]["p50"] is not None and m["first_audio_ms"]["p50"] > 0
    assert m["bargein_stop_over_latency_ms"]["p50"] is not None
    assert m["bargein_stop_over_latency_ms"]["p50"] > -m["settings"]["latency_ms"]  # after the user began
    assert m["absorb_gap_ms"]["p50"] is not None and m["absorb_gap_ms"]["p50"] >= 0
    assert m["false_pauses_per_min"] is not None and m["false_pauses_per_min"] >= 0
    assert m["user_cutoffs"]["turns"] == 1 and 0 <= m["user_cutoffs"]["count"] <= 1
    assert m["false_pauses"]["agent_speech_min"] > 0
