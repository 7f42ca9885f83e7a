"""The one streaming ASR interface every backend implements.

An utterance is `start()`, any number of `feed(pcm)` calls, then `finish()`. Partials are for
barge-in classification and live feedback (they may change and are never final); the `Final` carries
word timings so the engine can line the user's words up with the audio timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from device.audio.frames import as_int16  # noqa: F401  (re-exported for the backends)

from icp.words import WordTiming

SAMPLE_RATE = 16000


@dataclass(frozen=True, slots=True)
class Partial:
    text: str  # the whole hypothesis so far, not a delta
    audio_ms: float  # audio fed since start() when this hypothesis was made


@dataclass(frozen=True, slots=True)
class Final:
    text: str
    words: tuple[WordTiming, ...]  # start/end in ms from start() of this utterance
    audio_ms: float  # total audio fed
    backend: str  # "vosk" or "faster-whisper"
    language: str


@runtime_checkable
class StreamingASR(Protocol):
    """Not thread-safe; `feed` and `finish` run the model and can block for hundreds of ms, so call
    them from a worker thread, never from the audio callback."""

    backend: str
    language: str

    def start(self, over_speech: bool = False) -> None:
        """A new utterance. `over_speech`: it interrupts the agent's own speech, where short sounds
        are mostly backchannels; a backend may use it to expect one (Whisper's prompt), or ignore it."""
        ...

    def feed(self, pcm: np.ndarray | bytes) -> list[Partial]: ...

    def finish(self) -> Final: ...


@runtime_checkable
class QuickASR(StreamingASR, Protocol):
    """A backend that can transcribe the capture so far on demand, fast (tens of ms), for the
    end-of-turn decision at a pause. Backends without it (vosk streams anyway) answer with their
    latest partial (the worker does that)."""

    def quick(self) -> Partial: ...


@runtime_checkable
class PreparedFinalASR(StreamingASR, Protocol):
    """A backend whose final pass can run before the capture ends (`prepare`), in the silence that
    will end the turn; `finish(prepared=True)` then returns it at once. Only the caller knows that
    nothing but silence came after `prepare()` (the device machine's VAD); the worker asks for it
    only then. Backends without it (vosk: its final is cheap) just `finish()`."""

    def prepare(self) -> None: ...

    def finish(self, prepared: bool = False) -> Final: ...


class NotStarted(RuntimeError):
    """feed() or finish() called outside start() ... finish()."""
