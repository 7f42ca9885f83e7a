"""`segue-demo --scripted`: the whole offline stack, with a transcript that shows the go-back pass."""

from __future__ import annotations

import pytest

from evaluation.demo import main


@pytest.mark.broker
def test_scripted_demo_shows_the_go_back_passing(capsys) -> None:
    assert main(["--scripted", "--speed", "8"]) == 0
    out = capsys.readouterr().out
    assert "starting the MQTT broker" in out
    assert "USER       \"Wait, what's attention?\"  (interrupting)" in out
    assert "-> BRANCH" in out and "-> RESUME" in out
    assert "resume     thread" in out and "Right, as I was saying," in out
    assert "go-back (turn 3): PASS" in out
    assert "phantom words: 0   lost words: 0" in out
    assert out.rstrip().endswith("segue-demo: PASS (icp)")
