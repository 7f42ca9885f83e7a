"""A multinomial logistic regression over sparse binary features, in pure Python.

Inference is a dictionary walk and one softmax: microseconds per utterance on a Raspberry Pi,
no numpy. Training (`fit`) is plain AdaGrad SGD with L2, deterministic for a given seed, and
cheap enough (a few seconds for a few thousand examples) to run inside k-fold cross-validation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class LinearModel:
    labels: list[str]
    weights: dict[str, list[float]] = field(default_factory=dict)  # feature -> one weight per label

    def scores(self, features: Sequence[str]) -> list[float]:
        total = [0.0] * len(self.labels)
        for f in features:
            w = self.weights.get(f)
            if w is not None:
                for i, v in enumerate(w):
                    total[i] += v
        return total

    def probabilities(self, features: Sequence[str]) -> list[float]:
        return softmax(self.scores(features))

    def to_json(self) -> dict[str, object]:
        return {
            "labels": self.labels,
            "weights": {f: [round(v, 3) for v in w] for f, w in sorted(self.weights.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> LinearModel:
        labels = [str(x) for x in data["labels"]]  # type: ignore[union-attr]
        raw = data["weights"]
        if not isinstance(raw, dict):
            raise ValueError("weights must be an object")
        weights = {str(f): [float(v) for v in w] for f, w in raw.items()}
        for f, w in weights.items():
            if len(w) != len(labels):
                raise ValueError(f"feature {f!r} has {len(w)} weights for {len(labels)} labels")
        return cls(labels=labels, weights=weights)


def softmax(scores: Sequence[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    z = sum(exps)
    return [e / z for e in exps]


def fit(
    examples: Sequence[tuple[Sequence[str], str]],
    labels: Sequence[str],
    *,
    epochs: int = 30,
    learning_rate: float = 0.5,
    l2: float = 1e-3,
    min_count: int = 1,
    seed: int = 0,
) -> LinearModel:
    """Train on (features, label) pairs. Features seen fewer than `min_count` times are dropped."""
    label_index = {label: i for i, label in enumerate(labels)}
    counts: dict[str, int] = {}
    for feats, _ in examples:
        for f in set(feats):
            counts[f] = counts.get(f, 0) + 1
    keep = {f for f, c in counts.items() if c >= min_count or f == "bias"}
    data = [([f for f in dict.fromkeys(feats) if f in keep], label_index[y]) for feats, y in examples]
    k = len(labels)
    weights: dict[str, list[float]] = {f: [0.0] * k for f in keep}
    grad_sq: dict[str, list[float]] = {f: [1e-8] * k for f in keep}
    rng = random.Random(seed)
    order = list(range(len(data)))
    for _ in range(epochs):
        rng.shuffle(order)
        for idx in order:
            feats, y = data[idx]
            probs = softmax([sum(weights[f][j] for f in feats) for j in range(k)])
            for f in feats:
                w, g2 = weights[f], grad_sq[f]
                for j in range(k):
                    g = probs[j] - (1.0 if j == y else 0.0) + l2 * w[j]
                    g2[j] += g * g
                    w[j] -= learning_rate * g / math.sqrt(g2[j])
    # weights this small never change a decision; dropping them keeps the shipped file small
    pruned = {f: w for f, w in weights.items() if any(abs(v) >= 0.02 for v in w)}
    return LinearModel(labels=list(labels), weights=pruned)
