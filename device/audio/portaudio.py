"""The real sound card: PortAudio (pyaudio) full duplex in callback mode.

PortAudio gives every callback `output_buffer_dac_time`, the stream time at which the first sample
returned reaches the DAC; we pass it through untouched so the playback cursor is hardware-timed.
Untestable without a sound card (this repository's CI has none): only import and construction are
exercised there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np

from device.audio.base import AudioCallback, StreamTimes, split_result

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortAudioSettings:
    sample_rate: int = 16000
    buffer_ms: float = 20.0
    input_device: Optional[int] = None   # PortAudio device index; None = default
    output_device: Optional[int] = None
    suggested_latency_s: Optional[float] = None  # None = PortAudio's default high latency

    @property
    def frames_per_buffer(self) -> int:
        return int(round(self.sample_rate * self.buffer_ms / 1000))


class PortAudioBackend:
    """Implements `AudioBackend` over one full-duplex pyaudio stream (mono, int16)."""

    def __init__(self, settings: PortAudioSettings = PortAudioSettings()) -> None:
        import pyaudio  # imported here so the virtual card works where PortAudio is absent

        self._pyaudio_mod = pyaudio
        self.settings = settings
        self.sample_rate = settings.sample_rate
        self.frames_per_buffer = settings.frames_per_buffer
        self._pa: Optional["pyaudio.PyAudio"] = None
        self._stream = None
        self._callback: Optional[AudioCallback] = None
        self.underflows = 0
        self.overflows = 0

    def start(self, callback: AudioCallback) -> None:
        pyaudio = self._pyaudio_mod
        self._callback = callback
        self._pa = pyaudio.PyAudio()
        s = self.settings
        kwargs = {}
        if s.suggested_latency_s is not None:
            # pyaudio has no direct latency knob; a host-API-specific info would go here.
            log.info("suggested latency %.3f s is advisory only under pyaudio", s.suggested_latency_s)
        self._stream = self._pa.open(
            format=pyaudio.paInt16,
            channels=1,
            rate=s.sample_rate,
            input=True,
            output=True,
            frames_per_buffer=self.frames_per_buffer,
            input_device_index=s.input_device,
            output_device_index=s.output_device,
            stream_callback=self._on_audio,
            **kwargs,
        )
        self._stream.start_stream()

    def _on_audio(self, in_data: Optional[bytes], frame_count: int, time_info: dict, status: int):
        pyaudio = self._pyaudio_mod
        if status & pyaudio.paOutputUnderflow:
            self.underflows += 1
        if status & pyaudio.paInputOverflow:
            self.overflows += 1
        mic = np.frombuffer(in_data, dtype="<i2") if in_data else np.zeros(frame_count, dtype=np.int16)
        times = StreamTimes(
            input_adc_time=float(time_info.get("input_buffer_adc_time", 0.0)),
            current_time=float(time_info.get("current_time", 0.0)),
            output_dac_time=float(time_info.get("output_buffer_dac_time", 0.0)),
        )
        cb = self._callback
        if cb is None:
            return bytes(2 * frame_count), pyaudio.paComplete
        try:
            pcm, _spans = split_result(cb(mic, frame_count, times), frame_count)
        except Exception:  # never let an exception kill the audio thread silently
            log.exception("audio callback failed; playing silence")
            pcm = np.zeros(frame_count, dtype=np.int16)
        return pcm.astype("<i2", copy=False).tobytes(), pyaudio.paContinue

    def time(self) -> float:
        return float(self._stream.get_time()) if self._stream is not None else 0.0

    def stop(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop_stream()
                self._stream.close()
            finally:
                self._stream = None
        if self._pa is not None:
            self._pa.terminate()
            self._pa = None
        self._callback = None
