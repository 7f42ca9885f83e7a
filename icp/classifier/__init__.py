"""The fast local interruption classifier: rules + a pure-Python linear model.

`LexicalClassifier` is the default; `is_bare_stop` tells the engine whether a CANCEL carries a new
request; `StreamingClassifier` decides on ASR partials.
"""

from __future__ import annotations

from .lexical import LexicalClassifier, models_from_json, packaged_models
from .cues import is_backchannel, is_bare_stop
from .model import LinearModel
from .streaming import StreamingClassifier

__all__ = [
    "LexicalClassifier",
    "LinearModel",
    "StreamingClassifier",
    "default_classifier",
    "is_backchannel",
    "is_bare_stop",
    "models_from_json",
    "packaged_models",
]


def default_classifier() -> LexicalClassifier:
    return LexicalClassifier()
