"""Training and cross-validation as pure functions (examples in, model out; no files).

File reading and writing the packaged weights live in `evaluation/train_classifier.py`, so the core
stays sans-I/O. Training is cheap (seconds), so `segue-eval classify --cv K` retrains per fold.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from icp.dispositions import INTERRUPTION_DISPOSITIONS, NAVIGATION_INTENTS, Disposition

from .features import extract
from .model import LinearModel, fit

INTERRUPTION_LABELS: list[str] = ["BRANCH", "MODIFY", "CANCEL", "ABSORB"]
NAVIGATION_LABELS: list[str] = ["RESUME", "DROP", "NEW"]

# Chosen by train-on-own-data / test-on-dev and 5-fold CV; see data/classifier/README.md.
HYPERPARAMETERS: dict[str, float] = {"epochs": 20, "learning_rate": 0.3, "l2": 3e-3, "min_count": 1}


@dataclass(frozen=True, slots=True)
class Example:
    utterance: str
    context: str
    label: Disposition


def is_navigation(labels: Sequence[Disposition]) -> bool:
    """A labelled set is a navigation set when every label is a navigation intent."""
    return bool(labels) and all(label in NAVIGATION_INTENTS for label in labels)


def train_model(examples: Sequence[Example], *, seed: int = 0) -> LinearModel:
    if not examples:
        raise ValueError("no training examples")
    navigation = is_navigation([e.label for e in examples])
    labels = NAVIGATION_LABELS if navigation else INTERRUPTION_LABELS
    allowed = NAVIGATION_INTENTS if navigation else INTERRUPTION_DISPOSITIONS
    bad = {e.label for e in examples if e.label not in allowed}
    if bad:
        raise ValueError(f"cannot mix navigation and interruption labels: {sorted(bad)}")
    data = [(extract(e.utterance, e.context), str(e.label)) for e in examples]
    hp = HYPERPARAMETERS
    return fit(
        data,
        labels,
        epochs=int(hp["epochs"]),
        learning_rate=hp["learning_rate"],
        l2=hp["l2"],
        min_count=int(hp["min_count"]),
        seed=seed,
    )


def folds(n: int, k: int, *, seed: int = 0) -> list[list[int]]:
    """K disjoint index lists covering range(n), shuffled deterministically."""
    if k < 2 or k > n:
        raise ValueError(f"need 2 <= k <= n, got k={k}, n={n}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[i::k] for i in range(k)]
