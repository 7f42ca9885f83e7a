"""PortAudioBackend on a real clocked device: a private PulseAudio (null sink, pipe-source "mic").

This machine has no sound card, so the test starts its own PulseAudio (tests/support/pulse.py) and
PortAudio reaches it through ALSA's pulse plugin. One session (input and output on separate
streams, as the device runs them), shared by the tests:

  ~0.5 s running silence, then a 2 s 440 Hz segment queued on a `Playback` that the backend's
  callback renders; ~1.2 s later `pause()`; then ~0.6 s paused. The "mic" is fed a 1 kHz tone.

A second session makes one output callback miss its deadline and checks what follows an underrun.

Checks: callbacks at real-time rate with `output_dac_time` present, monotone and ahead of
`current_time`; the heard cursor advances at real-time rate and, after `pause()`, equals the end of
the last buffer handed over and stops moving; mic buffers carry captured audio and `input_adc_time`.

If PulseAudio or the ALSA pulse plugin is missing this FAILS (it does not skip), naming the apt
packages. Run with `-s` to see the measured figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SR = 16000
BUFFER_MS = 20.0
FPB = int(SR * BUFFER_MS / 1000)
TONE_HZ = 440.0
MIC_HZ = 1000.0
SEGMENT_S = 2.0
FIRST_CALLBACK_TIMEOUT_S = 6.0  # PortAudio 19.6 ALSA full duplex on pulse: first callback 0.1-2 s late
WARMUP_S = 0.5
PLAY_S = 1.2
PAUSED_S = 0.6
XRUN_BLOCK_S = 0.15   # one output callback blocked this long: an underrun
XRUN_RECOVERY_S = 4.0  # observed after the segment's nominal length (ALSA's pulse plugin stalls ~1.9 s)


@dataclass
class Call:
    wall: float
    frames: int
    input_adc_time: float
    current_time: float
    output_dac_time: float
    mic: np.ndarray
    spans: tuple


@dataclass
class MicCall:
    wall: float
    seen: float           # backend.time() when the callback ran: when the device has the buffer
    input_adc_time: float
    current_time: float
    mic: np.ndarray


@dataclass
class Session:
    calls: list = field(default_factory=list)     # output callbacks
    mics: list = field(default_factory=list)      # input callbacks
    playing: list = field(default_factory=list)   # (wall, stream time, heard cursor sample) while playing
    paused: list = field(default_factory=list)    # (wall, stream time, cursor) after pause()
    pause_cursor: object = None
    handed_at_pause: object = None
    calls_at_pause: int = 0
    segment_started_at: float | None = None
    in_flight_before_pause: int = 0               # handed minus heard samples just before pause()
    underflows: int = 0
    overflows: int = 0
    first_callback_after_s: float = 0.0
    steady_from: int = 5                          # first output call after the start-up stall
    blocked_at_call: int | None = None            # output call index that was made to miss its deadline
    failures: list = field(default_factory=list)  # backend.failure() alongside `playing`
    handed_end: object = None                     # playback.handed_cursor when the session stopped


def _tone(hz: float, seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return np.round(amp * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


@pytest.fixture(scope="module")
def pulse():
    from tests.support.pulse import PulseAudio, PulseUnavailable

    try:
        server = PulseAudio(sample_rate=SR, source="pipe", mic_pcm=_tone(MIC_HZ, 1.0).astype("<i2").tobytes())
        server.start()
    except PulseUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


ATTEMPTS = 3  # sessions tried for one without an underrun (a loaded CI machine can starve a callback)


@pytest.fixture(scope="module")
def session(pulse) -> Session:
    """The first of up to ATTEMPTS sessions with no output underrun.

    The checks below describe a stream running clean. An underrun caused by the machine's load (a
    callback scheduled late) is not the backend's fault, and what follows one (ALSA's pulse plugin
    prefills again and stalls ~1.9 s) is checked on purpose in `test_underrun_...` instead."""
    tried = []
    for _ in range(ATTEMPTS):
        s = _run_session(pulse)
        tried.append(s.underflows)
        if s.underflows == 0:
            if len(tried) > 1:
                print(f"\n[portaudio] sessions with underruns before a clean one: {tried[:-1]}")
            return s
    pytest.fail(f"every one of {ATTEMPTS} sessions underran (underflows {tried}): the machine is too loaded "
                "to run real-time audio, or the callback is too slow", pytrace=False)


def _run_session(pulse, block_output_s: float = 0.0) -> Session:
    """One session; `block_output_s` > 0 blocks one output callback that long PLAY_S/3 into playback."""
    try:
        import pyaudio  # noqa: F401
    except ImportError as e:  # pragma: no cover - pyaudio is a project dependency
        pytest.fail(f"pyaudio is not importable ({e}): apt-get install portaudio19-dev, then pip install pyaudio",
                    pytrace=False)
    from device.audio.portaudio import PortAudioBackend, PortAudioSettings
    from device.playback import Playback, PlaybackSettings, SegmentInfo, SegmentStarted

    s = Session()
    playback = Playback(PlaybackSettings(sample_rate=SR))
    block = {"at": None}

    def callback(mic, frames, times):
        # Input and output come in separate calls (separate streams): one part is empty.
        if len(mic):
            s.mics.append(MicCall(time.monotonic(), backend.time(), times.input_adc_time, times.current_time,
                                  mic.copy()))
        if not frames:
            return None
        if block["at"] is not None and time.monotonic() >= block["at"]:
            block["at"] = None
            s.blocked_at_call = len(s.calls)
            time.sleep(block_output_s)  # a callback that misses its deadline: the card underruns
        pcm, spans = playback.render(frames, times.output_dac_time)
        s.calls.append(Call(time.monotonic(), frames, times.input_adc_time, times.current_time,
                            times.output_dac_time, mic.copy(), tuple(spans)))
        return pcm, spans

    with pytest.MonkeyPatch.context() as mp:
        # ALSA reads its configuration when PortAudio initialises, i.e. in backend.start().
        for k, v in pulse.client_env().items():
            mp.setenv(k, v)
        backend = PortAudioBackend(PortAudioSettings(sample_rate=SR, buffer_ms=BUFFER_MS))
        t_start = time.monotonic()
        backend.start(callback)
        try:
            while not s.calls and time.monotonic() - t_start < FIRST_CALLBACK_TIMEOUT_S:
                time.sleep(0.01)
            if not s.calls:
                pytest.fail(f"no PortAudio callback within {FIRST_CALLBACK_TIMEOUT_S}s of start on PulseAudio "
                            f"{pulse.server}; pulse log tail:\n{pulse.log()[-2000:]}", pytrace=False)
            s.first_callback_after_s = s.calls[0].wall - t_start
            # PortAudio's ALSA output on PulseAudio prefills, then stalls 1-1.5 s once: wait it out.
            while time.monotonic() - t_start < FIRST_CALLBACK_TIMEOUT_S:
                recent = [c.wall for c in s.calls[-10:]]
                if len(recent) == 10 and max(np.diff(recent)) < 0.05:
                    break
                time.sleep(0.01)
            s.steady_from = len(s.calls)
            time.sleep(WARMUP_S)

            tone = _tone(TONE_HZ, SEGMENT_S)
            assert playback.add_segment(SegmentInfo(segment=1, samples=len(tone), sample_rate=SR))
            playback.add_audio(1, 0, tone, last=True)
            if block_output_s > 0:
                block["at"] = time.monotonic() + PLAY_S / 3
                end = time.monotonic() + SEGMENT_S + XRUN_RECOVERY_S
            else:
                end = time.monotonic() + PLAY_S
            while time.monotonic() < end:
                t = backend.time()
                c = playback.cursor_at(t)
                s.playing.append((time.monotonic(), t, c.sample if c is not None else 0))
                s.failures.append(backend.failure())
                time.sleep(0.01)
            if block_output_s > 0:
                return s

            t = backend.time()
            heard = playback.cursor_at(t)
            handed = playback.handed_cursor
            s.in_flight_before_pause = handed.sample - (heard.sample if heard else 0)
            s.pause_cursor = playback.pause()
            s.handed_at_pause = playback.handed_cursor
            s.calls_at_pause = len(s.calls)
            end = time.monotonic() + PAUSED_S
            while time.monotonic() < end:
                t = backend.time()
                s.paused.append((time.monotonic(), t, playback.cursor_at(t)))
                time.sleep(0.01)
        finally:
            backend.stop()
            s.underflows, s.overflows = backend.underflows, backend.overflows
            s.handed_end = playback.handed_cursor
            for e in playback.poll_events():
                if isinstance(e, SegmentStarted) and e.segment == 1:
                    s.segment_started_at = e.at
    return s


def _steady(s: Session) -> list[Call]:
    return s.calls[s.steady_from:]  # the first buffers follow the start-up stall


def test_callbacks_real_time_with_dac_time_ahead(session: Session):
    calls = _steady(session)
    assert len(calls) > 50, f"only {len(calls)} callbacks"
    wall = np.array([c.wall for c in calls])
    cur = np.array([c.current_time for c in calls])
    dac = np.array([c.output_dac_time for c in calls])
    frames = np.array([c.frames for c in calls])
    period = np.diff(wall)
    lead = dac - cur
    rate = frames[1:].sum() / (wall[-1] - wall[0])
    print(f"\n[portaudio] first callback {session.first_callback_after_s * 1000:.0f} ms after start(); "
          f"{len(calls)} steady callbacks of {FPB} frames")
    print(f"[portaudio] callback period mean {period.mean() * 1000:.2f} ms, std {period.std() * 1000:.2f} ms, "
          f"min {period.min() * 1000:.2f} ms, max {period.max() * 1000:.2f} ms; {rate:.0f} frames/s by wall clock")
    print(f"[portaudio] output_dac_time - current_time: mean {lead.mean() * 1000:.1f} ms, "
          f"min {lead.min() * 1000:.1f} ms, max {lead.max() * 1000:.1f} ms; "
          f"stream clock / wall clock {(cur[-1] - cur[0]) / (wall[-1] - wall[0]):.4f}; "
          f"underflows {session.underflows}, overflows {session.overflows}")

    assert (frames == FPB).all(), f"frame counts {sorted(set(frames.tolist()))}"
    assert abs(rate / SR - 1) < 0.03, f"callbacks deliver {rate:.0f} frames/s, expected ~{SR}"
    assert abs(period.mean() - BUFFER_MS / 1000) < 0.001, f"mean period {period.mean() * 1000:.2f} ms"
    assert period.max() < 0.2, f"a {period.max() * 1000:.0f} ms gap between callbacks"
    assert (dac > 0).all(), "output_buffer_dac_time missing (0.0) in some callbacks"
    assert (np.diff(dac) > 0).all(), "output_dac_time is not strictly increasing"
    step = np.median(np.diff(dac))
    assert abs(step - FPB / SR) < 0.0005, f"output_dac_time advances {step * 1000:.2f} ms per buffer"
    assert abs((dac[-1] - dac[0]) / ((len(dac) - 1) * FPB / SR) - 1) < 0.02, "DAC time drifts from sample count"
    assert (lead > 0).all(), f"output_dac_time not ahead of current_time (min lead {lead.min() * 1000:.1f} ms)"
    assert lead.max() < 0.5, f"DAC lead {lead.max() * 1000:.0f} ms is implausible"
    assert (np.diff(cur) >= 0).all(), "current_time went backwards"
    assert abs((cur[-1] - cur[0]) / (wall[-1] - wall[0]) - 1) < 0.02, "stream clock does not run at wall rate"
    # backend.time() is the same clock as the callback times.
    t_play = np.array([p[1] for p in session.playing])
    assert cur[0] <= t_play.min() and t_play.max() <= cur[-1] + 0.1, "backend.time() is not the stream clock"


def test_playback_cursor_real_time_and_pause(session: Session):
    play = np.array([(w, t, c) for w, t, c in session.playing if 0 < c < SR * SEGMENT_S], dtype=float)
    assert len(play) > 30, f"cursor moved in only {len(play)} samples of {len(session.playing)}"
    wall, t, cur = play[:, 0], play[:, 1], play[:, 2]
    slope_stream, icpt = np.polyfit(t, cur, 1)
    slope_wall = np.polyfit(wall, cur, 1)[0]
    resid = cur - (slope_stream * t + icpt)
    t_zero = -icpt / slope_stream  # stream time the fitted cursor leaves sample 0
    print(f"\n[portaudio] heard cursor: {slope_stream:.0f} samples per stream second, {slope_wall:.0f} per wall "
          f"second (nominal {SR}); residual max {np.abs(resid).max():.0f} samples; "
          f"fit starts {1000 * (t_zero - session.segment_started_at):+.1f} ms from SegmentStarted.at")
    print(f"[portaudio] just before pause: handed - heard = {session.in_flight_before_pause} samples "
          f"({1000 * session.in_flight_before_pause / SR:.0f} ms in flight); pause cursor {session.pause_cursor}")

    assert abs(slope_stream / SR - 1) < 0.02, f"cursor advances {slope_stream:.0f} samples/s of stream time"
    assert abs(slope_wall / SR - 1) < 0.03, f"cursor advances {slope_wall:.0f} samples/s of wall time"
    assert np.abs(resid).max() < 0.03 * SR, f"cursor wanders {np.abs(resid).max():.0f} samples off a straight line"
    assert session.segment_started_at is not None
    assert abs(t_zero - session.segment_started_at) < 0.03, "cursor does not start at the segment's DAC time"
    assert 0 < session.in_flight_before_pause < 0.5 * SR

    # pause(): the cursor is the end of the last buffer handed over...
    pc = session.pause_cursor
    assert pc is not None and pc == session.handed_at_pause
    last_handed = [c for c in session.calls if c.spans][-1]
    last_span = last_handed.spans[-1]
    assert (pc.segment, pc.sample) == (last_span.segment, last_span.start + last_span.count)
    assert 0 < pc.sample < SR * SEGMENT_S, "paused mid-segment"
    assert not any(c.spans for c in session.calls[session.calls.index(last_handed) + 1:]), "audio handed after pause"
    assert len(session.calls) > session.calls_at_pause + 10, "callbacks stopped during the pause"
    # ... the heard cursor reaches it once that buffer has played, then stops moving.
    played_out = last_handed.output_dac_time + last_handed.frames / SR
    after = [(t, c) for _, t, c in session.paused if t > played_out]
    assert len(after) > 10, "too little observation after the last handed buffer played"
    assert all(c == pc for _, c in after), f"cursor after pause: {sorted({c for _, c in after})} != {pc}"
    before = [c for _, t, c in session.paused if t < last_handed.output_dac_time]
    assert all(c.sample <= pc.sample for c in before if c is not None)


def test_underrun_heard_cursor_holds_then_resumes(pulse):
    """One output callback misses its deadline (blocked XRUN_BLOCK_S, as a loaded Pi would): the card
    underruns and ALSA's pulse plugin refills before playing again (~1.9 s of silence here). Through
    it the heard cursor must not run ahead of what was handed over (words never played must not be
    reported heard), must never go back, must resume, and must reach the segment's end: no audio lost
    or counted twice. The card is not reported failed meanwhile (the device would reopen it)."""
    s = _run_session(pulse, block_output_s=XRUN_BLOCK_S)
    assert s.blocked_at_call is not None, "playback ended before the callback could be blocked"
    gaps = np.diff([c.wall for c in s.calls[s.blocked_at_call:]])
    print(f"\n[portaudio] after a {XRUN_BLOCK_S * 1000:.0f} ms late callback: underflows {s.underflows}, "
          f"longest gap between output callbacks {gaps.max() * 1000:.0f} ms; "
          f"heard cursor at the end {s.playing[-1][2]} of {int(SR * SEGMENT_S)} samples")
    assert s.underflows >= 1, f"a {XRUN_BLOCK_S * 1000:.0f} ms late callback did not underrun: the test proves nothing"

    handed_by: list[tuple[float, int]] = []  # (wall, samples of segment 1 handed over so far)
    total = 0
    for c in s.calls:
        total += sum(sp.count for sp in c.spans if sp.segment == 1)
        handed_by.append((c.wall, total))
    walls = np.array([w for w, _ in handed_by])
    for wall, _t, cur in s.playing:
        i = int(np.searchsorted(walls, wall, side="right")) - 1
        handed = handed_by[i][1] if i >= 0 else 0
        assert cur <= handed, f"heard cursor {cur} ahead of the {handed} samples handed to the card"
    cursor = [c for _, _, c in s.playing]
    assert all(b >= a for a, b in zip(cursor, cursor[1:])), "heard cursor went back"
    assert total == SR * SEGMENT_S, f"{total} samples handed for a {SR * SEGMENT_S:.0f}-sample segment"
    assert cursor[-1] == SR * SEGMENT_S, f"heard cursor ended at {cursor[-1]}: the segment never finished"
    assert not any(s.failures), f"card reported failed during an underrun: {set(filter(None, s.failures))}"


def test_mic_frames_with_adc_time(session: Session):
    t_steady = session.calls[session.steady_from].wall
    calls = [c for c in session.mics if c.wall >= t_steady]
    assert len(calls) > 50, f"only {len(calls)} mic callbacks"
    adc = np.array([c.input_adc_time for c in calls])
    cur = np.array([c.current_time for c in calls])
    lag = cur - adc
    print(f"\n[portaudio] input_adc_time behind current_time: mean {lag.mean() * 1000:.0f} ms, "
          f"min {lag.min() * 1000:.0f} ms, max {lag.max() * 1000:.0f} ms "
          f"(first callback came {session.first_callback_after_s * 1000:.0f} ms after start)")
    # Capture delay: a full-duplex ALSA stream on PulseAudio delivered mic audio ~1.7 s after its
    # ADC time; separate input and output streams deliver it within a few buffers.
    p95 = float(np.percentile(lag, 95))
    print(f"[portaudio] capture delay (callback - ADC time) p95 {p95 * 1000:.0f} ms")
    assert p95 < 0.15, f"mic buffers reach the device {p95 * 1000:.0f} ms (p95) after capture"
    assert lag.max() < 1.0, f"a mic buffer reached the device {lag.max():.2f} s after capture"

    assert all(len(c.mic) == FPB for c in calls), "mic buffers of the wrong size"
    assert (adc > 0).all(), "input_buffer_adc_time missing (0.0)"
    assert (np.diff(adc) > 0).all(), "input_adc_time is not strictly increasing"
    step = np.median(np.diff(adc))
    assert abs(step - FPB / SR) < 0.0005, f"input_adc_time advances {step * 1000:.2f} ms per buffer"
    assert (lag >= 0).all(), "a mic buffer captured after the callback ran"
    # The buffers carry what the pipe source was fed: a 1 kHz tone.
    mic = np.concatenate([c.mic for c in calls[-50:]]).astype(np.float64)
    rms = np.sqrt(np.mean(mic ** 2))
    assert rms > 0.1 * 32767 * 0.3, f"mic is (nearly) silent: rms {rms:.0f}"
    spectrum = np.abs(np.fft.rfft(mic * np.hanning(len(mic))))
    peak_hz = np.argmax(spectrum) * SR / len(mic)
    assert abs(peak_hz - MIC_HZ) < 20, f"mic peak at {peak_hz:.0f} Hz, fed {MIC_HZ:.0f} Hz"
