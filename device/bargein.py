"""Barge-in: speech onset on the echo-cancelled mic while the device is speaking.

The AEC alone is not enough: libspeexdsp needs seconds of speech to converge, and until then the
residual echo is loud enough for any VAD. So a frame counts as the user's speech only when the VAD
says speech *and* its level stands clear of the echo we expect: the cleaned RMS must exceed
`echo_margin` x the tracked residual-echo coupling x the RMS of what the speaker just played. The
coupling is a decaying peak of cleaned/reference over frames that did not pass, so it follows the
canceller as it converges. With an echo delay tracker (`device.echo_delay`), a frame's level is the
lower of what the canceller left and what is left of the raw mic once the best delayed copy of the
reference is taken away: while the canceller re-converges (after the card's timing jumped) the echo
it lets through is still a delayed copy of what was played, and does not count as the user. Frames
that copy explained keep their own coupling peak. Onset = `onset_frames` consecutive passing frames;
its time is the start of the first. Pausing is the state machine's call, not ours.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from device.aec import AecSettings, EchoReference, EchoStage, make_canceller
from device.echo_delay import EchoDelay, EchoDelaySettings
from device.audio.frames import Reframer
from device.resample import MODEL_RATE, StreamResampler
from device.vad import OnsetDetector, Vad, VadEvent, VadSettings, make_vad


@dataclass(frozen=True)
class BargeInSettings:
    enabled: bool = True
    min_rms: float = 150.0            # cleaned frames quieter than this are never speech
    echo_margin: float = 2.5          # how far (x) above the expected residual echo speech must be
    echo_coupling_init: float = 0.5   # residual/reference ratio assumed before any tracking
    echo_coupling_floor: float = 0.01
    tracked_coupling_init: float = 0.1  # the same, for what a delayed copy of the reference leaves
    echo_decay: float = 0.98          # per-frame decay of the tracked coupling peak
    echo_rise: float = 1.15           # per-frame cap on its growth (so a user's rising voice is not learnt as echo)
    ref_window_ms: float = 220.0      # how far back the played reference counts (delay + reverb)
    suspect_min_rms: float = 300.0    # a frame this loud (cleaned)...
    suspect_margin: float = 3.0       # ...and this far above the echo's typical level is suspicious
    typical_alpha: float = 0.05       # per-frame weight of the typical residual/reference ratio
    typical_warmup: int = 25          # echo frames the typical ratio needs before it is trusted (0.5 s)
    step_hold_s: float = 0.3          # after a stream's clock steps, how long no onset is looked for over playback


@dataclass(frozen=True)
class FrameDecision:
    t: float
    vad: float
    rms: float
    ref_rms: float
    speech: bool
    coupling: float = 0.0   # the gate's residual/reference peak the frame was held against
    tracked: bool = False   # its level is what the delayed copy of the reference left
    suspect: bool = False

    def __str__(self) -> str:
        return (f"{self.t:.3f} vad {self.vad:.2f} rms {self.rms:.0f} ref {self.ref_rms:.0f} "
                f"x{self.coupling:.3f}{' copy' if self.tracked else ''}{' S' if self.speech else ''}"
                f"{' ?' if self.suspect else ''}")


class BargeInDetector:
    """Feed echo-cancelled mic audio (any chunk size, with its stream time); get onsets."""

    def __init__(self, settings: BargeInSettings, vad: Vad, onset: OnsetDetector, sample_rate: int,
                 reference: Optional[EchoReference] = None, vad_threshold: float = 0.5,
                 delay: Optional[EchoDelay] = None) -> None:
        self.settings = settings
        self.vad = vad
        self.onset = onset
        self.sample_rate = sample_rate
        self.reference = reference
        self.delay = delay
        self.vetoed = 0  # frames the canceller passed as loud that were a delayed copy of the reference
        self.vad_threshold = vad_threshold
        self._framer = Reframer(vad.frame_samples, sample_rate)
        self._frame_s = vad.frame_samples / sample_rate
        self._coupling = settings.echo_coupling_init
        self._tracked_coupling = settings.tracked_coupling_init
        self._window = int(round(settings.ref_window_ms / 1000 * sample_rate))
        self.last: Optional[FrameDecision] = None
        # The frames behind the latest decisions: logged with each onset, so a barge-in nobody made
        # (the echo let through) can be traced from a device log.
        self.recent: deque[FrameDecision] = deque(maxlen=12)
        self._suspect = False
        self._typical = settings.echo_coupling_init / 2
        self._learnt = 0
        self._typical_left = settings.tracked_coupling_init / 2  # the same, for what the delayed copy leaves
        self._learnt_left = 0
        self._unsure = (0.0, 0.0)  # stream times whose echo alignment is unknown (`timing_stepped`)
        self.unsure_frames = 0     # frames over playback not judged for that reason

    def feed(self, clean: np.ndarray, t: float) -> list[VadEvent]:
        events: list[VadEvent] = []
        for frame, ft in self._framer.push(clean, t):
            speech = self._decide(frame, ft)
            ev = self.onset.update(speech, ft, self._frame_s, self._suspect)
            if ev is not None:
                events.append(ev)
        return events

    def timing_stepped(self, at: float) -> None:
        """A stream's times stepped at stream time `at` (an underrun or overflow re-anchored the card's
        clock, or it settled on the mean of its stamps): the reference no longer lines up with the echo
        in the mic, and the canceller and the delay tracker need a moment to find it again. Meanwhile
        the echo they leave is loud and speech-shaped (live mode under load: the speaker's own voice
        started an `interrupt` after an underrun). For `step_hold_s` from `at`, frames over playback
        start no onset; a user who barges in just then is heard that much later."""
        start, end = self._unsure
        new_end = at + self.settings.step_hold_s
        self._unsure = (min(start, at), max(end, new_end)) if at <= end else (at, new_end)

    def _decide(self, frame: np.ndarray, t: float) -> bool:
        s = self.settings
        x = frame.astype(np.float32)
        rms = float(np.sqrt(np.dot(x, x) / len(x)))
        ref_rms = 0.0
        if self.reference is not None:
            r = self.reference.read(t + self._frame_s - self._window / self.sample_rate, self._window).astype(np.float32)
            ref_rms = float(np.sqrt(np.dot(r, r) / len(r)))
        start, end = self._unsure
        if start <= t < end and ref_rms > s.min_rms and not self.onset.in_speech:
            self.unsure_frames += 1
            self._suspect = False
            self.last = FrameDecision(t, 0.0, rms, ref_rms, False)
            self.recent.append(self.last)
            return False
        tracked = False
        left: Optional[float] = None
        if (self.delay is not None and ref_rms > 0.0
                and (rms >= s.min_rms or self._raw_rms(t, len(frame)) >= s.suspect_min_rms)):
            left = self.delay.residual(t, len(frame))
        if left is not None and rms >= s.min_rms and left < rms:
            if left * s.suspect_margin < rms:
                self.vetoed += 1
            rms = left
            tracked = True
        # Frames the delayed copy explained have their own peak: what the canceller left before the delay
        # was found (seconds of unconverged output) says nothing about what the copy leaves.
        coupling = self._tracked_coupling if tracked else self._coupling
        p = self.vad.probability(frame) if rms >= s.min_rms else 0.0
        loud_enough = rms >= s.min_rms and rms > s.echo_margin * coupling * ref_rms
        speech = p >= self.vad_threshold and loud_enough
        # Suspicious: well above the echo's *typical* level (a slow mean of residual/reference, where the
        # gate above uses its decaying peak), whatever the VAD says: the VAD calls a vowel speech a frame
        # or two after its attack, and the peak tracker lags the canceller's convergence by seconds.
        # Only ever a reason to pause optimistically; an onset still needs the VAD and the gate.
        # (Until the mean has seen `typical_warmup` frames of echo, the peak stands in for it.)
        # Either measure may raise it, each against its own typical level: the canceller's output of a
        # speech onset is what its suppressor lets through in the first 10-20 ms (2-10x under the voice,
        # measured on piper onsets over echo: a breathy "Hold on" came out at 140 RMS from 1450), while
        # what the delayed copy leaves of the raw mic is the voice itself wherever the echo is a copy.
        typical = max(self._typical if self._learnt >= s.typical_warmup else self._coupling, s.echo_coupling_floor)
        typical_left = max(self._typical_left if self._learnt_left >= s.typical_warmup else self._tracked_coupling,
                           s.echo_coupling_floor)
        suspect_aec = rms >= s.suspect_min_rms and rms > s.suspect_margin * typical * ref_rms
        suspect_left = (left is not None and left >= s.suspect_min_rms
                        and left > s.suspect_margin * typical_left * ref_rms)
        self._suspect = speech or suspect_aec or suspect_left
        if ref_rms > s.min_rms and not speech:  # the gate's peak learns as it always did
            c = self._tracked_coupling if tracked else self._coupling
            c = max(min(rms / ref_rms, c * s.echo_rise), c * s.echo_decay, s.echo_coupling_floor)
            if tracked:
                self._tracked_coupling = c
            else:
                self._coupling = c
            if not self._suspect:  # the typical levels never learn the user's voice as echo
                self._typical += s.typical_alpha * (min(rms / ref_rms, 4 * typical) - self._typical)
                self._learnt += 1
                if left is not None:
                    self._typical_left += s.typical_alpha * (min(left / ref_rms, 4 * typical_left) - self._typical_left)
                    self._learnt_left += 1
        self.last = FrameDecision(t, p, rms, ref_rms, speech, coupling, tracked, self._suspect)
        self.recent.append(self.last)
        return speech

    def _raw_rms(self, t: float, n: int) -> float:
        """RMS of the raw (uncancelled) mic over the frame: a quiet canceller output may still be a
        loud onset the canceller's suppressor held back."""
        assert self.delay is not None
        m = self.delay.mic.read(t, n).astype(np.float32)
        return float(np.sqrt(np.dot(m, m) / n))

    @property
    def coupling(self) -> float:
        return self._coupling

    def reset(self) -> None:
        self.onset.reset()
        self._framer.reset()


class MicPath:
    """The always-on mic chain: resampling to the models' rate, reference-aligned AEC, then barge-in
    detection on the cleaned audio.

    `played()` is called with every speaker buffer and its DAC time, `capture()` with every mic
    buffer and its ADC time, both at the card's rate (`card_rate`); everything after the entrance
    runs at `sample_rate` (16 kHz: what WebRTC VAD, openwakeword and Whisper take), whatever the
    card's rate. Cleaned frames (at `sample_rate`) are also handed to `listeners` (wake word, ASR).
    """

    def __init__(self, sample_rate: int, aec: AecSettings = AecSettings(), vad: VadSettings = VadSettings(),
                 bargein: BargeInSettings = BargeInSettings(), model_rate: int = MODEL_RATE) -> None:
        self.card_rate = sample_rate
        self.sample_rate = rate = model_rate
        self._mic_rs = StreamResampler(sample_rate, rate)
        self._ref_rs = StreamResampler(sample_rate, rate)
        self.reference = EchoReference(rate)
        self.delay = EchoDelay(self.reference, EchoDelaySettings(enabled=aec.track_delay))
        self.echo = EchoStage(make_canceller(aec, rate), self.reference, aec.ref_lead_ms, aec.bypass_when_quiet,
                              aec.filter_ms)
        self.detector = BargeInDetector(bargein, make_vad(vad, rate),
                                        OnsetDetector(vad.onset_frames, vad.offset_frames, vad.pause_frames), rate,
                                        self.reference, vad.threshold, self.delay)
        self.listeners: list[Callable[[np.ndarray, float], None]] = []
        self._next: dict[str, float] = {}  # per stream ("output", "input"): where its next buffer starts

    def played(self, pcm: np.ndarray, dac_time: float) -> None:
        self._check_step("output", dac_time, len(pcm))
        ref, t = self._ref_rs.push(pcm, dac_time)
        if len(ref):
            self.echo.played(ref, t)

    def _check_step(self, stream: str, t: float, n: int) -> None:
        """A buffer that does not start where the stream's last one ended: its clock stepped."""
        expected = self._next.get(stream)
        if expected is not None and abs(t - expected) > 0.5 / self.card_rate:
            self.detector.timing_stepped(min(t, expected))
        self._next[stream] = t + n / self.card_rate

    def capture(self, mic: np.ndarray, adc_time: float) -> list[VadEvent]:
        self._check_step("input", adc_time, len(mic))
        events: list[VadEvent] = []
        pcm, t0 = self._mic_rs.push(mic, adc_time)
        if not len(pcm):
            return events
        self.delay.feed(pcm, t0)
        for clean, t in self.echo.process(pcm, t0):
            for listener in self.listeners:
                listener(clean, t)
            events.extend(self.detector.feed(clean, t))
        return events
