"""How well `icp.turn_end` tells finished turns from prefixes cut at a pause, on labelled transcripts.

    python -m evaluation.turn_end_eval [FILE.jsonl ...] [--errors]

Each line is {"text": ..., "complete": bool} (optionally "ambiguous": true, "source": ...). Printed per
file: accuracy at 0.5; the device's three-way verdict with `TurnEndSettings` (short silence for
"complete", long for "incomplete"); the false-"complete" rate on incomplete prefixes, the figure that
matters because a wrong "complete" is what can cut a user off; and the time per call.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from icp.turn_end import TurnEndSettings, end_of_turn

DATA = Path(__file__).resolve().parents[1] / "data" / "turn_end"


@dataclass(frozen=True)
class Figures:
    n: int
    n_complete: int
    n_incomplete: int
    n_ambiguous: int
    accuracy: float  # at 0.5
    false_complete: float  # incomplete prefixes given the short silence (verdict "complete")
    fast_complete: float  # complete turns given the short silence
    slow_incomplete: float  # incomplete prefixes given the long silence
    slow_complete: float  # complete turns given the long silence (a slower answer, no harm)
    us_per_call: float
    errors: tuple[tuple[str, bool, float, str], ...]


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measure(rows: list[dict], settings: TurnEndSettings = TurnEndSettings()) -> Figures:
    results = [(row, end_of_turn(row["text"])) for row in rows]
    complete = [(r, t) for r, t in results if r["complete"]]
    incomplete = [(r, t) for r, t in results if not r["complete"]]
    correct = sum((t.complete >= 0.5) == r["complete"] for r, t in results)

    def share(pairs: list, verdict: str) -> float:
        return sum(settings.verdict(t) == verdict for _, t in pairs) / max(1, len(pairs))

    texts = [r["text"] for r in rows] * max(1, 20000 // max(1, len(rows)))
    start = time.perf_counter()
    for text in texts:
        end_of_turn(text)
    us = (time.perf_counter() - start) / len(texts) * 1e6
    errors = tuple(
        (r["text"], r["complete"], t.complete, t.reason) for r, t in results if (t.complete >= 0.5) != r["complete"]
    )
    return Figures(
        n=len(rows), n_complete=len(complete), n_incomplete=len(incomplete),
        n_ambiguous=sum(bool(r.get("ambiguous")) for r in rows),
        accuracy=correct / max(1, len(rows)),
        false_complete=share(incomplete, "complete"), fast_complete=share(complete, "complete"),
        slow_incomplete=share(incomplete, "incomplete"), slow_complete=share(complete, "incomplete"),
        us_per_call=us, errors=errors,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure the semantic end-of-turn detector.")
    files = [DATA / f"{name}.jsonl" for name in ("dev", "dev_whisper", "holdout", "holdout_whisper")]
    parser.add_argument("files", nargs="*", type=Path, default=files)
    parser.add_argument("--errors", action="store_true", help="list the misclassified lines")
    args = parser.parse_args(argv)
    for path in args.files:
        if not path.exists():
            continue
        f = measure(load(path))
        print(f"{path.name}: {f.n} lines ({f.n_complete} complete, {f.n_incomplete} incomplete, "
              f"{f.n_ambiguous} ambiguous)")
        print(f"  accuracy at 0.5        {f.accuracy:.1%}")
        print(f"  false 'complete'       {f.false_complete:.1%} of incomplete prefixes get the short silence")
        print(f"  short silence          {f.fast_complete:.1%} of complete turns")
        print(f"  long silence           {f.slow_incomplete:.1%} of incomplete prefixes, "
              f"{f.slow_complete:.1%} of complete turns")
        print(f"  time per call          {f.us_per_call:.1f} us")
        if args.errors:
            for text, label, p, reason in f.errors:
                print(f"    {'C' if label else 'I'} {p:.2f} {text!r}  ({reason})")


if __name__ == "__main__":
    main()
