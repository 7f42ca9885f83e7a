"""`segue-eval classify`: score an interruption classifier on labelled utterances.

Reads the dev-set JSONL format (`id`, `topic`, `context`, `utterance`, `label`), classifies every
line with the chosen backend and reports accuracy, per-label precision/recall, the confusion
matrix and per-utterance latency. Files whose labels are all navigation intents are classified as
navigation (speaking=False). `--cv K` and `--train-on` retrain the local model to give honest,
not-trained-on-the-test-set numbers.

`--backend local` is the best classifier that ships: the embedding one (server/classify_embed.py)
where its model loads, else the pure-Python lexical one, which `--backend lexical` names directly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icp.classifier import LexicalClassifier
from icp.classifier.train import (
    INTERRUPTION_LABELS,
    NAVIGATION_LABELS,
    Example,
    folds,
    is_navigation,
    train_model,
)
from icp.dispositions import Classifier, ClassifyRequest, Disposition

DEFAULT_EXTRA = Path(__file__).resolve().parent.parent / "data" / "classifier"


class DataError(ValueError):
    """A malformed line in a labelled file; the message names the file, line and field."""


def load_examples(path: Path) -> list[Example]:
    out: list[Example] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            out.append(_parse_line(path, lineno, line))
    if not out:
        raise DataError(f"{path}: no examples")
    return out


def _parse_line(path: Path, lineno: int, line: str) -> Example:
    where = f"{path} line {lineno}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object")
    for name in ("utterance", "context", "label"):
        if name not in obj:
            raise DataError(f"{where}: field {name!r} is missing")
        if not isinstance(obj[name], str):
            raise DataError(f"{where}: field {name!r} must be a string")
    for name in ("id", "topic"):
        if name in obj and not isinstance(obj[name], str):
            raise DataError(f"{where}: field {name!r} must be a string")
    try:
        label = Disposition(obj["label"])
    except ValueError:
        allowed = ", ".join(d.value for d in Disposition)
        raise DataError(f"{where}: field 'label' is {obj['label']!r}, not one of {allowed}") from None
    return Example(utterance=obj["utterance"], context=obj["context"], label=label)


@dataclass
class Report:
    labels: list[str]
    n: int = 0
    correct: int = 0
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)  # true -> predicted -> count
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def precision(self, label: str) -> float:
        predicted = sum(row.get(label, 0) for row in self.confusion.values())
        return self.confusion.get(label, {}).get(label, 0) / predicted if predicted else 0.0

    def recall(self, label: str) -> float:
        actual = sum(self.confusion.get(label, {}).values())
        return self.confusion.get(label, {}).get(label, 0) / actual if actual else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index]

    def to_json(self) -> dict[str, Any]:
        return {
            "accuracy": round(self.accuracy, 4),
            "per_label": {
                label: {"precision": round(self.precision(label), 4), "recall": round(self.recall(label), 4)}
                for label in self.labels
            },
            "confusion": {t: {p: self.confusion.get(t, {}).get(p, 0) for p in self.labels} for t in self.labels},
            "latency_ms": {"p50": round(self.percentile_ms(0.5), 3), "p95": round(self.percentile_ms(0.95), 3)},
            "n": self.n,
        }


def evaluate(examples: Sequence[Example], classifier: Classifier) -> Report:
    """Classify every example (speaking decided by the file's label set) and tally the results."""
    navigation = is_navigation([e.label for e in examples])
    labels = list(NAVIGATION_LABELS if navigation else INTERRUPTION_LABELS)
    extra = sorted({str(e.label) for e in examples} - set(labels))
    report = Report(labels=labels + extra)
    for example in examples:
        request = ClassifyRequest(example.utterance, example.context, speaking=not navigation)
        start = time.perf_counter()
        result = classifier.classify(request)
        report.latencies_ms.append((time.perf_counter() - start) * 1000.0)
        truth, guess = str(example.label), str(result.disposition)
        if guess not in report.labels:
            report.labels.append(guess)
        report.confusion.setdefault(truth, {})
        report.confusion[truth][guess] = report.confusion[truth].get(guess, 0) + 1
        report.n += 1
        report.correct += truth == guess
    return report


def _local_from(training: Sequence[Example], navigation: bool, embed: bool = False) -> Classifier:
    """A fresh classifier trained on `training` only: the embedding one when `embed` (and the model
    loads), else the lexical one."""
    model = train_model(training)
    if navigation:
        return LexicalClassifier(navigation=model)
    if embed:
        encoder = _encoder()
        if encoder is not None:
            from .embed_train import train_classifier

            return train_classifier(training, encoder)
    return LexicalClassifier(interruption=model)


def _encoder() -> Any:
    try:
        from server.classify_embed import ModelUnavailable, SentenceEncoder
    except ImportError:
        return None
    try:
        return SentenceEncoder()
    except ModelUnavailable:
        return None


def cross_validate(
    examples: Sequence[Example], k: int, extra: Sequence[Example] = (), *, seed: int = 0, embed: bool = False
) -> list[float]:
    """Per-fold accuracy: train on `extra` plus the other folds, test on the held-out fold."""
    navigation = is_navigation([e.label for e in examples])
    accuracies: list[float] = []
    for held in folds(len(examples), k, seed=seed):
        held_set = set(held)
        training = [*extra, *(e for i, e in enumerate(examples) if i not in held_set)]
        test = [examples[i] for i in held]
        accuracies.append(evaluate(test, _local_from(training, navigation, embed)).accuracy)
    return accuracies


def train_and_test(training: Sequence[Example], test: Sequence[Example], *, embed: bool = False) -> Report:
    """Train a fresh local model on `training` only and score it on `test` (the honest number)."""
    return evaluate(test, _local_from(training, is_navigation([e.label for e in test]), embed))


def local_classifier() -> Classifier:
    """The best local classifier here: embedding + lexical, or lexical alone without the model."""
    try:
        from server.classify_embed import best_local_classifier
    except ImportError:  # the server extra (numpy, onnxruntime) is not installed
        return LexicalClassifier()
    return best_local_classifier()


def build_classifier(backend: str, base_url: str | None, model: str | None, timeout: float) -> Classifier:
    if backend == "local":
        return local_classifier()
    if backend == "lexical":
        return LexicalClassifier()
    from server.classify_llm import make_classifier  # needs the server extra (openai)

    if not base_url:
        raise SystemExit(f"--backend {backend} needs --llm-base-url (or SEGUE_LLM_BASE_URL)")
    return make_classifier(backend, base_url=base_url, model=model, timeout=timeout)


def format_report(report: Report, title: str) -> str:
    lines = [f"{title}: n={report.n}  accuracy={report.accuracy:.3f}"]
    lines.append(f"  {'label':<8} {'precision':>9} {'recall':>7} {'support':>8}")
    for label in report.labels:
        support = sum(report.confusion.get(label, {}).values())
        lines.append(
            f"  {label:<8} {report.precision(label):>9.3f} {report.recall(label):>7.3f} {support:>8}"
        )
    lines.append("  confusion (rows: true, columns: predicted)")
    lines.append("  " + " " * 8 + "".join(f"{p:>8}" for p in report.labels))
    for t in report.labels:
        row = report.confusion.get(t, {})
        lines.append(f"  {t:<8}" + "".join(f"{row.get(p, 0):>8}" for p in report.labels))
    lines.append(
        f"  latency per utterance: p50={report.percentile_ms(0.5):.3f} ms  "
        f"p95={report.percentile_ms(0.95):.3f} ms"
    )
    return "\n".join(lines)


def _extra_for(examples: Sequence[Example], paths: Sequence[Path], exclude: Path) -> list[Example]:
    """Training data of the same kind (interruption or navigation) as `examples`, minus FILE."""
    navigation = is_navigation([e.label for e in examples])
    out: list[Example] = []
    for path in paths:
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        for file in files:
            if file.resolve() == exclude.resolve():
                continue
            loaded = load_examples(file)
            if is_navigation([e.label for e in loaded]) == navigation:
                out.extend(loaded)
    return out


def run(args: argparse.Namespace) -> int:
    try:
        examples = load_examples(args.file)
        extra = _extra_for(examples, args.train_data, args.file) if (args.cv or args.train_on) else []
        train_on = [e for p in (args.train_on or []) for e in load_examples(p)]
    except (DataError, OSError) as exc:
        print(f"segue-eval classify: {exc}", file=sys.stderr)
        return 2
    classifier = build_classifier(args.backend, args.llm_base_url, args.llm_model, args.llm_timeout)
    report = evaluate(examples, classifier)
    print(format_report(report, f"{args.file} [{args.backend}]"))
    if args.train_on:
        honest = train_and_test(train_on, examples, embed=args.backend == "local")
        print(format_report(honest, f"trained only on {', '.join(map(str, args.train_on))}"))
    if args.cv:
        for name, pool in (("file only", []), ("file + own training data", extra)):
            if name != "file only" and not pool:
                continue
            scores = cross_validate(examples, args.cv, pool, embed=args.backend == "local")
            mean = sum(scores) / len(scores)
            print(f"{args.cv}-fold CV ({name}): accuracy={mean:.3f}  folds={[round(s, 3) for s in scores]}")
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    import os

    parser = subparsers.add_parser(
        "classify",
        help="score the interruption classifier on a labelled JSONL file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, metavar="FILE.jsonl")
    parser.add_argument("--backend", choices=("local", "lexical", "llm", "auto"), default="local",
                        help="local: the best that ships (embedding, lexical fallback); lexical: pure Python")
    parser.add_argument("--llm-base-url", default=os.environ.get("SEGUE_LLM_BASE_URL"))
    parser.add_argument("--llm-model", default=os.environ.get("SEGUE_LLM_MODEL"))
    parser.add_argument("--llm-timeout", type=float, default=5.0, help="seconds per LLM call")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the metrics as JSON")
    parser.add_argument("--cv", type=int, metavar="K", help="also print K-fold cross-validated accuracy")
    parser.add_argument(
        "--train-on",
        type=Path,
        nargs="+",
        metavar="TRAIN.jsonl",
        help="also train a fresh model on these files only and score FILE with it",
    )
    parser.add_argument(
        "--train-data",
        type=Path,
        nargs="*",
        default=[DEFAULT_EXTRA],
        help="extra training files/directories for --cv (default: data/classifier/)",
    )
    parser.set_defaults(func=run)
    return parser
