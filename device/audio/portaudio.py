"""The real sound card: PortAudio (pyaudio) in callback mode, input and output on separate streams.

Three things here come from running on a real sound server rather than on the virtual card:

- **Stream time is rebased.** PortAudio's stream clock is host-API defined; under ALSA it is the
  system's wall clock (about 1.8e9 s), which no wire field accepts and which jumps with NTP. Every
  time this backend hands out (`StreamTimes`, `time()`) is on one clock of its own: monotonic
  seconds since the backend was created, continuous across a reopen. PortAudio's ADC/DAC times are
  used as leads over its own `current_time`, so they keep their precision (the playback cursor is
  built on them) while the numbers stay small.
- **Input and output on separate streams** (`duplex = "separate"`, the default). On PulseAudio, a
  full-duplex ALSA stream delivered microphone audio about 1.8 s late (input buffered behind the
  output's latency), which made barge-in and the wake word late. Two streams, aligned by their own
  ADC/DAC timestamps on the common clock, deliver each mic buffer as soon as it is captured. The
  callback is then called twice per period: once with `frames` output frames and no mic samples,
  once with mic samples and `frames == 0` (see `device.audio.base`). `duplex = "full"` keeps the old
  single stream for cards where it behaves.
- **Stream time is smoothed.** The ADC/DAC times PortAudio computes at each callback jitter by
  several ms over PulseAudio; the times handed out are each stream's sample count on an anchor that
  moves, by whole samples, only when the stamps' mean drifts out of a dead band, and at once on an
  underrun, an overflow or a jump (`device.audio.clock`), so the echo canceller sees a fixed echo path
  and the playback cursor a continuous clock.
- **The card can vanish** (a USB card unplugged, PulseAudio or PipeWire restarted). `failure()`
  says so (a stream that stopped, or a stream with no callback for `stall_s`: 3 s by default, above the
  ~1.9 s an output stream on ALSA's pulse plugin goes silent after an underrun while it refills,
  measured in tests/test_portaudio.py); the device then reports the error
  and calls `reopen()` until the card is back. `stop()` never blocks for long: tearing down a stream
  whose server has gone can hang inside PortAudio, so it runs on a helper thread with a deadline.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from device.audio.base import AudioCallback, StreamTimes, split_result
from device.audio.clock import SampleClock

log = logging.getLogger(__name__)

TEARDOWN_TIMEOUT_S = 0.5  # a stream on a dead server may never close: give up waiting after this


@dataclass(frozen=True)
class PortAudioSettings:
    sample_rate: int = 16000
    buffer_ms: float = 20.0
    input_device: Optional[int] = None   # PortAudio device index; None = default
    output_device: Optional[int] = None
    suggested_latency_s: Optional[float] = None  # None = PortAudio's default high latency
    duplex: str = "separate"             # separate (two streams, no capture lag) | full (one stream)
    stall_s: float = 3.0                 # a stream with no callback this long (once running): card gone
    first_callback_s: float = 8.0        # PortAudio on PulseAudio can take seconds to start

    @property
    def frames_per_buffer(self) -> int:
        return int(round(self.sample_rate * self.buffer_ms / 1000))


class _Clock:
    """The backend's one clock: monotonic seconds since the backend was created."""

    def __init__(self) -> None:
        self._mono0 = time.monotonic()
        self.wall0 = time.time()  # wall-clock time of 0 on this clock (for tools that compare recordings)

    def now(self) -> float:
        return time.monotonic() - self._mono0

    def to_monotonic(self, t: float) -> float:
        """`time.monotonic()` at our time t (benchmarks compare with recordings on that clock)."""
        return self._mono0 + t


@contextlib.contextmanager
def _host_api_chatter_to_debug() -> Iterator[None]:
    """PortAudio probes every host API (ALSA, JACK, OSS) when it initialises, and their C libraries
    print a screenful to stderr each time: on every reopen attempt of a lost card that would flood
    the journal. Send fd 2 to a file meanwhile and log what came at DEBUG; lines of our own logging
    (another thread's, written in that window) go back to stderr as they were."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode(errors="replace")
    ours = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
    for line in text.splitlines():
        if ours.match(line):
            print(line, file=sys.stderr)
        elif line.strip():
            log.debug("host audio: %s", line)


class PortAudioBackend:
    """Implements `AudioBackend` over pyaudio (mono, int16)."""

    stepped = False    # PortAudio's threads call back on the card's clock
    simulated = False

    def step(self) -> None:
        raise RuntimeError("a PortAudio stream runs on its own clock; there is nothing to step")

    def __init__(self, settings: PortAudioSettings = PortAudioSettings()) -> None:
        import pyaudio  # imported here so the virtual card works where PortAudio is absent

        if settings.duplex not in ("separate", "full"):
            raise ValueError(f"[audio] duplex must be 'separate' or 'full', got {settings.duplex!r}")
        self._pyaudio_mod = pyaudio
        self.settings = settings
        self.sample_rate = settings.sample_rate
        self.frames_per_buffer = settings.frames_per_buffer
        self.clock = _Clock()
        self._pa: Optional["pyaudio.PyAudio"] = None
        self._streams: list[Any] = []
        self._callback: Optional[AudioCallback] = None
        self._lock = threading.Lock()
        self._opened_at = 0.0
        # Per stream ("output", "input" or "duplex"), on our clock: an output stream can stop while
        # the input stream keeps calling, and the speaker would then be silent with no failure seen.
        self._last_callback: dict[str, float] = {}
        self._failed: Optional[str] = None
        self.underflows = 0
        self.overflows = 0
        self.reopens = 0
        self._in_clock = SampleClock(settings.sample_rate)
        self._out_clock = SampleClock(settings.sample_rate)

    # ---- lifecycle ----
    def start(self, callback: AudioCallback) -> None:
        self._callback = callback
        self._open()

    def _open(self) -> None:
        pyaudio = self._pyaudio_mod
        s = self.settings
        with _host_api_chatter_to_debug():
            self._pa = pyaudio.PyAudio()
        common = dict(format=pyaudio.paInt16, channels=1, rate=s.sample_rate,
                      frames_per_buffer=self.frames_per_buffer)
        if s.suggested_latency_s is not None:
            log.info("suggested latency %.3f s is advisory only under pyaudio", s.suggested_latency_s)
        streams = []
        try:
            if s.duplex == "full":
                streams.append(self._pa.open(input=True, output=True, input_device_index=s.input_device,
                                             output_device_index=s.output_device,
                                             stream_callback=self._on_duplex, start=False, **common))
            else:
                streams.append(self._pa.open(output=True, output_device_index=s.output_device,
                                             stream_callback=self._on_output, start=False, **common))
                streams.append(self._pa.open(input=True, input_device_index=s.input_device,
                                             stream_callback=self._on_input, start=False, **common))
            self._in_clock.reset()
            self._out_clock.reset()
            with self._lock:
                self._streams = streams
                self._failed = None
                self._last_callback = {}
                self._opened_at = self.clock.now()
            for st in streams:
                st.start_stream()
        except Exception:
            self._teardown(streams, self._pa)
            self._pa = None
            with self._lock:
                self._streams = []
            raise

    def reopen(self) -> bool:
        """Close what is left of the streams and open them again; True if the card is back."""
        self._close()
        try:
            self._open()
        except Exception as exc:  # PortAudio raises OSError (or IOError) for a missing device/server
            log.info("sound card still unavailable: %s", exc)
            return False
        self.reopens += 1
        log.warning("sound card reopened")
        return True

    def stop(self) -> None:
        self._close()
        self._callback = None

    def _close(self) -> None:
        with self._lock:
            streams, self._streams = self._streams, []
        pa, self._pa = self._pa, None
        self._teardown(streams, pa)

    @staticmethod
    def _teardown(streams: list[Any], pa: Any) -> None:
        """Stop and close the streams and terminate PortAudio, waiting at most TEARDOWN_TIMEOUT_S."""
        if not streams and pa is None:
            return

        def work() -> None:
            for st in streams:
                try:
                    # Pa_CloseStream aborts an active stream (pending buffers discarded): quicker than
                    # Pa_StopStream, which waits for them to play.
                    st.close()
                except Exception:  # a stream whose server died may refuse: nothing more to do
                    pass
            if pa is not None:
                try:
                    pa.terminate()
                except Exception:
                    pass

        t = threading.Thread(target=work, name="portaudio-teardown", daemon=True)
        t.start()
        t.join(TEARDOWN_TIMEOUT_S)
        if t.is_alive():
            log.warning("PortAudio did not close its streams within %.1f s (sound server gone?); abandoned",
                        TEARDOWN_TIMEOUT_S)

    # ---- health ----
    def failure(self) -> Optional[str]:
        """Why the card is not working, or None while it works (polled by the device loop)."""
        with self._lock:
            if self._failed:
                return self._failed
            if not self._streams:
                return "no audio stream is open"
            now = self.clock.now()
            for st in self._streams:
                try:
                    active = st.is_active()
                except Exception as exc:
                    return f"audio stream unusable: {exc}"
                if not active:
                    return "audio stream stopped"
            if not self._last_callback:
                if now - self._opened_at > self.settings.first_callback_s:
                    return f"no audio callback within {self.settings.first_callback_s:.0f} s of opening the card"
            for name, last in self._last_callback.items():
                if now - last > self.settings.stall_s:
                    return f"no audio {name} callback for {now - last:.1f} s"
        return None

    # ---- callbacks (PortAudio's threads) ----
    def _times(self, time_info: dict, frames: int) -> StreamTimes:
        """The callback's times on our clock: PortAudio's ADC/DAC lead over its own `current_time`
        (exact, one clock) added to our clock at the callback. Measuring the offset at every callback
        makes a step of the host's clock (NTP setting the wall clock) harmless."""
        now = self.clock.now()
        cur = float(time_info.get("current_time", 0.0) or 0.0)
        adc = float(time_info.get("input_buffer_adc_time", 0.0) or 0.0)
        dac = float(time_info.get("output_buffer_dac_time", 0.0) or 0.0)
        buf = frames / self.sample_rate
        if cur <= 0.0:  # a host API that gives no times: one buffer either side of the callback
            return StreamTimes(now - buf, now, now + buf)
        # A missing ADC/DAC time (0) is estimated one buffer from the callback.
        adc_lead = adc - cur if adc > 0.0 else -buf
        dac_lead = dac - cur if dac > 0.0 else buf
        return StreamTimes(now + adc_lead, now, now + dac_lead)

    def _mark(self, status: int, stream: str) -> tuple[bool, bool]:
        """Count the callback's flags; (output underflow, input overflow)."""
        pyaudio = self._pyaudio_mod
        under, over = bool(status & pyaudio.paOutputUnderflow), bool(status & pyaudio.paInputOverflow)
        self.underflows += under
        self.overflows += over
        self._last_callback[stream] = self.clock.now()
        return under, over

    @property
    def clock_resyncs(self) -> int:
        """Discontinuities the stream clocks re-anchored on (underruns, overflows, restarts)."""
        return self._in_clock.resyncs + self._out_clock.resyncs

    def _render(self, mic: np.ndarray, frame_count: int, times: StreamTimes) -> bytes:
        cb = self._callback
        if cb is None:
            return bytes(2 * frame_count)
        try:
            pcm, _spans = split_result(cb(mic, frame_count, times), frame_count)
        except Exception:  # never let an exception kill the audio thread silently
            log.exception("audio callback failed; playing silence")
            pcm = np.zeros(frame_count, dtype=np.int16)
        return pcm.astype("<i2", copy=False).tobytes()

    def _on_duplex(self, in_data: Optional[bytes], frame_count: int, time_info: dict, status: int):
        under, over = self._mark(status, "duplex")
        mic = np.frombuffer(in_data, dtype="<i2") if in_data else np.zeros(frame_count, dtype=np.int16)
        t = self._times(time_info, frame_count)
        t = t._replace(input_adc_time=self._in_clock.stamp(t.input_adc_time, len(mic), over),
                       output_dac_time=self._out_clock.stamp(t.output_dac_time, frame_count, under))
        out = self._render(mic, frame_count, t)
        return out, self._pyaudio_mod.paContinue

    def _on_output(self, in_data: Optional[bytes], frame_count: int, time_info: dict, status: int):
        under, _ = self._mark(status, "output")
        t = self._times(time_info, frame_count)
        t = t._replace(output_dac_time=self._out_clock.stamp(t.output_dac_time, frame_count, under))
        out = self._render(np.zeros(0, dtype=np.int16), frame_count, t)
        return out, self._pyaudio_mod.paContinue

    def _on_input(self, in_data: Optional[bytes], frame_count: int, time_info: dict, status: int):
        _, over = self._mark(status, "input")
        mic = np.frombuffer(in_data, dtype="<i2") if in_data else np.zeros(frame_count, dtype=np.int16)
        cb = self._callback
        if cb is not None:
            t = self._times(time_info, frame_count)
            t = t._replace(input_adc_time=self._in_clock.stamp(t.input_adc_time, len(mic), over))
            try:
                cb(mic, 0, t)
            except Exception:
                log.exception("audio input callback failed; buffer dropped")
        return None, self._pyaudio_mod.paContinue

    def time(self) -> float:
        """Our clock now (the same clock as every `StreamTimes` this backend gives)."""
        return self.clock.now()
