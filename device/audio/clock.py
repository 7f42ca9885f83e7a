"""A sample-counting stream clock: the card's time stamps made smooth without losing their meaning.

PortAudio's ADC/DAC times over ALSA (and more so over PulseAudio's ALSA plugin) are computed at each
callback from a delay the sound server reports in coarse steps, and the callback itself runs late by
whatever the scheduler does: measured on the live rig, consecutive mic buffers were stamped up to
10 ms off the sample count, one buffer early and the next late. Everything that lines the microphone
up with the speaker depends on those stamps: the echo canceller reads its reference at the mic
frame's time, so a stamp 5 ms off is an echo path that moved by 80 samples, and libspeexdsp's filter
never converged (residual echo 0.4-0.6 of the reference where the echo itself was 0.3; dozens of
false optimistic pauses a minute and, now and then, an interrupt from the speaker's own voice).

Samples, on the other hand, are exact: buffer k starts `n_k / rate` after buffer 0. So a stream's
time is its sample count on an anchor. The stamps' mean distance from it is tracked (a first-order
filter); only when that mean leaves a dead band (`deadband_s`: a card clock drifting a few hundred
ppm against the system clock, after several seconds) does the anchor move, by whole samples. A
clock that followed every stamp a little (as the first version of this did, 0.02 of each error)
still moved the stream by one or two samples per buffer: enough to smear the echo at speech
frequencies. A real discontinuity (an underrun or overflow flagged by the card, or a stamp further
off than any jitter: the stream was restarted, a buffer was lost) re-anchors at once, so a gap in
the audio is a gap in time as well. After a (re)start the stamps' mean is learnt over `settle`
buffers with the anchor held, then taken in one step: the first version moved the anchor towards
the running mean at every buffer (half a stamp's error, then a third, ...), two dozen small steps
after every underrun, and the echo canceller and the delay tracker could follow none of them
(replaying a live recording with ±5 ms stamps and six underruns in 28 s: ten onsets from the
speaker's own voice; with one step, three; with the barge-in detector also told of each step,
none).

Like PulseAudio's own time smoother and WebRTC's render/capture timestamp handling, and for the same
reason: a clock for alignment has to be continuous.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ClockSettings:
    gain: float = 0.02       # weight of each stamp in the mean error (time constant: 50 buffers)
    deadband_s: float = 0.004  # the mean error the clock lets stand before it moves (by whole samples)
    jump_s: float = 0.03     # a stamp this far from the sample count is a discontinuity, not jitter
    settle: int = 25         # buffers after a (re)start whose stamps are averaged (0.5 s at 20 ms)


class SampleClock:
    """`stamp(t_reported, n)` for each buffer of `n` samples in stream order -> the buffer's time."""

    def __init__(self, sample_rate: int, settings: ClockSettings = ClockSettings()) -> None:
        self.sample_rate = sample_rate
        self.settings = settings
        self._anchor: Optional[float] = None  # time of the next sample to come
        self.resyncs = 0                      # discontinuities seen (after the first stamp)
        self.mean_error_s = 0.0               # the filtered distance (what the dead band is about)
        self.adjustments = 0                  # times the anchor moved inside the dead-band logic
        self._seen = 0                        # buffers since the stream (re)started

    def stamp(self, reported: float, n: int, discontinuity: bool = False) -> float:
        """The time of this buffer's first sample. `discontinuity`: the card flagged an underrun or
        overflow before this buffer (its stamp is taken as it is)."""
        s, r = self.settings, self.sample_rate
        if self._anchor is None:
            t = round(reported * r) / r  # on a whole sample, so every later buffer is too
            self.mean_error_s, self._seen = 0.0, 0
        else:
            err = reported - self._anchor
            self._seen += 1
            if discontinuity or abs(err) > s.jump_s:
                self.resyncs += 1
                t = self._anchor + round(err * r) / r
                self.mean_error_s, self._seen = 0.0, 0
            elif self._seen < s.settle:  # settling: the stamps' errors are averaged, the anchor stays
                self.mean_error_s += (err - self.mean_error_s) / self._seen
                t = self._anchor
            elif self._seen == s.settle:  # settled: one step, to the mean of the stamps seen
                self.mean_error_s += (err - self.mean_error_s) / self._seen
                t = self._anchor + round(self.mean_error_s * r) / r
                self.mean_error_s = 0.0
            else:
                self.mean_error_s += s.gain * (err - self.mean_error_s)
                t = self._anchor
                if abs(self.mean_error_s) > s.deadband_s:
                    step = round(self.mean_error_s * r) / r
                    t += step
                    self.mean_error_s -= step
                    self.adjustments += 1
        self._anchor = t + n / r
        return t

    def reset(self) -> None:
        """Forget the stream (a reopened card starts a new one)."""
        self._anchor = None
