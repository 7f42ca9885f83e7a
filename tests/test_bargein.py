"""Barge-in on the virtual card with real (espeak-ng) speech and an echo path."""

import numpy as np
import pytest

from device.vad import OnsetDetector, SpeechOffset, SpeechOnset
from tests.audio_fixtures import have_espeak

needs_espeak = pytest.mark.skipif(not have_espeak(), reason="espeak-ng and sox needed")


def test_onset_detector_needs_consecutive_frames():
    det = OnsetDetector(onset_frames=3, offset_frames=2)
    seq = [1, 1, 0, 1, 1, 1, 1, 0, 0, 1]
    evs = [det.update(bool(s), i * 0.02, 0.02) for i, s in enumerate(seq)]
    assert evs[5] == SpeechOnset(pytest.approx(0.06))
    assert evs[8] == SpeechOffset(pytest.approx(0.14))
    onsets_offsets = [e for e in evs if isinstance(e, (SpeechOnset, SpeechOffset))]
    assert onsets_offsets == [evs[5], evs[8]]  # (the finer suspect/dismiss events: tests/unit/test_device_turns.py)


def test_echo_reference_is_read_on_the_mic_timeline():
    from device.aec import EchoReference

    ref = EchoReference(16000, seconds=1.0)
    pcm = np.arange(1, 641, dtype=np.int16)
    ref.write(pcm[:320], 0.12)
    ref.write(pcm[320:], 0.14)
    assert np.array_equal(ref.read(0.12, 640), pcm)
    assert not ref.read(0.10, 320).any()
    assert np.array_equal(ref.read(0.11, 320)[160:], pcm[:160])


@needs_espeak
def test_speex_aec_suppresses_echo():
    from device.aec import AecSettings, erle_db, make_canceller
    from tests.audio_fixtures import speech

    sp = speech("Transformers are a kind of neural network that learns which words to pay attention to, "
                "and this sentence keeps going so that the filter converges.")
    aec = make_canceller(AecSettings(), 16000)
    echo = np.zeros(len(sp))
    echo[480:] = 0.3 * sp[:-480]
    mic = echo.astype(np.int16)
    n = aec.frame_samples
    out = np.concatenate([aec.process(mic[i : i + n], sp[i : i + n]) for i in range(0, len(sp) - n, n)])
    half = len(out) // 2
    assert erle_db(mic[half : len(out)], out[half:]) > 20


@needs_espeak
@pytest.mark.parametrize("gain", [0.1, 0.3, 0.5])
def test_own_voice_does_not_barge_in_and_user_speech_does(gain):
    from evaluation.bench import AGENT_TEXTS, USER_TEXTS, bargein_trial, synth

    agent = synth(AGENT_TEXTS[0])
    echo_only = bargein_trial(agent, None, None, gain)
    assert echo_only.onset_at is None
    user = synth(USER_TEXTS[0], voice="en-gb+m3", speed=170)
    trial = bargein_trial(agent, user, 3.0, gain)
    assert trial.onset_at is not None and 3.0 - 0.02 <= trial.onset_at <= 3.2
    # onset (3 x 20 ms frames) + one buffer + 100 ms output latency, plus the voice's attack
    assert trial.stop_ms is not None and trial.stop_ms <= 320


@pytest.mark.slow
@needs_espeak
def test_bargein_suite():
    from evaluation.bench import bargein_suite, summarize_bargein

    s = summarize_bargein(bargein_suite())
    assert s["false_bargeins_on_echo"] == 0
    assert s["missed"] <= 2
    assert s["pause_latency_ms"]["p95"] <= 350


@needs_espeak
@pytest.mark.parametrize("user_at", [2.0, 2.6, 3.2])
def test_a_soft_onset_over_echo_is_suspected_on_its_first_frame(user_at):
    """The canceller's suppressor holds a voice's first 10-20 ms back (a breathy "Hold on" came out at
    140 RMS from 1450); what the delayed copy of the reference leaves of the raw mic does not, so the
    reply pauses on the first frame of the user's voice: one frame later costs 20 ms of talking over them."""
    from evaluation.bench import AGENT_TEXTS, bargein_trial, synth

    agent = synth(AGENT_TEXTS[1])
    voice = synth("Hold on, what do you mean?", voice="en-gb+m3", speed=170)
    loud = np.flatnonzero(np.abs(voice) > 4000)
    voice = voice[loud[0]:]  # from the vowel's attack: espeak's own lead-in is quieter than a person's
    breath = (np.random.default_rng(1).normal(0, 200, 160)).astype(np.int16)  # 10 ms of breath first
    user = np.concatenate([breath, voice])
    seen = bargein_trial(agent, user, user_at, 0.3, echo_delay_ms=20, jitter_ms=0).suspects
    assert not [t for t in seen if t < user_at - 1e-6], "a suspicion on the echo alone"
    assert seen and seen[0] == pytest.approx(user_at, abs=1e-6)
