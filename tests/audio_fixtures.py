"""Synthesised test speech: espeak-ng -> sox -> 16 kHz mono int16 numpy arrays.

Real models are tested on real (if robotic) speech rather than on recorded files, so the fixtures
need no binary assets in the repository. Results are cached on disk under a temporary directory
keyed by the text, voice and speed, because several test modules ask for the same phrases.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
_CACHE = Path(os.environ.get("SEGUE_TEST_AUDIO_CACHE", Path(tempfile.gettempdir()) / "segue-test-audio"))


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


def speech(text: str, voice: str = "en-us", speed: int = 150, pad_ms: int = 300) -> np.ndarray:
    """`text` spoken by espeak-ng as 16 kHz mono int16, with `pad_ms` of silence either side."""
    key = hashlib.sha1(f"{voice}|{speed}|{pad_ms}|{text}".encode()).hexdigest()[:16]
    path = _CACHE / f"{key}.npy"
    if path.exists():
        return np.load(path)
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
        check=True, capture_output=True,
    ).stdout
    raw = subprocess.run(
        ["sox", "-t", "wav", "-", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
         "-t", "raw", "-"],
        input=wav, check=True, capture_output=True,
    ).stdout
    pcm = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    pad = silence(pad_ms)
    out = np.concatenate([pad, pcm, pad])
    _CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, out)
    os.replace(tmp, path)
    return out


def silence(ms: int) -> np.ndarray:
    return np.zeros(SAMPLE_RATE * ms // 1000, dtype=np.int16)


def noise(ms: int, level: int = 200, seed: int = 0) -> np.ndarray:
    """Low-level white noise: a stand-in for a quiet room."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, level, SAMPLE_RATE * ms // 1000).clip(-32768, 32767).astype(np.int16)


def concat(*parts: np.ndarray) -> np.ndarray:
    return np.concatenate(parts).astype(np.int16)


def frames(pcm: np.ndarray, size: int) -> list[np.ndarray]:
    """Cut `pcm` into chunks of `size` samples (the last may be shorter), as a mic would deliver."""
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]
