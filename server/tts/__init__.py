"""Text to speech with per-word timings: piper (neural), espeak-ng, OpenAI's speech endpoint."""

from server.tts.base import DEFAULT_SAMPLE_RATE, Synthesis, TTSBackend, TTSError
from server.tts.factory import best_available, create_tts

__all__ = ["DEFAULT_SAMPLE_RATE", "Synthesis", "TTSBackend", "TTSError", "best_available", "create_tts"]
