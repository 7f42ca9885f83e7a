"""Echo delay tracking (device.echo_delay) on real (espeak-ng) speech: the barge-in gate is not fooled
by the speaker's own voice when the card's timing moves the echo, and the user still barges in."""

import numpy as np
import pytest

from tests.audio_fixtures import have_espeak

needs_espeak = pytest.mark.skipif(not have_espeak(), reason="espeak-ng and sox needed")
R = 16000


@pytest.fixture(scope="module")
def voices():
    from tests.audio_fixtures import speech

    agent = np.concatenate([
        speech("Transformers are a kind of neural network that learns which words to pay attention to, and "
               "this sentence keeps going so that the filter converges. Then it says more about attention."),
        speech("And here is another sentence about the way the models are trained on large amounts of text."),
    ])
    user = speech("Wait, what about recurrent networks?", voice="en-gb+m3", speed=170)
    return agent, user


def _run(agent, user, track: bool, jump_ms: float, gain: float = 0.3, user_at: float | None = None):
    """The speaker plays `agent`; the mic hears it `gain` x, 30 ms late, then `30 + jump_ms` ms late from
    3 s on (what an underrun does to the card's DAC stamps); `user` speaks from `user_at`."""
    from device.aec import AecSettings
    from device.bargein import MicPath
    from device.vad import SpeechOnset

    path = MicPath(R, AecSettings(track_delay=track))
    n = len(agent)
    mic = np.zeros(n)
    d0, d1, j = int(0.030 * R), int((0.030 + jump_ms / 1000) * R), 3 * R
    mic[d0:j] += gain * agent[: j - d0]
    mic[j:] += gain * agent[j - d1 : n - d1]
    if user_at is not None:
        u = int(user_at * R)
        mic[u : u + len(user)] += user[: n - u]
    mic = np.clip(mic, -32768, 32767).astype(np.int16)
    onsets = []
    for i in range(0, n - 320, 320):
        path.played(agent[i : i + 320], i / R)
        onsets += [round(e.at, 2) for e in path.capture(mic[i : i + 320], i / R) if isinstance(e, SpeechOnset)]
    return onsets, path


@needs_espeak
@pytest.mark.parametrize("jump_ms", [-20, 15, 100])
def test_own_voice_after_a_timing_jump_is_not_a_barge_in(voices, jump_ms):
    agent, user = voices
    without, _ = _run(agent, user, False, jump_ms, gain=0.5)
    assert without, "the canceller alone should be fooled here (else this test shows nothing)"
    onsets, path = _run(agent, user, True, jump_ms, gain=0.5)
    assert onsets == []
    assert path.delay.delay_s == pytest.approx(0.030 + jump_ms / 1000, abs=0.001)
    assert path.detector.vetoed > 0


@needs_espeak
@pytest.mark.parametrize("gain", [0.1, 0.5])
def test_the_user_still_barges_in_over_the_echo(voices, gain):
    agent, user = voices
    onsets, _ = _run(agent, user, True, 15, gain=gain, user_at=5.0)
    assert len(onsets) == 1 and 5.25 <= onsets[0] <= 5.45, onsets  # the voice starts at 5.3 s (300 ms pad)


@needs_espeak
def test_estimate_needs_the_mic_to_be_mostly_echo(voices):
    """Uncorrelated sound (the user alone, nothing of the reference in it) never yields a delay."""
    from device.aec import EchoReference
    from device.echo_delay import EchoDelay

    agent, user = voices
    ref = EchoReference(R)
    tracker = EchoDelay(ref)
    noise = np.random.default_rng(0).normal(0, 800, len(agent)).astype(np.int16)
    for i in range(0, len(agent) - 320, 320):
        ref.write(agent[i : i + 320], i / R)
        tracker.feed(noise[i : i + 320], i / R)
    assert tracker.delay_s is None and tracker.estimates == 0


def _run_with_steps(agent, user, hold_s: float, user_at: float | None = None):
    """An underrun at 3 s: what plays from then on is 40 ms later (the mic's echo too), and the DAC
    stamps find that out in steps, as a clock settling on jittered stamps does (+-3 ms each buffer for
    0.5 s around the new offset)."""
    from device.bargein import BargeInSettings, MicPath
    from device.vad import SpeechOnset

    path = MicPath(R, bargein=BargeInSettings(step_hold_s=hold_s))
    n, j, gap = len(agent), 3 * R, int(0.040 * R)
    played = np.concatenate([agent[:j], np.zeros(gap), agent[j:]])
    mic = np.zeros(len(played))
    d = int(0.030 * R)
    mic[d:] = 0.5 * played[:-d]
    if user_at is not None:
        u = int(user_at * R)
        mic[u : u + len(user)] += user[: len(mic) - u]
    mic = np.clip(mic, -32768, 32767).astype(np.int16)
    wobble = [0.003, -0.002, 0.0025, -0.001, 0.002, -0.0015, 0.001, -0.0005] * 4  # seconds, per buffer
    onsets = []
    for i in range(0, n - 320, 320):
        t = i / R
        if i >= j:
            t += 0.040 + (wobble[(i - j) // 320] if (i - j) // 320 < len(wobble) else 0.0)
        path.played(agent[i : i + 320], t)
        # the mic runs on its own clock, which did not step
        onsets += [round(e.at, 2) for e in path.capture(mic[i : i + 320], i / R) if isinstance(e, SpeechOnset)]
    return onsets, path


@needs_espeak
def test_own_voice_while_the_card_clock_steps_is_not_a_barge_in(voices):
    """Live mode under load: after an underrun the speaker's own voice started an `interrupt`. The
    stamps that follow an underrun step the reference about while the echo stays put; the canceller
    and the delay tracker follow none of it, so the detector starts no onset over playback for
    `step_hold_s` after a step."""
    agent, user = voices
    without, _ = _run_with_steps(agent, user, hold_s=0.0)
    assert without, "the steps should fool the detector when it is not told of them (else this shows nothing)"
    onsets, path = _run_with_steps(agent, user, hold_s=0.3)
    assert onsets == [] and path.detector.unsure_frames > 0


@needs_espeak
def test_the_user_barges_in_soon_after_the_card_clock_steps(voices):
    agent, user = voices
    onsets, _ = _run_with_steps(agent, user, hold_s=0.3, user_at=4.0)
    assert len(onsets) == 1 and 4.25 <= onsets[0] <= 4.45, onsets  # the voice starts at 4.3 s (300 ms pad)
