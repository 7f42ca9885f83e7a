"""Live mode end to end (slow): one scenario with echo and a go-back, as deployed, judged from recordings.

`segue-server` and `segue-device` run as processes from their config files, the device on PortAudio
over a PulseAudio started for the test, the speaker's echo in the room at the scenario's gain, the
user's voice played into the room, the ear recorded by `parec`. The verdict comes from the recording
(tests/scenarios/live_echo_go_back.yaml): the resume starts at the first word the ear did not fully
hear, no phantom or lost words, and the echo never starts a barge-in by itself.

If PulseAudio, parec or the ALSA pulse plugin is missing this FAILS, naming the apt packages.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.scenario import load_many
from icp.messages import Interrupt

pytestmark = pytest.mark.slow

SCENARIO = Path(__file__).parent / "scenarios" / "live_echo_go_back.yaml"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from evaluation.broker import Mosquitto
    from evaluation.live.verdict import live_verdict
    from evaluation.live.world import LiveOptions, run_live

    scenario = load_many([str(SCENARIO)])[0]
    work = tmp_path_factory.mktemp("live")
    with Mosquitto(work / "broker") as broker:
        run = run_live(scenario, LiveOptions(broker_url=broker.url, record_dir=str(work / "rec"), on_progress=print))
    result = live_verdict(run)
    print(result.report)
    return run, result, work / "rec" / scenario.name


def test_live_run_is_recorded_and_judged_from_the_recording(live) -> None:
    run, result, rec = live
    rep = result.report
    assert rep["errors"] == [], rep["errors"]
    for name in ("ear.wav", "mic.wav", "requests.jsonl", "mqtt.jsonl", "server.log", "device.log",
                 "ear.transcript.json"):
        assert (rec / name).stat().st_size > 0, name
    assert run.wall_s < 120
    # the ear was recovered sample-exactly from the recording, and playback reports reached the wire
    assert rep["live"]["unmatched_ear_ms"] < 50
    assert any(e.level == "playback" for e in run.wire_events), "no playback report reached the broker"
    # the go-back verdict and the context, from the recording and the requests the endpoint received
    assert rep["go_back"] and all(g["verdict"] == "pass" for g in rep["go_back"]), rep["go_back"]
    assert rep["phantom_words"] == 0
    assert rep["lost_words"] == 0
    # the echo was really there, and it never started a barge-in by itself
    echo = rep["live"]["in_effect"]["echo"]
    assert echo is not None and echo["measured_gain"] > 0.1, echo
    starts = [t.start for t in run.trace.turns]
    for ev in run.wire_events:
        if isinstance(ev.body, Interrupt):
            t = ev.t - run.ear_t0
            assert any(s - 0.2 <= t <= s + 2.0 for s in starts), f"interrupt at {t:.2f} s with no user speech"
    # the user's barge-in stopped the speaker (measured at the ear from the user's speech at the mic)
    assert rep["barge_in_stop_ms"]["p50"] is not None and rep["barge_in_stop_ms"]["p50"] < 1000


def test_live_dispositions_as_expected(live) -> None:
    """A live finding, fixed: an idle device sent nothing at the user's speech onset, so the engine's
    auto-resume fired while the user said "okay, go back" and that turn was ABSORBed. The device now
    announces the onset with an empty partial."""
    _, result, _ = live
    wrong = [d for d in result.report["dispositions"] if d["expected"] != d["got"]]
    assert not wrong, wrong
