"""Wake word detection on real openwakeword models and espeak-ng speech."""

from __future__ import annotations

import numpy as np
import pytest

from device.models import ModelNotFound, openwakeword_dir
from tests.audio_fixtures import concat, frames, have_espeak, noise, silence, speech

pytestmark = [
    pytest.mark.skipif(not have_espeak(), reason="needs espeak-ng and sox"),
    pytest.mark.skipif(not (openwakeword_dir() / "hey_jarvis_v0.1.onnx").is_file(),
                       reason="openwakeword models not unpacked (scripts/setup.sh)"),
]


def make(**kw):
    from device.wakeword import WakeWordDetector, WakeWordSettings

    return WakeWordDetector(WakeWordSettings(**kw))


def run(det, pcm: np.ndarray, chunk: int = 1280):
    return [d for f in frames(pcm, chunk) if (d := det.feed(f)) is not None]


@pytest.fixture(scope="module")
def detector():
    return make(models=("hey_jarvis", "alexa"), threshold=0.5, refractory_s=2.0)


@pytest.mark.parametrize("chunk", [1280, 1000, 4096])
def test_fires_on_hey_jarvis_any_chunk_size(detector, chunk):
    detector.reset()
    start = detector.samples_fed
    pcm = concat(silence(1000), speech("hey jarvis"), silence(1000))
    dets = run(detector, pcm, chunk)
    assert len(dets) == 1
    d = dets[0]
    assert d.model.startswith("hey_jarvis") and d.score >= 0.5
    # it fires after the phrase begins and within the clip
    assert 1.0 < (d.end_sample - start) / 16000 < len(pcm) / 16000


def test_fires_on_alexa_with_its_own_name(detector):
    detector.reset()
    dets = run(detector, concat(silence(500), speech("alexa"), silence(1000)))
    assert [d.model.split("_v")[0] for d in dets] == ["alexa"]


@pytest.mark.parametrize("text", ["what is the weather tomorrow", "hello there, how are you", "jarvis"])
def test_silent_on_other_speech(detector, text):
    detector.reset()
    assert run(detector, concat(silence(500), speech(text), silence(500))) == []
    assert max(detector.last_scores.values()) < 0.5


def test_silent_on_silence_and_noise(detector):
    detector.reset()
    assert run(detector, concat(silence(2000), noise(3000))) == []


def test_refractory_period_counts_audio_time():
    twice = concat(silence(500), speech("hey jarvis"), silence(2000), speech("hey jarvis"), silence(800))
    # a long refractory swallows the second utterance...
    assert len(run(make(refractory_s=5.0), twice)) == 1
    # ...a short one lets it through, one detection per utterance, about 2.9 s apart in audio time
    dets = run(make(refractory_s=1.0), twice)
    assert len(dets) == 2
    assert 2.0 < dets[1].audio_time_s - dets[0].audio_time_s < 4.0
    # without any, one utterance fires on several consecutive frames: the refractory is what stops it
    assert len(run(make(refractory_s=0.0), twice)) > 2


def test_reset_clears_refractory():
    det = make(refractory_s=60.0)
    clip = concat(silence(500), speech("hey jarvis"), silence(800))
    assert len(run(det, clip)) == 1
    assert run(det, clip) == []  # still refractory
    det.reset()
    assert len(run(det, clip)) == 1


def test_input_types(detector):
    detector.reset()
    pcm = concat(silence(500), speech("hey jarvis"), silence(800))
    assert any(detector.feed(f.tobytes()) for f in frames(pcm, 1600))
    with pytest.raises(TypeError):
        detector.feed(np.zeros(1280, dtype=np.float32))


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFound, match="hey_nobody"):
        make(models=("hey_nobody",))
    with pytest.raises(ModelNotFound):
        make(model_dir=tmp_path)
