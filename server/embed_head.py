"""The light head of the embedding classifier: multinomial logistic regression in numpy.

Inputs are the sentence embeddings of the utterance and of the last heard sentence plus the
lexical cue flags (`server.classify_embed.features`). A linear head is enough because the encoder
already puts "put a sock in it" near "be quiet"; what the head learns is which directions of that
space separate the four dispositions. Training is full-batch gradient descent with Adam and L2
(deterministic, a few seconds for two thousand examples, no scikit-learn at run time or train time);
the weights ship as JSON next to this module.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SoftmaxHead:
    labels: tuple[str, ...]
    weights: np.ndarray  # (features, labels)
    bias: np.ndarray  # (labels,)
    mean: np.ndarray  # (features,) standardisation learnt on the training data
    scale: np.ndarray  # (features,)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Rows of class probabilities for rows of features (a 1-D `x` is one row)."""
        z = ((np.atleast_2d(x) - self.mean) / self.scale) @ self.weights + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def to_json(self) -> dict[str, object]:
        return {
            "labels": list(self.labels),
            "weights": np.round(self.weights, 5).tolist(),
            "bias": np.round(self.bias, 5).tolist(),
            "mean": np.round(self.mean, 5).tolist(),
            "scale": np.round(self.scale, 5).tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> SoftmaxHead:
        labels = tuple(str(x) for x in data["labels"])  # type: ignore[attr-defined]
        weights = np.asarray(data["weights"], dtype=np.float32)
        head = cls(labels, weights, np.asarray(data["bias"], np.float32),
                   np.asarray(data["mean"], np.float32), np.asarray(data["scale"], np.float32))
        if weights.shape != (head.mean.shape[0], len(labels)) or head.bias.shape != (len(labels),):
            raise ValueError(f"head shapes do not agree: weights {weights.shape}, {len(labels)} labels")
        return head

    def save(self, path: Path, about: dict[str, object]) -> None:
        path.write_text(json.dumps({"about": about, **self.to_json()}, separators=(",", ":")) + "\n",
                        encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> SoftmaxHead:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


def fit(
    x: np.ndarray,
    y: Sequence[str],
    labels: Sequence[str],
    *,
    l2: float = 1e-2,
    steps: int = 400,
    learning_rate: float = 0.05,
    sample_weight: np.ndarray | None = None,
) -> SoftmaxHead:
    """Fit softmax regression on standardised features; classes are weighted to equal mass."""
    index = {label: i for i, label in enumerate(labels)}
    targets = np.array([index[label] for label in y])
    n, d = x.shape
    k = len(labels)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-3
    xs = (x - mean) / scale
    onehot = np.eye(k)[targets]
    counts = np.bincount(targets, minlength=k).astype(float)
    w_row = (n / (k * np.maximum(counts, 1.0)))[targets]
    if sample_weight is not None:
        w_row = w_row * sample_weight
    w_row = w_row / w_row.sum()
    weights = np.zeros((d, k))
    bias = np.zeros(k)
    m_w, v_w, m_b, v_b = (np.zeros_like(weights), np.zeros_like(weights), np.zeros(k), np.zeros(k))
    beta1, beta2 = 0.9, 0.999
    for step in range(1, steps + 1):
        z = xs @ weights + bias
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        err = (p - onehot) * w_row[:, None]
        g_w = xs.T @ err + l2 * weights
        g_b = err.sum(axis=0)
        m_w = beta1 * m_w + (1 - beta1) * g_w
        v_w = beta2 * v_w + (1 - beta2) * g_w * g_w
        m_b = beta1 * m_b + (1 - beta1) * g_b
        v_b = beta2 * v_b + (1 - beta2) * g_b * g_b
        c1, c2 = 1 - beta1**step, 1 - beta2**step
        weights -= learning_rate * (m_w / c1) / (np.sqrt(v_w / c2) + 1e-8)
        bias -= learning_rate * (m_b / c1) / (np.sqrt(v_b / c2) + 1e-8)
    return SoftmaxHead(tuple(labels), weights.astype(np.float32), bias.astype(np.float32),
                       mean.astype(np.float32), scale.astype(np.float32))
