"""Streaming speech recognition for the device: one interface, two backends.

vosk is preferred (true streaming, light enough for a Pi) wherever a vosk model for the language is
at hand; faster-whisper is the fallback (the tiny.en model ships as a Python package, so English
works with no download). `create_asr` makes that choice so the device process never has to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from device.asr.base import Final, NotStarted, Partial, StreamingASR
from device.asr.vosk_asr import VoskASR, VoskSettings
from device.asr.whisper_asr import WhisperASR, WhisperSettings
from device.models import ModelNotFound, ModelSettings, vosk_model_path

__all__ = [
    "ASRSettings", "Final", "NotStarted", "Partial", "StreamingASR", "VoskASR", "VoskSettings",
    "WhisperASR", "WhisperSettings", "create_asr", "BACKENDS",
]

BACKENDS = ("auto", "vosk", "faster-whisper")


@dataclass(frozen=True)
class ASRSettings:
    language: str = "en"
    models: ModelSettings = ModelSettings()  # where vosk models per language are configured
    whisper: WhisperSettings = WhisperSettings()  # its `language` is overridden by ours


def create_asr(name: str = "auto", settings: ASRSettings = ASRSettings()) -> StreamingASR:
    """Build a backend: "vosk", "faster-whisper" (alias "whisper"), or "auto" = vosk when a vosk
    model for `settings.language` is found (see device.models.vosk_model_path), else faster-whisper.
    Loading a model takes seconds: build once at start-up and reuse (start/finish per utterance)."""
    name = {"whisper": "faster-whisper"}.get(name, name)
    if name not in BACKENDS:
        raise ValueError(f"unknown ASR backend {name!r}; choose one of {', '.join(BACKENDS)}")
    vosk_path = vosk_model_path(settings.language, settings.models) if name != "faster-whisper" else None
    if name == "vosk" and vosk_path is None:
        raise ModelNotFound(
            f"no vosk model for language {settings.language!r}: run scripts/fetch-vosk-model, or set "
            f"SEGUE_VOSK_MODEL_{settings.language.upper()} / ModelSettings.vosk_models"
        )
    if vosk_path is not None:
        return VoskASR(VoskSettings(model_path=vosk_path, language=settings.language))
    return WhisperASR(replace(settings.whisper, language=settings.language, model_settings=settings.models))
