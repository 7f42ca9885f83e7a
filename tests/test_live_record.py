"""`--record DIR` in text mode: the files someone debugging a failed run needs (real broker, in process)."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest

from evaluation.cli import main as cli_main

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "01_go_back.yaml"


@pytest.mark.broker
def test_text_mode_records_ear_mic_requests_wire_and_logs(broker, tmp_path) -> None:
    rec = tmp_path / "rec"
    code = cli_main(["run", str(SCENARIO), "--broker", broker.url, "--record", str(rec), "--jobs", "1"])
    assert code == 0
    out = rec / "go-back-side-question"
    for name in ("ear.wav", "mic.wav", "requests.jsonl", "mqtt.jsonl", "server.log", "device.log"):
        assert (out / name).exists(), name
    with wave.open(str(out / "ear.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.getnframes() > 16000 * 10
    requests = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert any(m.get("role") == "assistant" for r in requests for m in r["messages"])  # the go-back context
    lines = [json.loads(line) for line in (out / "mqtt.jsonl").read_text().splitlines()]
    topics = {line["topic"].rsplit("/", 1)[-1] for line in lines}
    assert {"hello", "segment", "audio", "interrupt", "playback", "control"} <= topics
    audio = next(line["audio"] for line in lines if "audio" in line)
    assert set(audio) == {"segment", "offset", "samples", "last"}  # frames summarised, not dumped
    assert "segue.transitions" in (out / "server.log").read_text()
