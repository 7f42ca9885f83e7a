"""The virtual sound card's clock is sample-accurate: ear time = handover + latency, jitter-proof."""

import numpy as np
import pytest

from device.audio import Span, VirtualCard, VirtualCardSettings

SR = 16000


def _ramp_card(**kw):
    """A card whose callback plays segment 1 as a counting ramp, recording the times it was given."""
    card = VirtualCard(VirtualCardSettings(**kw))
    seen = []
    pos = [0]

    def cb(mic, frames, times):
        seen.append(times)
        pcm = (np.arange(pos[0], pos[0] + frames) % 30000).astype(np.int16)
        spans = [Span(1, pos[0], frames, 0)]
        pos[0] += frames
        return pcm, spans

    card.start(cb)
    return card, seen


@pytest.mark.parametrize("latency_ms,buffer_ms", [(100, 20), (120, 10), (0, 20), (37.5, 5)])
def test_ear_time_is_handover_plus_latency(latency_ms, buffer_ms):
    card, seen = _ramp_card(output_latency_ms=latency_ms, buffer_ms=buffer_ms)
    card.run(1.0)
    n = SR * buffer_ms // 1000
    lat = int(round(latency_ms * SR / 1000))
    for k, times in enumerate(seen):
        assert times.input_adc_time == k * n / SR
        assert times.current_time == (k + 1) * n / SR
        assert times.output_dac_time == ((k + 1) * n + lat) / SR
    # sample s of the segment reaches the ear exactly at handover + latency + s/SR
    for s in (0, 1, n - 1, n, 5 * n + 3):
        k, j = divmod(s, n)
        assert card.ear.when(1, s) == pytest.approx(((k + 1) * n + lat + j) / SR, abs=1e-12)
    ear = card.ear.pcm
    first = n + lat
    assert np.array_equal(ear[first : first + 1000], np.arange(1000).astype(np.int16))
    assert not ear[:first].any()


def test_heard_counts_samples_strictly_before_t():
    card, _ = _ramp_card(output_latency_ms=100, buffer_ms=20)
    card.run(1.0)
    t0 = (320 + 1600) / SR
    assert card.ear.heard(1, t0) == 0
    assert card.ear.heard(1, t0 + 1 / SR) == 1
    assert card.ear.heard(1, t0 + 0.5) == 8000
    assert card.ear.last_heard(t0 + 0.5) == (1, 8000)


def test_jitter_moves_callbacks_not_the_dac_timeline():
    plain, seen_plain = _ramp_card(output_latency_ms=100)
    jit, seen_jit = _ramp_card(output_latency_ms=100, jitter_ms=5, seed=3)
    plain.run(2.0)
    jit.run(2.0)
    assert [t.output_dac_time for t in seen_plain] == [t.output_dac_time for t in seen_jit]
    lateness = [j.current_time - p.current_time for p, j in zip(seen_plain, seen_jit)]
    assert max(lateness) > 0.001 and min(lateness) >= 0 and max(lateness) <= 0.005
    assert np.array_equal(plain.ear.pcm, jit.ear.pcm)
    assert plain.ear.spans == jit.ear.spans


def test_reported_dac_time_error_does_not_move_the_truth():
    card, seen = _ramp_card(output_latency_ms=100, dac_time_error_ms=15)
    card.run(0.2)
    assert seen[0].output_dac_time == pytest.approx((320 + 1600) / SR + 0.015)
    assert card.ear.when(1, 0) == (320 + 1600) / SR


def test_echo_path_and_mic_sources():
    card, _ = _ramp_card(output_latency_ms=100, echo_gain=0.5, echo_delay_ms=20)
    tone = np.full(1600, 1000, dtype=np.int16)
    card.add_mic(tone, at_s=0.5)
    card.run(1.0)
    mic = card.mic
    delay = 320
    ear = card.ear.pcm.astype(np.float64)
    expected = np.rint(0.5 * np.concatenate([np.zeros(delay), ear[: len(mic) - delay]]))
    expected[8000:9600] += 1000
    assert np.array_equal(mic, np.clip(expected, -32768, 32767).astype(np.int16))


def test_generator_mic_and_simulation_is_fast():
    import time

    card = VirtualCard(VirtualCardSettings())
    card.start(lambda mic, frames, times: np.zeros(frames, dtype=np.int16))
    card.add_mic_generator(lambda first, n: np.full(n, 7, dtype=np.int16), at_s=1.0)
    t = time.perf_counter()
    card.run(60.0)
    assert time.perf_counter() - t < 5.0
    assert card.time() == pytest.approx(60.0)
    assert not card.mic[:16000].any() and (card.mic[16000:] == 7).all()


def test_silence_has_no_provenance():
    card = VirtualCard(VirtualCardSettings())
    card.start(lambda mic, frames, times: np.zeros(frames, dtype=np.int16))
    card.run(0.5)
    assert card.ear.spans == [] and card.ear.last_heard() is None and card.ear.last_agent_time() is None
