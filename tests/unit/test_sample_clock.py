"""The sample-counting stream clock (device.audio.clock): jitter smoothed, discontinuities kept."""

import random

import pytest

from device.audio.clock import ClockSettings, SampleClock

R, N = 16000, 320


def test_jittered_stamps_become_a_continuous_sample_count():
    rng = random.Random(1)
    clock = SampleClock(R)
    true0 = 12.0
    errs, steps = [], set()
    prev = None
    for k in range(2000):
        true = true0 + k * N / R
        t = clock.stamp(true + rng.uniform(-0.008, 0.008), N)
        if k > 50:  # after the first second
            errs.append(abs(t - true))
            steps.add(round((t - prev) * R, 6))
        prev = t
    assert max(errs) < 0.003  # stamps were +-8 ms off
    assert steps == {N}  # buffer after buffer exactly N samples apart: nothing smears the echo path
    assert clock.resyncs == 0 and clock.adjustments == 0


def test_a_card_clock_that_drifts_is_followed():
    clock = SampleClock(R)
    ppm = 300e-6
    for k in range(3000):
        true = k * N / R * (1 + ppm)  # the card runs 300 ppm fast against our clock
        t = clock.stamp(true, N)
    assert t == pytest.approx(true, abs=0.005)
    assert clock.adjustments >= 2  # 300 ppm of 60 s = 18 ms, followed in dead-band steps


def test_a_jump_or_a_flagged_underrun_re_anchors_at_once():
    clock = SampleClock(R, ClockSettings(jump_s=0.03))
    for k in range(100):
        clock.stamp(k * N / R, N)
    t = clock.stamp(100 * N / R + 0.05, N)  # 50 ms later than the count: a lost stretch
    assert t == pytest.approx(100 * N / R + 0.05)
    t = clock.stamp(101 * N / R + 0.05 + 0.02, N, discontinuity=True)  # flagged: 20 ms taken as is
    assert t == pytest.approx(101 * N / R + 0.07, abs=1 / R)
    assert clock.resyncs == 2
    clock.reset()
    assert clock.stamp(99.00001, N) == pytest.approx(99.0, abs=1 / R)


def test_after_an_underrun_the_clock_settles_in_one_step():
    """Settling on jittered stamps after a re-anchor moves the stream once, at the end, not a little
    at every buffer: two dozen small steps after every underrun were two dozen echo paths that
    neither the canceller nor the delay tracker could follow (live mode: the speaker's own voice
    started an interrupt)."""
    rng = random.Random(3)
    clock = SampleClock(R, ClockSettings(settle=25))
    for k in range(100):
        clock.stamp(k * N / R, N)
    times = [clock.stamp(100 * N / R + 0.04 + rng.uniform(-0.005, 0.005), N, discontinuity=True)]
    for k in range(101, 160):
        times.append(clock.stamp(k * N / R + 0.04 + rng.uniform(-0.005, 0.005), N))
    steps = [round((b - a) * R) - N for a, b in zip(times, times[1:])]
    assert sum(1 for s in steps if s) <= 1, steps  # one step at most, at the end of settling
    assert times[-1] == pytest.approx(159 * N / R + 0.04, abs=0.002)
