"""The private PulseAudio for tests now lives in `evaluation.live.pulse` (live mode uses it too)."""

from evaluation.live.pulse import (  # noqa: F401 - re-exported for tests/test_portaudio.py
    APT_PACKAGES, INSTALL_HINT, PACTL, PULSEAUDIO, PulseAudio, PulseUnavailable, missing_requirements,
)

__all__ = ["APT_PACKAGES", "INSTALL_HINT", "PACTL", "PULSEAUDIO", "PulseAudio", "PulseUnavailable",
           "missing_requirements"]
