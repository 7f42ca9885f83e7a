"""The default local classifier: rules first, then a linear model over lexical features."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from icp.dispositions import Classification, ClassifyRequest, Disposition

from . import rules
from .features import extract
from .model import LinearModel


@cache
def packaged_models() -> dict[str, LinearModel]:
    """The weights shipped in the package (read once; package data, not runtime I/O)."""
    text = resources.files(__package__).joinpath("weights.json").read_text(encoding="utf-8")
    return models_from_json(json.loads(text))


def models_from_json(data: dict[str, object]) -> dict[str, LinearModel]:
    out: dict[str, LinearModel] = {}
    for key in ("interruption", "navigation"):
        part = data.get(key)
        if not isinstance(part, dict):
            raise ValueError(f"weights file lacks {key!r}")
        out[key] = LinearModel.from_json(part)
    return out


class LexicalClassifier:
    """Rules + logistic regression; pure Python, microseconds per call.

    `use_rules=False` scores the bare model (for ablations); models can be injected for
    cross-validation, otherwise the packaged weights are used.
    """

    source = "local"

    def __init__(
        self,
        interruption: LinearModel | None = None,
        navigation: LinearModel | None = None,
        *,
        use_rules: bool = True,
    ) -> None:
        if interruption is None or navigation is None:
            shipped = packaged_models()
            interruption = interruption or shipped["interruption"]
            navigation = navigation or shipped["navigation"]
        self._interruption = interruption
        self._navigation = navigation
        self._use_rules = use_rules

    def model_probabilities(self, request: ClassifyRequest) -> dict[str, float]:
        """The linear model's distribution, rules aside (an ensemble blends it with another model)."""
        model = self._interruption if request.speaking else self._navigation
        probs = model.probabilities(extract(request.utterance, request.last_heard_sentence))
        return dict(zip(model.labels, probs, strict=True))

    def classify(self, request: ClassifyRequest) -> Classification:
        ruled = rules.decide(request) if self._use_rules else None
        if ruled is None and request.hint is not None:
            ruled = rules.decide(request)  # the hint short-cut is not optional
        if ruled is not None:
            disposition, confidence = ruled
            source = "hint" if confidence == 1.0 and request.hint is not None else "rules"
            return Classification(disposition, confidence, source)
        model = self._interruption if request.speaking else self._navigation
        probs = model.probabilities(extract(request.utterance, request.last_heard_sentence))
        best = max(range(len(probs)), key=probs.__getitem__)
        return Classification(Disposition(model.labels[best]), round(probs[best], 4), self.source)
