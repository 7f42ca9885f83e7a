"""Measure the LLM classifier and choose `auto`'s threshold from measurements.

    python -m evaluation.llm_threshold FILE.jsonl --llm-base-url http://127.0.0.1:PORT/v1 --llm-model M

Asks the LLM once per utterance (the answer, its confidence, failures and latency are recorded),
classifies locally once, then replays `auto` for every threshold: below the threshold the LLM's
answer replaces the local one (a failed call keeps the local one, as `AutoClassifier` does). Prints
accuracy and the share of utterances sent to the LLM per threshold; `--json` keeps the raw records.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from icp.dispositions import ClassifyRequest

from .classify import load_examples, local_classifier

THRESHOLDS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.01)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--llm-base-url", required=True)
    parser.add_argument("--llm-model", default="default")
    parser.add_argument("--llm-timeout", type=float, default=10.0)
    parser.add_argument("--limit", type=int, default=0, help="first N per label (0: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from server.classify_llm import LLMClassifier

    examples = load_examples(args.file)
    if args.limit:
        kept: list = []
        for e in examples:
            if sum(k.label == e.label for k in kept) < args.limit:
                kept.append(e)
        examples = kept
    local = local_classifier()
    llm = LLMClassifier(base_url=args.llm_base_url, model=args.llm_model, fallback=local, timeout=args.llm_timeout)
    records = []
    for e in examples:
        request = ClassifyRequest(e.utterance, e.context, speaking=True)
        mine = local.classify(request)
        start = time.perf_counter()
        try:
            answer = llm.ask(request)
            llm_label, llm_conf, error = str(answer.disposition), answer.confidence, None
        except Exception as exc:  # noqa: BLE001 - any failure is what auto falls back on
            llm_label, llm_conf, error = None, None, f"{type(exc).__name__}: {exc}"[:120]
        ms = (time.perf_counter() - start) * 1000.0
        records.append({"utterance": e.utterance, "label": str(e.label), "local": str(mine.disposition),
                        "local_confidence": mine.confidence, "local_source": mine.source, "llm": llm_label,
                        "llm_confidence": llm_conf, "llm_error": error, "llm_ms": round(ms, 1)})
    n = len(records)
    failures = sum(r["llm"] is None for r in records)
    llm_only = sum(r["llm"] == r["label"] if r["llm"] else r["local"] == r["label"] for r in records) / n
    latencies = sorted(r["llm_ms"] for r in records)
    print(f"{args.file}: n={n}  llm failures={failures}  llm (fallback local on failure) accuracy={llm_only:.3f}")
    print(f"  llm latency per call: p50={latencies[n // 2]:.0f} ms  p95={latencies[min(n - 1, int(0.95 * n))]:.0f} ms")
    print(f"  {'threshold':>9} {'asked':>6} {'accuracy':>8}")
    for t in THRESHOLDS:
        correct = asked = 0
        for r in records:
            use_llm = r["local_confidence"] < t and r["local_source"] != "hint" and r["llm"] is not None
            asked += r["local_confidence"] < t
            correct += (r["llm"] if use_llm else r["local"]) == r["label"]
        print(f"  {t:>9.2f} {asked / n:>6.2f} {correct / n:>8.3f}")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
