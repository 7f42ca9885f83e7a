"""The report: the documented JSON object per strategy, and plain-text tables for people."""

from __future__ import annotations

from typing import Any

from evaluation.metrics import ScenarioResult, summary


def _summary(results: list[ScenarioResult]) -> dict[str, Any]:
    """`metrics.summary`, where phantom/lost may be null (live runs whose LLM requests were not seen)."""
    unseen = [r for r in results if r.report.get("phantom_words") is None]
    if not unseen:
        return summary(results)
    seen = [ScenarioResult({**r.report, "phantom_words": r.report["phantom_words"] or 0,
                            "lost_words": r.report["lost_words"] or 0,
                            "cursor_error_ms": {**r.report["cursor_error_ms"],
                                                "max": r.report["cursor_error_ms"]["max"] or 0.0}}, r.passed)
            for r in results]
    out = summary(seen)
    if len(unseen) == len(results):
        out["phantom_words"] = out["lost_words"] = None
    out["requests_unseen"] = len(unseen)
    return out


def strategy_report(strategy: str, mode: str, results: list[ScenarioResult]) -> dict[str, Any]:
    """Exactly the shape in shared/SCENARIOS.md ("Report"); live runs add `live` per scenario."""
    return {"strategy": strategy, "mode": mode, "scenarios": [r.report for r in results],
            "summary": _summary(results)}


def _pair(d: dict[str, Any] | None, a: str = "p50", b: str = "p95") -> str:
    if not d or d.get(a) is None:
        return "-"
    return f"{_fmt(d.get(a))} / {_fmt(d.get(b))}"


def live_table(results: list[ScenarioResult]) -> str:
    """The live table: the verdict from the recordings, per scenario (the README's live table)."""
    rows = []
    total = 0.0
    for r in results:
        rep = r.report
        live = rep.get("live", {})
        backs = rep["go_back"]
        total += live.get("wall_s", 0.0) or 0.0
        rows.append([
            rep["name"], "pass" if r.passed else "FAIL",
            f"{sum(g['verdict'] == 'pass' for g in backs)}/{len(backs)}" if backs else "-",
            _fmt(rep["phantom_words"]), _fmt(rep["lost_words"]),
            _pair(rep["barge_in_stop_ms"]),
            _pair(rep.get("absorb_gap_ms"), "p50", "max"),
            _pair(live.get("capture_delay_ms")),
            _pair(live.get("capture_detect_ms")),
            _pair(rep["first_audio_ms"]),
            str(live.get("dropouts", {}).get("count", "-")),
            _fmt(live.get("wall_s")),
        ])
    table = _table(["scenario", "verdict", "go-back", "phantom", "lost", "barge-in stop p50/p95 ms (ear)",
                    "backchannel gap p50/max ms", "capture delay p50/p95 ms", "voice→interrupt p50/p95 ms", "first audio p50/p95 ms",
                    "dropouts", "run s"], rows)
    return table + f"\n\nlive run time {total:.0f} s; word-boundary tolerance ±1 word at each cut"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if value == int(value) else f"{value:.1f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def scenario_table(results: list[ScenarioResult]) -> str:
    rows = []
    for r in results:
        rep = r.report
        backs = rep["go_back"]
        disps = rep["dispositions"]
        rows.append([
            rep["name"], "pass" if r.passed else "FAIL",
            f"{sum(g['verdict'] == 'pass' for g in backs)}/{len(backs)}" if backs else "-",
            _fmt(rep["phantom_words"]), _fmt(rep["lost_words"]),
            f"{_fmt(rep['cursor_error_ms']['max'])} ms / {_fmt(rep['cursor_error_words']['max'])} w",
            f"{sum(d['expected'] == d['got'] for d in disps)}/{len(disps)}" if disps else "-",
            _fmt(rep["first_audio_ms"]["p50"]), _fmt(rep["barge_in_stop_ms"]["p50"]),
        ])
    table = _table(["scenario", "verdict", "go-back", "phantom", "lost", "cursor err (max)", "dispositions",
                    "first audio p50 ms", "barge-in p50 ms"], rows)
    notes = [f"  {r.report['name']}: {'; '.join(r.failures)}" for r in results if r.failures]
    return table + ("\n\nwhy:\n" + "\n".join(notes) if notes else "")


def summary_line(strategy: str, mode: str, results: list[ScenarioResult]) -> str:
    s = _summary(results)
    passed = sum(r.passed for r in results)
    return (f"{strategy} ({mode}): {passed}/{s['scenarios']} scenarios pass; go-back {s['go_back_pass']}/"
            f"{s['go_back_total']}; phantom {_fmt(s['phantom_words'])}; lost {_fmt(s['lost_words'])}; dispositions "
            f"{s['disposition_accuracy']:.0%}; cursor error max {_fmt(s['cursor_error_ms_max'])} ms")


def side_by_side(runs: dict[str, list[ScenarioResult]]) -> str:
    """Strategy vs metrics, one row per strategy (the README table)."""
    rows = []
    for strategy, results in runs.items():
        s = summary(results)
        rows.append([strategy, f"{sum(r.passed for r in results)}/{s['scenarios']}",
                     f"{s['go_back_pass']}/{s['go_back_total']}", str(s["phantom_words"]), str(s["lost_words"]),
                     f"{s['disposition_accuracy']:.0%}", _fmt(s["cursor_error_ms_max"])])
    return _table(["strategy", "scenarios passed", "go-back pass", "phantom words", "lost words",
                   "disposition accuracy", "cursor error max ms"], rows)


def per_scenario_matrix(runs: dict[str, list[ScenarioResult]]) -> str:
    """Scenario x strategy verdicts, so a baseline's failures are visible where they happen."""
    strategies = list(runs)
    names = [r.report["name"] for r in next(iter(runs.values()))] if runs else []
    rows = []
    for i, name in enumerate(names):
        cells = [name]
        for strategy in strategies:
            r = runs[strategy][i]
            rep = r.report
            bits = [] if r.passed else ["FAIL"]
            if rep["go_back"] and any(g["verdict"] != "pass" for g in rep["go_back"]):
                bits.append("go-back")
            if rep["phantom_words"]:
                bits.append(f"phantom {rep['phantom_words']}")
            if rep["lost_words"]:
                bits.append(f"lost {rep['lost_words']}")
            cells.append(" ".join(bits) if bits else "pass")
        rows.append(cells)
    return _table(["scenario", *strategies], rows)
