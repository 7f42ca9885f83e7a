"""Audio backends behind one full-duplex callback interface (see `base`)."""

from device.audio.base import AudioBackend, AudioCallback, Span, StreamTimes, split_result
from device.audio.virtual import EarSpan, EarTap, VirtualCard, VirtualCardSettings

__all__ = [
    "AudioBackend", "AudioCallback", "Span", "StreamTimes", "split_result",
    "EarSpan", "EarTap", "VirtualCard", "VirtualCardSettings",
]
