"""The one interface every audio backend offers: a full-duplex callback, PortAudio style.

The backend owns the clock. Once per buffer it calls `callback(mic, frames, times)` and plays what
the callback returns. `times.output_dac_time` is the stream time at which the first returned sample
reaches the DAC: the heard cursor is built on it, never on wall-clock guesses.

A backend whose input and output run on separate streams (PortAudio by default) calls the callback
twice per period: with `frames` output frames and an empty `mic`, and with the captured `mic` and
`frames == 0` (its return value is then ignored). `times.input_adc_time` always belongs to `mic[0]`
and `times.output_dac_time` to the first returned sample; both are on the backend's clock (`time()`).

A callback may return either the speaker PCM alone or `(pcm, spans)`, where `spans` says which
segment samples the buffer carries (provenance). Backends that can observe the "ear" (the virtual
card) record it; PortAudio ignores it.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Protocol, Sequence, Union

import numpy as np


class StreamTimes(NamedTuple):
    """Stream-clock times (seconds) of one callback, as PortAudio's `time_info` gives them."""

    input_adc_time: float   # when the first mic sample of this buffer was captured
    current_time: float     # when the callback ran
    output_dac_time: float  # when the first returned speaker sample reaches the DAC


class Span(NamedTuple):
    """Samples `start .. start+count` of `segment`, placed at `offset` within one output buffer."""

    segment: int
    start: int
    count: int
    offset: int


CallbackResult = Union[np.ndarray, tuple[np.ndarray, Sequence[Span]]]
AudioCallback = Callable[[np.ndarray, int, StreamTimes], CallbackResult]


class AudioBackend(Protocol):
    """A full-duplex stream: mono int16 at `sample_rate`, `frames_per_buffer` per callback."""

    sample_rate: int
    frames_per_buffer: int
    # Driven by its caller's `step()` (the virtual card) rather than by its own clock and thread.
    stepped: bool
    # Time that does not follow the wall clock: a harness may wait for slow work (the recogniser)
    # without the audio running on, as for a user whose words take no time to recognise.
    simulated: bool

    def start(self, callback: AudioCallback) -> None: ...

    def stop(self) -> None: ...

    def time(self) -> float:
        """The stream clock now (seconds), the same clock as `StreamTimes`."""
        ...

    def failure(self) -> Optional[str]:
        """Why the card stopped working (None while it works). The device polls it."""
        ...

    def reopen(self) -> bool:
        """Try to open the card again after a failure; True once it works."""
        ...

    def step(self) -> None:
        """One buffer (backends with `stepped`; others never need it)."""
        ...


def split_result(result: CallbackResult, frames: int) -> tuple[np.ndarray, Sequence[Span]]:
    """Normalise a callback's return value to exactly `frames` int16 samples plus its spans."""
    if isinstance(result, tuple):
        pcm, spans = result
    else:
        pcm, spans = result, ()
    if pcm is None:
        return np.zeros(frames, dtype=np.int16), ()
    pcm = np.asarray(pcm, dtype=np.int16).reshape(-1)
    if len(pcm) != frames:
        fixed = np.zeros(frames, dtype=np.int16)
        n = min(frames, len(pcm))
        fixed[:n] = pcm[:n]
        pcm = fixed
    return pcm, spans
