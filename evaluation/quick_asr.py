"""Quick (short-context) Whisper pass vs faster-whisper's full pass: latency and accuracy.

    python -m evaluation.quick_asr [--json OUT] [--repeats N]

Our own data: ~20 short user turns (backchannels, interruptions, questions) synthesised with the
user's voice (`evaluation.harness.voice.synthesize_user`: piper joe, espeak-ng for hums). For each,
the capture's first 0.3 s / 0.5 s (from the first sound) and the whole utterance are transcribed by
`WhisperASR.quick()` and by the full greedy pass (`transcribe()`, what partials cost before, 30 s
window), and the whole utterance also by the final pass (`finish()`, beam 5 with word timestamps).
Reported: wall ms per pass (median, p95 over utterances), and on whole utterances first-word
accuracy and word error rate against the text that was synthesised. The utterances were also used
while choosing the quick pass's knobs, so these figures are not held out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from evaluation.hearing import normalize, word_errors

UTTERANCES = (
    # backchannels
    "Uh huh.", "Mm hmm.", "Yeah.", "Okay.", "Right, right.", "Yeah, go on.", "I see.", "Sure.",
    # interruptions
    "Wait, what's that?", "Stop.", "Hold on, what do you mean?", "No, I meant the other one.",
    "Sorry, say that again.", "Go back to the first part.",
    # questions / requests
    "What causes the tides?", "Tell me about the moon and its phases please.", "How far away is the sun?",
    "Can you set a timer for ten minutes?", "What is the weather tomorrow?", "Why is the sky blue?",
)
PREFIXES_S = (0.3, 0.5, None)  # None: the whole utterance


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def measure(repeats: int = 1) -> dict:
    from device.asr.whisper_asr import WhisperASR, WhisperSettings
    from evaluation.harness.voice import synthesize_user

    asr = WhisperASR(WhisperSettings(partials=False))
    lat: dict[str, list[float]] = {}
    window = WhisperASR(WhisperSettings(partials=False, final_pass="window"))
    acc = {k: {"errors": 0, "words": 0, "first_ok": 0} for k in ("quick", "full", "final", "final_window")}
    rows = []
    for text in UTTERANCES:
        pcm = synthesize_user(text, 16000)
        first = int(np.flatnonzero(np.abs(pcm.astype(np.int32)) >= asr.settings.silence_peak)[0])
        row: dict = {"text": text, "audio_s": round(len(pcm) / 16000, 2)}
        for prefix in PREFIXES_S:
            x = pcm if prefix is None else pcm[:first + int(prefix * 16000)]
            tag = "all" if prefix is None else f"{prefix:.1f}s"
            asr.start()
            asr.feed(x, partials=False)
            for name, run in (("quick", lambda: asr.quick().text), ("full", lambda: asr._full_greedy(asr._audio()))):
                times, out = [], ""
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    out = run()
                    times.append((time.perf_counter() - t0) * 1000)
                lat.setdefault(f"{name}@{tag}", []).append(min(times))
                row[f"{name}@{tag}"] = out
            if prefix is None:
                t0 = time.perf_counter()
                row["final@all"] = asr.finish().text  # the default final pass ("short")
                lat.setdefault("final@all", []).append((time.perf_counter() - t0) * 1000)
                window.start()
                window.feed(x, partials=False)
                t0 = time.perf_counter()
                row["final_window@all"] = window.finish().text  # faster-whisper's 30 s window, word timestamps
                lat.setdefault("final_window@all", []).append((time.perf_counter() - t0) * 1000)
                for name in acc:
                    e, n = word_errors(text, row[f"{name}@all"])
                    acc[name]["errors"] += e
                    acc[name]["words"] += n
                    hyp = normalize(row[f"{name}@all"])
                    acc[name]["first_ok"] += bool(hyp) and hyp[0] == normalize(text)[0]
        rows.append(row)
    latency = {k: {"p50": round(statistics.median(v), 1), "p95": round(_pct(v, 0.95), 1)} for k, v in lat.items()}
    accuracy = {k: {"wer": round(a["errors"] / a["words"], 3), "first_word": f"{a['first_ok']}/{len(UTTERANCES)}"}
                for k, a in acc.items()}
    return {"data": "own: 20 piper/espeak-synthesised user turns (not held out)", "latency_ms": latency,
            "accuracy_whole": accuracy, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--repeats", type=int, default=1, help="timing repeats per pass (min taken)")
    args = ap.parse_args(argv)
    res = measure(args.repeats)
    for row in res["rows"]:
        print(f"{row['text']!r} ({row['audio_s']} s)")
        for k, v in row.items():
            if "@" in k:
                print(f"    {k:10} {v!r}")
    print("latency ms (p50 / p95 over utterances):")
    for k, v in res["latency_ms"].items():
        print(f"    {k:10} {v['p50']:7.1f} / {v['p95']:7.1f}")
    print("whole utterances:", json.dumps(res["accuracy_whole"]))
    print(res["data"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
