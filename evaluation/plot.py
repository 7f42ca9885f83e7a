"""A run's two timelines as a picture: per thread, what was generated (sent) and what was heard.

One lane pair per conversation thread: the upper lane shows each segment from the moment the engine
sent it, for its audio length (the generated timeline running ahead); the lower lane shows exactly
when its samples reached the ear (the heard timeline). User turns are marked with what the engine
made of them.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from evaluation.harness.trace import Trace  # noqa: E402
from evaluation.metrics import ScenarioResult  # noqa: E402


def _ear_runs(trace: Trace, segment: int) -> list[tuple[float, float]]:
    runs = trace.ear._runs.get(segment)  # the index's own data, read-only
    if runs is None:
        return []
    out: list[tuple[float, float]] = []
    sr = trace.sample_rate
    for ear, count in zip(runs.ear, runs.count):
        start, end = ear / sr, (ear + count) / sr
        if out and abs(out[-1][1] - start) < 1e-9:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def plot_trace(trace: Trace, result: ScenarioResult | None, path: str | Path) -> Path:
    path = Path(path)
    threads: list[str] = []
    for seg in trace.segments.values():
        if seg.thread not in threads:
            threads.append(seg.thread)
    fig, ax = plt.subplots(figsize=(13, 1.6 + 1.1 * max(1, len(threads))))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, thread in enumerate(threads):
        y = (len(threads) - row - 1) * 2.0
        for sid, seg in sorted(trace.segments.items()):
            if seg.thread != thread:
                continue
            colour = colours[list(trace.items).index(seg.item) % len(colours)] if seg.item in trace.items else "grey"
            sent = trace.segment_sent.get(sid, 0.0)
            ax.broken_barh([(sent, seg.samples / seg.sample_rate)], (y + 1.0, 0.7), facecolors=colour, alpha=0.3,
                           edgecolor=colour)
            for start, end in _ear_runs(trace, sid):
                ax.broken_barh([(start, end - start)], (y + 0.1, 0.7), facecolors=colour)
            if seg.bridge_words:
                ax.text(sent, y + 1.75, "bridge", fontsize=7, color=colour)
        ax.text(-0.01, y + 1.35, f"{thread} generated", transform=ax.get_yaxis_transform(), ha="right", fontsize=8)
        ax.text(-0.01, y + 0.45, f"{thread} heard", transform=ax.get_yaxis_transform(), ha="right", fontsize=8)
    top = 2.0 * max(1, len(threads))
    for turn in trace.turns:
        d = trace.disposition_for(turn.utterance_id)
        label = f"{turn.say!r}\n→ {d.applied.value if d else '?'}"
        ax.axvspan(turn.start, max(turn.end, turn.start + 0.05), color="red" if turn.interrupted else "green",
                   alpha=0.15)
        ax.axvline(turn.start, color="red" if turn.interrupted else "green", lw=0.8)
        ax.text(turn.start, top + 0.1, label, fontsize=7, va="bottom", rotation=0)
    for t, r in trace.resumes:
        ax.axvline(t, color="purple", ls="--", lw=0.8)
        ax.text(t, -0.4, f"resume {r.item_id} @ word {r.resume_word}", fontsize=7, color="purple")
    ax.set_ylim(-0.6, top + 1.2)
    ax.set_yticks([])
    ax.set_xlabel("simulated time (s)")
    verdict = "" if result is None else (" — pass" if result.passed else " — FAIL: " + "; ".join(result.failures)[:120])
    ax.set_title(f"{trace.scenario} [{trace.strategy}, {trace.mode}]{verdict}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
