"""`segue-bench device --live`: the device's timing on a real sound server, measured from recordings.

The device (`DeviceApp` on `PortAudioBackend`, input and output on separate streams unless
`--duplex full`) runs on a private PulseAudio laid out as in live mode (`evaluation.live.room`):
its speaker is a null sink, its microphone the monitor of a second null sink ("the room") that hears
the user (`pacat`) and the speaker's echo (`module-loopback`). `parec` records the speaker's monitor
(the ear) and the room (the mic) from outside the device. All three figures compare what the device
did with what those recordings show, on one monotonic clock:

- capture delay: a sound's arrival in the mic recording -> the device's loop holding it (the mic
  buffer that carries it has been delivered). This is what a full-duplex stream made 1.7 s.
- output latency at the ear: the audio callback that handed a segment's first sample to the card ->
  that sample in the ear recording; and the error of the device's own DAC timestamp for it.
- barge-in stop at the ear: the user's first sample in the mic recording -> the last agent sample
  in the ear recording, with echo at `--echo-gain`.
- the speaker's own voice, before the trials: `echo_only_s` of agent speech with nobody talking. Read
  off the ear recording (the played samples located in it, `evaluation.live.ear`): a pause that
  resumed within `PAUSE_MAX_S` is a false pause, a longer one (or playback that never resumed) a
  false barge-in (a pause that fell in a silence of the speech cannot be seen there, so the ear may
  count fewer); the device's own counts are reported beside them as a cross-check. So
  `--track-delay both` shows what the echo delay tracker (`device.echo_delay`) buys on a real sound
  server, side by side in one run.

The recorders' own buffering (`parec --latency-msec=10`) bounds the error of each figure to about
10 ms; the report says so.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

SR = 16000
RECORDER_ERROR_MS = 10  # parec --latency-msec=10
PAUSE_MAX_S = 0.5  # a gap in the played samples that resumed within this is a (false) optimistic pause


@dataclass
class _Trial:
    handed_at: Optional[float] = None     # monotonic: the output callback that handed sample 0
    dac_claim: Optional[float] = None     # monotonic: the device's DAC time for sample 0
    ear_at: Optional[float] = None        # monotonic: sample 0 in the ear recording
    user_at: Optional[float] = None       # monotonic: user's first sample in the mic recording
    seen_at: Optional[float] = None       # monotonic: the device's loop held the user's first sample
    stop_at: Optional[float] = None       # monotonic: last agent sample in the ear recording


def _first_loud(pcm: np.ndarray, start: int, level: int = 600) -> Optional[int]:
    idx = np.flatnonzero(np.abs(pcm[start:].astype(np.int32)) > level)
    return start + int(idx[0]) if len(idx) else None


def _last_loud(pcm: np.ndarray, start: int, end: int, level: int = 600) -> Optional[int]:
    idx = np.flatnonzero(np.abs(pcm[start:end].astype(np.int32)) > level)
    return start + int(idx[-1]) if len(idx) else None


def run(trials: int = 6, echo_gain: float = 0.3, echo_delay_ms: float = 30.0, duplex: str = "separate",
        aec: str = "speex", progress=print, track_delay: bool = True, echo_only_s: float = 20.0) -> dict[str, Any]:
    from device.aec import AecSettings
    from device.app import DeviceApp
    from device.config import AudioSettings, DeviceConfig
    from evaluation.bench import AGENT_TEXTS, USER_TEXTS, synth
    from evaluation.live.room import Room
    from icp.messages import Action, AudioFrame, Control, Segment

    room = Room(sample_rate=SR).start()
    try:
        echo = room.add_echo(echo_delay_ms, echo_gain)
        ear = room.recorder(f"{Room.SINK}.monitor")
        mic = room.recorder(Room.SOURCE)
        os.environ.update(room.client_env())  # PortAudio reads ALSA's configuration when it starts
        cfg = DeviceConfig(audio=AudioSettings(backend="portaudio", sample_rate=SR, duplex=duplex),
                           aec=AecSettings(backend=aec, track_delay=track_delay))
        app = DeviceApp(cfg, connect=False)
        backend = app.backend
        handed: dict[int, float] = {}  # segment -> monotonic time of the callback that handed sample 0
        dac_claims: dict[int, float] = {}  # segment -> the device's DAC time of sample 0 (monotonic)
        seen: list[tuple[float, np.ndarray]] = []  # (monotonic, mic buffer) as the loop drained them
        original_audio = app._audio

        def audio(mic_pcm, frames, times):
            result = original_audio(mic_pcm, frames, times)
            if frames and result[1]:
                for span in result[1]:
                    if span.start == 0 and span.segment not in handed:
                        handed[span.segment] = time.monotonic()
                        dac_claims[span.segment] = backend.clock.to_monotonic(
                            times.output_dac_time + span.offset / SR)
            return result

        original_capture = app.mic.capture
        onsets: list[float] = []  # monotonic: the loop saw a speech onset

        def capture(pcm, t):
            from device.vad import SpeechOnset

            seen.append((time.monotonic(), pcm.copy()))
            events = original_capture(pcm, t)
            onsets.extend(time.monotonic() for ev in events if isinstance(ev, SpeechOnset))
            return events

        app._audio = audio  # type: ignore[method-assign]
        app.mic.capture = capture  # type: ignore[method-assign]
        app.start()
        loop = threading.Thread(target=app.serve, name="device-loop", daemon=True)
        loop.start()
        time.sleep(3.0)  # PortAudio on PulseAudio stalls once after start
        echo_report = _echo_only(app, ear, onsets, handed, echo_only_s, progress) if echo_only_s > 0 else None
        results: list[_Trial] = []
        for k in range(trials):
            tr = _Trial()
            agent = synth(AGENT_TEXTS[k % len(AGENT_TEXTS)])
            user = synth(USER_TEXTS[k % len(USER_TEXTS)], voice="en-us+f3")
            seg = 100 + k
            app._down_q.append(Segment(seg, f"i{k}", "t", "bench", (), 0, SR, len(agent), 0))
            for off in range(0, len(agent), 4000):
                app._down_q.append(AudioFrame(seg, off, agent[off:off + 4000].astype("<i2").tobytes(),
                                              off + 4000 >= len(agent)))
            ear_from = len(ear)
            mic_from = len(mic)
            t_wait = time.monotonic() + 5
            while seg not in handed and time.monotonic() < t_wait:
                time.sleep(0.005)
            time.sleep(1.5)
            player = room.play(user)
            time.sleep(user.size / SR + 1.5)
            player.stop()
            tr.handed_at = handed.get(seg)
            tr.dac_claim = dac_claims.get(seg)
            ear_pcm, mic_pcm = ear.samples(), mic.samples()
            first = _first_loud(ear_pcm, ear_from)
            tr.ear_at = ear.time_of(first) if first is not None else None
            u = _first_loud(mic_pcm, mic_from + int(1.0 * SR), level=600) if echo_gain == 0 else None
            # With echo in the room, the user's onset is found by the user's own signal: the room
            # recording minus nothing we know exactly, so take the player's stream start as bound and
            # search the mic recording from there for the user's waveform by cross-correlation.
            if u is None:
                u = _locate(mic_pcm, user, mic.sample_at(player.started - 0.2))
            tr.user_at = mic.time_of(u) if u is not None else None
            if tr.user_at is not None:
                tr.seen_at = _when_seen(seen, user, tr.user_at)
                last = _last_loud(ear_pcm, ear.sample_at(tr.user_at - 0.5), len(ear_pcm))
                tr.stop_at = ear.time_of(last) if last is not None else None
            # flush what is left of the reply for the next trial
            app._down_q.append(Control(Action.FLUSH, "bench"))
            time.sleep(1.0)
            results.append(tr)
            progress(f"  trial {k + 1}/{trials}: " + _fmt(tr))
        app.request_stop()
        loop.join(2)
        app.stop()
        report = _summary(results, echo, duplex, aec)
        report["track_delay"] = track_delay
        report["echo_only"] = echo_report
        d = app.mic.delay
        report["echo_delay_found_ms"] = round(d.delay_s * 1000, 1) if d.delay_s is not None else None
        report["clock_resyncs"] = backend.clock_resyncs
        report["output_underflows"] = backend.underflows
        return report
    finally:
        room.stop()


def _locate(rec: np.ndarray, pcm: np.ndarray, start: int) -> Optional[int]:
    """Sample in `rec` (from `start`) where `pcm` begins, by normalised cross-correlation of the first 0.5 s."""
    start = max(0, start)
    probe = pcm[: SR // 2].astype(np.float64)
    hay = rec[start : start + 8 * SR].astype(np.float64)
    if len(hay) < len(probe):
        return None
    corr = np.correlate(hay, probe, mode="valid")
    k = int(np.argmax(corr))
    norm = float(np.linalg.norm(probe) * np.linalg.norm(hay[k : k + len(probe)]))
    if norm <= 0 or corr[k] / norm < 0.5:  # not there (or drowned): no figure rather than a wrong one
        return None
    return start + k


def _when_seen(seen: list[tuple[float, np.ndarray]], pcm: np.ndarray, user_at: float) -> Optional[float]:
    """When the device's loop held the user's first sample: the user's waveform located (by
    cross-correlation, as in the recording) in the mic stream the device received; the sample arrived
    with the buffer that carries it."""
    window = [(t, b) for t, b in seen if user_at - 1.0 <= t <= user_at + 8.0]
    if not window:
        return None
    stream = np.concatenate([b for _, b in window])
    ends = np.cumsum([len(b) for _, b in window])
    k = _locate(stream, pcm, 0)
    if k is None:
        return None
    i = int(np.searchsorted(ends, k, side="right"))
    return window[min(i, len(window) - 1)][0]


def _echo_only(app: Any, ear: Any, onsets: list[float], handed: dict[int, float], seconds: float,
               progress) -> dict[str, Any]:
    """Play agent speech for `seconds` with nobody in the room; count, from the ear recording, where the
    device stopped it."""
    from evaluation.bench import AGENT_TEXTS, synth
    from evaluation.live.ear import LiveEarIndex
    from icp.messages import Action, AudioFrame, Control, Segment

    pcm = np.concatenate([synth(t) for t in AGENT_TEXTS])
    pcm = np.resize(pcm, int(seconds * SR))
    seg = 99
    app._down_q.append(Segment(seg, "echo", "t", "bench", (), 0, SR, len(pcm), 0))
    for off in range(0, len(pcm), 4000):
        app._down_q.append(AudioFrame(seg, off, pcm[off:off + 4000].astype("<i2").tobytes(), off + 4000 >= len(pcm)))
    ear_from = len(ear)
    deadline = time.monotonic() + 5
    while seg not in handed and time.monotonic() < deadline:
        time.sleep(0.005)
    start, pauses0, paused0 = time.monotonic(), app.machine.false_pauses, app.machine.false_pause_s
    n0 = len(onsets)
    time.sleep(seconds + 0.3)
    own_pauses, own_paused = app.machine.false_pauses - pauses0, app.machine.false_pause_s - paused0
    own_onsets = len([t for t in onsets[n0:] if t >= start])
    app._down_q.append(Control(Action.FLUSH, "bench"))
    time.sleep(1.0)
    index = LiveEarIndex(SR)
    index.update(ear.samples()[ear_from:], {seg: pcm})
    gaps, stopped, last = [], 0, None
    for s, e, _, first in index.spans():
        if last is not None and first >= last[1] - 200 and s - last[0] > 0.015:
            gaps.append(s - last[0])
        last = (e, first + int(round((e - s) * SR)))
    short = [g for g in gaps if g <= PAUSE_MAX_S]
    stopped = len(gaps) - len(short) + (1 if last is not None and last[1] < len(pcm) - SR // 10 else 0)
    minutes = seconds / 60.0
    progress(f"  echo only, {seconds:.0f} s, at the ear: {stopped} false barge-ins, {len(short)} false pauses "
             f"({1000 * sum(short):.0f} ms paused); the device's own count: {own_onsets} onsets, {own_pauses} pauses")
    return {"seconds": seconds, "false_bargeins": stopped, "false_pauses": len(short),
            "false_pauses_per_min": round(len(short) / minutes, 1), "false_pause_ms_total": round(1000 * sum(short), 1),
            "device_own_count": {"onsets": own_onsets, "false_pauses": own_pauses,
                                 "false_pause_ms": round(1000 * own_paused, 1)}}


def _ms(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else round(1000 * (b - a), 1)


def _fmt(tr: _Trial) -> str:
    return (f"output latency {_ms(tr.handed_at, tr.ear_at)} ms (DAC claim off by {_ms(tr.dac_claim, tr.ear_at)} ms), "
            f"capture delay {_ms(tr.user_at, tr.seen_at)} ms, "
            f"barge-in stop {_ms(tr.user_at, tr.stop_at)} ms")


def _pcts(values: list[Optional[float]]) -> dict[str, Optional[float]]:
    v = [x for x in values if x is not None]
    if not v:
        return {"p50": None, "p95": None, "n": 0}
    return {"p50": round(float(np.percentile(v, 50)), 1), "p95": round(float(np.percentile(v, 95)), 1), "n": len(v)}


def _summary(results: list[_Trial], echo: Any, duplex: str, aec: str) -> dict[str, Any]:
    return {
        "sound_server": "PulseAudio (private; null sink speaker, null-sink monitor microphone)",
        "duplex": duplex, "aec": aec,
        "echo": {"gain": echo.requested_gain, "delay_ms": echo.requested_delay_ms, "loopback_volume": echo.volume},
        "capture_delay_ms": _pcts([_ms(t.user_at, t.seen_at) for t in results]),
        "output_latency_at_ear_ms": _pcts([_ms(t.handed_at, t.ear_at) for t in results]),
        "dac_timestamp_error_ms": _pcts([_ms(t.dac_claim, t.ear_at) for t in results]),
        "bargein_stop_at_ear_ms": _pcts([_ms(t.user_at, t.stop_at) for t in results]),
        "recorder_error_ms": RECORDER_ERROR_MS,
        "trials": len(results),
    }
