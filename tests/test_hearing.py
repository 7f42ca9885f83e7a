"""The device hears its user at any card rate: streaming resampler, mic path at 16 kHz, AEC bypass
while nothing plays, the user's own voice, and the hearing benchmark's scoring."""

from __future__ import annotations

import numpy as np
import pytest

from device.aec import AecSettings
from device.bargein import MicPath
from device.resample import StreamResampler

RATES = (8000, 22050, 44100, 48000)


def _sine(rate: int, seconds: float, hz: float = 440.0, t0: float = 0.0) -> np.ndarray:
    t = t0 + np.arange(int(rate * seconds)) / rate
    return np.round(8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


@pytest.mark.parametrize("rate", RATES)
def test_resampler_is_continuous_across_buffers_and_keeps_stream_time(rate: int) -> None:
    """Odd buffer sizes in, a clean 16 kHz sine out whose samples sit at the times the resampler says."""
    x = _sine(rate, 2.0)
    rs = StreamResampler(rate, 16000)
    sizes = [rate // 50, 7, rate // 100 + 3, 1, rate // 30]
    start_t, i, k = 5.0, 0, 0
    outs: list[tuple[np.ndarray, float]] = []
    while i < len(x):
        n = sizes[k % len(sizes)]
        y, t = rs.push(x[i : i + n], start_t + i / rate)
        if len(y):
            outs.append((y, t))
        i, k = i + n, k + 1
    for (a, ta), (b, tb) in zip(outs, outs[1:]):  # contiguous timeline: no gaps, no overlaps
        assert tb == pytest.approx(ta + len(a) / 16000, abs=1e-9)
    y = np.concatenate([o[0] for o in outs]).astype(np.float64)
    t = outs[0][1] + np.arange(len(y)) / 16000
    expected = 8000 * np.sin(2 * np.pi * 440.0 * (t - start_t))
    settled = t > start_t + 0.05
    err = np.abs(y[settled] - expected[settled])
    assert err.max() < 80, err.max()  # < 1 % of the amplitude: no click at any buffer edge, no time error
    assert len(y) >= 2.0 * 16000 - 0.04 * 16000  # only the filter delay is still inside


def test_resampler_restarts_when_the_stream_time_jumps() -> None:
    rs = StreamResampler(44100, 16000)
    rs.push(_sine(44100, 0.5), 0.0)
    y, t = rs.push(_sine(44100, 0.5), 10.0)  # an overrun: the card's timeline jumped
    assert t == pytest.approx(10.0)
    assert StreamResampler(16000, 16000).push(np.arange(5, dtype=np.int16), 1.0)[1] == 1.0


def test_aec_leaves_the_mic_untouched_while_nothing_plays() -> None:
    mic = MicPath(16000, AecSettings(backend="speex"))
    got: list[np.ndarray] = []
    mic.listeners.append(lambda pcm, t: got.append(pcm.copy()))
    x = _sine(16000, 1.0, hz=300)
    for i in range(0, len(x), 320):
        mic.played(np.zeros(320, dtype=np.int16), i / 16000)
        mic.capture(x[i : i + 320], i / 16000)
    assert np.array_equal(np.concatenate(got), x)
    old = MicPath(16000, AecSettings(backend="speex", bypass_when_quiet=False))
    out: list[np.ndarray] = []
    old.listeners.append(lambda pcm, t: out.append(pcm.copy()))
    for i in range(0, len(x), 320):
        old.played(np.zeros(320, dtype=np.int16), i / 16000)
        old.capture(x[i : i + 320], i / 16000)
    assert not np.array_equal(np.concatenate(out), x)  # the suppressor does touch it


def test_word_error_rate_scoring() -> None:
    from evaluation.hearing import word_errors

    assert word_errors("How do I install Python?", "how do I install python") == (0, 5)
    assert word_errors("How do I install Python?", "I'll do my install python.") == (2, 5)
    assert word_errors("Set a timer for ten minutes.", "Set a timer for 10 minutes") == (0, 6)
    assert word_errors("Okay, continue.", "") == (2, 2)


def test_the_user_speaks_in_a_voice_of_its_own() -> None:
    from evaluation.harness.voice import synthesize_user, user_voice_name

    a = synthesize_user("How do volcanoes form?", 44100)
    b = synthesize_user("How do volcanoes form?", 16000)
    assert a.dtype == np.int16 and b.dtype == np.int16
    assert abs(len(a) / 44100 - len(b) / 16000) < 0.3
    assert 10000 < np.abs(b.astype(np.int32)).max() <= 32767
    assert user_voice_name() != "espeak-ng:en-us"  # never the agent's voice


@pytest.fixture(scope="module")
def whisper():
    from device.asr.whisper_asr import WhisperASR

    return WhisperASR()


@pytest.mark.slow
@pytest.mark.parametrize("rate", RATES)
def test_mic_path_finds_the_onset_and_whisper_the_words_at_any_card_rate(rate: int, whisper) -> None:
    from evaluation.hearing import LEAD_S, Decoder, normalize, run_mic_path
    from evaluation.harness.voice import synthesize_user

    text = "How do I install Python?"
    user = synthesize_user(text, 16000)
    run = run_mic_path(user, rate, "speex", 0.0, None, seed=1)
    speech_at = LEAD_S + int(np.argmax(np.abs(user.astype(np.int32)) > 500)) / 16000
    assert run.onsets, "no VAD onset"
    assert speech_at - 0.05 <= run.onsets[0] <= speech_at + 0.25, (run.onsets[0], speech_at)
    assert run.offsets and run.offsets[0] > run.onsets[0]
    decode = Decoder()
    decode.asr = whisper
    heard = decode(run.window(run.onsets[0] - 0.3, run.offsets[0] + 0.3))
    assert normalize(heard)[-2:] == ["install", "python"], heard
    if rate == 8000:
        return  # telephone band: the onset and the words are what matter
    assert normalize(heard) == normalize(text), heard


@pytest.mark.slow
@pytest.mark.parametrize("rate", (22050, 44100))
def test_the_device_hears_a_request_end_to_end_on_a_44k_card(rate: int, whisper) -> None:
    """DeviceApp with ASR on a card that is not 16 kHz (it used to refuse), button, speech, utterance."""
    from evaluation.hearing import device_utterance, normalize
    from evaluation.harness.voice import synthesize_user

    text = "Why does bread rise?"
    heard = device_utterance(synthesize_user(text, 16000), rate, whisper)
    assert normalize(heard) == normalize(text), heard
