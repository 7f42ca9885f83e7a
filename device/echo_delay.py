"""Where the speaker's echo really is in the microphone, found from the audio itself.

The echo canceller reads its reference at the stream time the card stamped on each buffer. On a
real sound server those stamps are good until they are not: after an underrun of PulseAudio's ALSA
plugin the reported DAC times were 20-35 ms off for seconds (measured on the live rig, with the
room's echo path fixed at 40 ms). libspeexdsp then re-converges for a second or more, and meanwhile
its output carries the echo at or above the raw echo's level: loud, speech-shaped, and exactly what
the barge-in gate is there to ignore. That gate had only the canceller's word for it.

`EchoDelay` gives it a second opinion, the way WebRTC's AEC3 finds its render delay: every
`every_s` of playback it cross-correlates the last `window_s` of raw microphone with the reference
over a lag range and, when one lag explains the microphone well (normalised correlation at least
`min_ncc`: the microphone was mostly echo), takes it as the echo's delay. `residual()` then asks of a
frame the barge-in detector is about to call speech: how much of the microphone is left after
taking away the best single delayed, scaled copy of the reference near that delay? A frame that a
plain delayed copy explains (residual far below what the canceller left) is the speaker's own voice;
the user's voice is never a delayed copy of the reference, so it survives the subtraction at its
own level. In a real room with a reverberant echo the single copy explains less, the check
withholds its veto, and the detector behaves as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from device.aec import EchoReference


@dataclass(frozen=True)
class EchoDelaySettings:
    enabled: bool = True
    window_s: float = 0.3       # microphone audio each estimate looks at
    every_s: float = 0.1        # how often an estimate is made (while the speaker plays)
    min_lag_s: float = -0.05    # echo lags searched (the card's stamps may be early or late)
    max_lag_s: float = 0.3
    min_ncc: float = 0.8        # an estimate counts only if one lag explains the mic this well
    min_ref_rms: float = 300.0  # estimates need the speaker to be playing something
    search_s: float = 0.004     # a frame's residual searches this far either side of the estimate
    explained: float = 0.1      # a frame the estimate leaves less than this share of is explained; else
    jump_window_s: float = 0.08 # its last this-long is searched over all lags, and a lag that...
    jump_ncc: float = 0.9       # ...explained this well by one lag is echo at a new delay (taken at once)
    stale_s: float = 10.0       # an estimate older than this is not used


class EchoDelay:
    """Tracks the echo's delay (mic time minus reference time) from raw mic audio and the reference."""

    def __init__(self, reference: EchoReference, settings: EchoDelaySettings = EchoDelaySettings()) -> None:
        self.settings = settings
        self.reference = reference
        self.rate = rate = reference.sample_rate
        span = settings.window_s + settings.max_lag_s - settings.min_lag_s + 1.0
        self.mic = EchoReference(rate, seconds=max(2.0, span))  # the raw mic, on the same timeline
        self.delay_s: Optional[float] = None
        self.ncc = 0.0
        self.estimated_at: Optional[float] = None
        self.estimates = 0
        self.jumps = 0  # delays taken at once from a frame the estimate did not explain
        self._next_at: Optional[float] = None

    def feed(self, mic: np.ndarray, t: float) -> None:
        """Raw mic samples (before the canceller) with the stream time of the first."""
        s = self.settings
        if not s.enabled:
            return
        self.mic.write(np.asarray(mic, dtype=np.int16), t)
        end = t + len(mic) / self.rate
        if self._next_at is None:
            self._next_at = end + s.window_s
        if end >= self._next_at:
            self._next_at = end + s.every_s
            self._estimate(end)

    def _estimate(self, end: float) -> None:
        s, r = self.settings, self.rate
        w = int(round(s.window_s * r))
        lo, hi = int(round(s.min_lag_s * r)), int(round(s.max_lag_s * r))
        played = self.reference.read(end - (w + hi) / r, w + hi - lo)
        if np.sqrt(np.mean(played.astype(np.float64) ** 2)) < s.min_ref_rms:
            return
        ncc, m = self._xcorr(end, w, lo, hi)
        if not m.any():
            return
        j = int(np.argmax(ncc))
        if ncc[j] >= s.min_ncc:
            self.delay_s = (hi - j) / r
            self.ncc = float(ncc[j])
            self.estimated_at = end
            self.estimates += 1

    def _xcorr(self, end: float, w: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised cross-correlation of the mic's last `w` samples before `end` with the reference at
        lags lo..hi samples; index j is lag hi - j. Also returns the mic window."""
        r = self.rate
        m = self.mic.read(end - w / r, w).astype(np.float64)
        # reference from (mic start - max lag) to (mic end - min lag): lag k pairs mic[i] with ref[i + hi - k]
        ref = self.reference.read(end - (w + hi) / r, w + hi - lo).astype(np.float64)
        n = 1 << int(np.ceil(np.log2(len(ref) + w)))
        c = np.fft.irfft(np.fft.rfft(ref, n) * np.conj(np.fft.rfft(m, n)), n)[: hi - lo + 1]
        cs = np.concatenate([[0.0], np.cumsum(ref ** 2)])
        e_ref = cs[w : w + hi - lo + 1] - cs[: hi - lo + 1]
        return c / np.sqrt(np.maximum(e_ref, 1e-9) * max(float(np.dot(m, m)), 1e-9)), m

    def residual(self, t: float, n: int) -> Optional[float]:
        """RMS of the raw mic over [t, t + n samples) after removing the best delayed, scaled copy of
        the reference within `search_s` of the estimated delay. If that leaves more than `explained`
        of the frame, the delay may just have moved (the card's timing jumped, or a reply starts after
        a silence in which it did): the last `jump_window_s` is searched over every lag, and a lag
        that explains it almost wholly is taken as the new delay at once. None while no delay is
        known."""
        s, r = self.settings, self.rate
        if not s.enabled:
            return None
        m = self.mic.read(t, n).astype(np.float64)
        left = self._near_estimate(t, m)
        level = float(np.sqrt(np.dot(m, m) / n))
        if left is not None and left < s.explained * level:
            return left
        w = int(round(s.jump_window_s * r))
        lo, hi = int(round(s.min_lag_s * r)), int(round(s.max_lag_s * r))
        ncc, _ = self._xcorr(t + n / r, w, lo, hi)
        j = int(np.argmax(ncc))
        if ncc[j] < s.jump_ncc:
            return left
        self.delay_s, self.ncc, self.estimated_at = (hi - j) / r, float(ncc[j]), t + n / r
        self.jumps += 1
        again = self._near_estimate(t, m)
        return again if left is None or again is None else min(left, again)

    def _near_estimate(self, t: float, m: np.ndarray) -> Optional[float]:
        """What is left of the mic frame `m` (starting at t) near the estimated delay; None if stale."""
        s, r, n = self.settings, self.rate, len(m)
        if self.delay_s is None or self.estimated_at is None or t - self.estimated_at > s.stale_s:
            return None
        k = int(round(s.search_s * r))
        d = int(round(self.delay_s * r))
        ref = self.reference.read(t - (d + k) / r, n + 2 * k).astype(np.float64)
        e_m = float(np.dot(m, m))
        if e_m <= 0.0:
            return 0.0
        # c[j] pairs m[i] with ref[i + j]: j = k is the estimated delay exactly
        c = np.correlate(ref, m, mode="valid")
        cs = np.concatenate([[0.0], np.cumsum(ref ** 2)])
        e_ref = np.maximum(cs[n : n + 2 * k + 1] - cs[: 2 * k + 1], 1e-9)
        explained = float(np.max(c * c / e_ref))  # least squares: |m|^2 - <m,r>^2 / |r|^2
        return float(np.sqrt(max(e_m - explained, 0.0) / n))
