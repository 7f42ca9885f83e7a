"""The metrics of shared/SCENARIOS.md, computed from a run's `Trace` against the listener's truth.

Ground truth is the ear tap: which samples of which segment reached the ear and when, mapped to
words with the engine's own threshold. Context metrics (phantom, lost) come from the requests that
actually reached the LLM endpoint, with the engine's bracketed notes stripped. Words are compared
case- and punctuation-insensitively and aligned with a longest common subsequence, so repeated or
replayed words are matched once each.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from evaluation.harness.ear import words_heard
from evaluation.harness.trace import Trace, TurnRecord, item_heard
from icp import commands as C
from icp.context import strip_notes
from icp.messages import Cursor

REPLY_DISPOSITIONS = {"BRANCH", "MODIFY", "CANCEL", "NEW", "RESUME"}


def norm(word: str) -> str:
    return re.sub(r"[^\w']+", "", word.lower()).strip("'")


def norm_words(text: str) -> list[str]:
    return [w for w in (norm(t) for t in text.split()) if w]


def lcs_pairs(a: list[str], b: list[str]) -> list[tuple[int, int]]:
    """Index pairs of one longest common subsequence of a and b."""
    n, m = len(a), len(b)
    if not n or not m:
        return []
    dp = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        ai, row, nxt = a[i], dp[i], dp[i + 1]
        for j in range(m - 1, -1, -1):
            row[j] = nxt[j + 1] + 1 if ai == b[j] else max(nxt[j], row[j + 1])
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if a[i] == b[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif dp[i + 1][j] >= dp[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _keyed(words: list[str], positions: list[int]) -> set[tuple[str, int]]:
    """(word, its occurrence number) for the given positions: stable across growing transcripts."""
    seen: dict[str, int] = {}
    keys = []
    for i, w in enumerate(words):
        seen[w] = seen.get(w, 0) + 1
        keys.append((w, seen[w]))
    return {keys[i] for i in positions}


# -- the listener's heard timeline ---------------------------------------------------------------------
def heard_transcript(trace: Trace, t: float) -> list[str]:
    """Every word the listener had heard by time t, in the order it reached the ear."""
    words: list[str] = []
    for sid in trace.ear.segments_heard(t):
        seg = trace.segments.get(sid)
        if seg is None:
            continue
        n = words_heard(seg, trace.ear.heard_samples(sid, t), trace.threshold)
        words.extend(w for w in (norm(x) for x in seg.text.split()[:n]) if w)
    return words


def assistant_words(messages: list[dict[str, Any]]) -> list[str]:
    words: list[str] = []
    for m in messages:
        if m.get("role") == "assistant":
            content = m.get("content")
            words.extend(norm_words(strip_notes(content if isinstance(content, str) else "")))
    return words


# -- results -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interruption:
    turn: int
    time: float
    engine: Cursor | None
    truth: tuple[int, int] | None
    error_ms: float
    error_words: int


@dataclass(frozen=True)
class ScenarioResult:
    """`report` is exactly the documented per-scenario JSON object; the rest is for tables and plots."""

    report: dict[str, Any]
    passed: bool
    interruptions: tuple[Interruption, ...] = ()
    failures: tuple[str, ...] = field(default_factory=tuple)


def _first_interruption(trace: Trace) -> float | None:
    times = [t.start for t in trace.turns if t.agent_speaking or t.interrupted]
    return min(times) if times else None


def context_metrics(trace: Trace) -> tuple[int, int]:
    """(phantom_words, lost_words): each distinct word counted once over the run."""
    first = _first_interruption(trace)
    phantom: set[tuple[str, int]] = set()
    lost: set[tuple[str, int]] = set()
    if first is None:
        return 0, 0
    requests = sorted(trace.llm_requests, key=lambda r: r.time)
    for req in requests:
        if req.time < first:
            continue
        said = assistant_words(req.messages)
        heard = heard_transcript(trace, req.time)
        matched = {i for i, _ in lcs_pairs(said, heard)}
        phantom |= _keyed(said, [i for i in range(len(said)) if i not in matched])
    for turn in trace.turns:
        if not (turn.agent_speaking or turn.interrupted):
            continue
        nxt = next((r for r in requests if r.time >= turn.end), None)
        if nxt is None:
            continue
        heard = heard_transcript(trace, nxt.time)
        matched = {j for _, j in lcs_pairs(assistant_words(nxt.messages), heard)}
        lost |= _keyed(heard, [j for j in range(len(heard)) if j not in matched])
    return len(phantom), len(lost)


def _position(trace: Trace, cursor: tuple[int, int], end: float) -> tuple[float, int]:
    """A cursor as (samples, words) along everything that reached the ear before it."""
    seg_id, sample = cursor
    samples, words = 0, 0
    for sid in trace.ear.segments_heard(end):
        if sid >= seg_id:
            break
        samples += trace.ear.heard_samples(sid, end)
        seg = trace.segments.get(sid)
        if seg is not None:
            words += words_heard(seg, trace.ear.heard_samples(sid, end), trace.threshold)
    seg = trace.segments.get(seg_id)
    if seg is not None:
        words += words_heard(seg, sample, trace.threshold)
    return float(samples + sample), words


def cursor_errors(trace: Trace, buffer_s: float, jitter_s: float) -> list[Interruption]:
    out = []
    for turn in trace.turns:
        if not turn.interrupted:
            continue
        settle = turn.start + trace.output_latency_s + 2 * buffer_s + jitter_s + 0.01
        t_eval = min(settle, turn.end) if turn.end > turn.start else settle
        truth = trace.ear.last_heard(t_eval)
        engine = turn.interrupt_cursor
        if truth is None and engine is None:
            out.append(Interruption(turn.index + 1, turn.start, None, None, 0.0, 0))
            continue
        base = truth or (engine.segment, 0)  # type: ignore[union-attr]
        e = (engine.segment, engine.sample) if engine is not None else (base[0], 0)
        t_samples, t_words = _position(trace, truth or (base[0], 0), t_eval)
        e_samples, e_words = _position(trace, e, t_eval)
        out.append(Interruption(turn.index + 1, turn.start, engine, truth,
                                abs(e_samples - t_samples) * 1000.0 / trace.sample_rate, abs(e_words - t_words)))
    return out


def barge_in_stops(trace: Trace) -> list[float]:
    stops = []
    for turn in trace.turns:
        if not turn.agent_speaking:
            continue
        last = trace.ear.last_agent_time(turn.end)
        stops.append(max(0.0, (last - turn.start) * 1000.0) if last is not None and last >= turn.start else 0.0)
    return stops


def first_audio(trace: Trace, applied: dict[int, str | None]) -> list[float]:
    out = []
    for turn in trace.turns:
        if applied.get(turn.index) not in REPLY_DISPOSITIONS:
            continue
        later = [trace.ear.first_heard(sid) for sid in trace.segments if sid > turn.last_segment_before]
        later = [t for t in later if t is not None and t >= turn.end]
        if later:
            out.append((min(later) - turn.end) * 1000.0)
    return out


def _reply_item(trace: Trace, turn: TurnRecord) -> str | None:
    sids = sorted(sid for sid in trace.segments if sid > turn.last_segment_before)
    return trace.segments[sids[0]].item if sids else None


def _align(reply: list[str], held: list[str], near: int) -> int | None:
    """Where in `held` the reply's first words start (closest to `near`), or None."""
    for k in (6, 5, 4, 3):
        k = min(k, len(reply))
        if k == 0:
            return None
        starts = [s for s in range(len(held) - k + 1) if held[s : s + k] == reply[:k]]
        if starts:
            return min(starts, key=lambda s: abs(s - near))
    return None


def _judge(trace: Trace, entry: dict[str, Any], held_id: str | None, t: float, reply_id: str | None) -> None:
    """Did the reply to a go-back start at `held_id`'s first word not fully heard at time t?"""
    if held_id is None:
        return
    held = norm_words(trace.items.get(held_id, ("", ""))[1])
    heard = item_heard(trace, held_id, t, content_only=False)
    reply: list[str] = []
    if reply_id is not None:
        segs = trace.item_segments(reply_id)
        bridge = segs[0].bridge_words if segs else 0
        reply = norm_words(trace.items.get(reply_id, ("", ""))[1])[bridge:]
    start = _align(reply, held, heard)
    if start is None:
        entry["skipped_words"] = max(0, len(held) - heard)
        return
    entry["skipped_words"] = max(0, start - heard)
    entry["replayed_words"] = max(0, heard - start)
    if entry["skipped_words"] == 0 and entry["replayed_words"] <= 1:
        entry["verdict"] = "pass"


def _auto_resumes(trace: Trace) -> list[tuple[float, C.ResumePlanned]]:
    """Resumes nobody asked for (auto_resume after a side answer), with the time they began."""
    times = [t for t, d in trace.dispositions if d.source == "auto" and d.applied.value == "RESUME"]
    out = []
    for t in times:
        cmd = next((r for tr, r in trace.resumes if tr >= t), None)
        if cmd is not None:
            out.append((t, cmd))
    return out


def go_back(trace: Trace, applied: dict[int, str | None]) -> list[dict[str, Any]]:
    """One entry per RESUME turn, and one (`"auto": true`, numbered by the turn before it) per
    auto-resume: a held thread that came back by itself is a go-back too, judged the same way."""
    results: list[dict[str, Any]] = []
    held_stack: list[str] = []
    undoable: str | None = None  # a CANCEL/MODIFY's reply: "go back" as the next turn undoes it
    autos = _auto_resumes(trace)

    def auto_before(t: float, turn_no: int) -> None:
        while autos and autos[0][0] < t:
            when, cmd = autos.pop(0)
            entry = {"turn": turn_no, "verdict": "fail", "skipped_words": 0, "replayed_words": 0, "auto": True}
            results.append(entry)
            _judge(trace, entry, held_stack.pop() if held_stack else None, when, cmd.new_item_id)

    for turn in trace.turns:
        auto_before(turn.start, turn.index)
        kind = turn.expect or applied.get(turn.index)
        target = None
        if kind == "RESUME":
            target = undoable or (held_stack.pop() if held_stack else None)
        if kind not in (None, "ABSORB"):
            undoable = None  # the user moved on (or undid it): what was cancelled is gone
        if kind in ("CANCEL", "MODIFY") and turn.playing_item:
            undoable = turn.playing_item
        elif kind == "BRANCH" and turn.playing_item:
            held_stack.append(turn.playing_item)
        elif kind == "DROP":
            held_stack.clear()
        if kind != "RESUME":
            continue
        entry = {"turn": turn.index + 1, "verdict": "fail", "skipped_words": 0, "replayed_words": 0}
        results.append(entry)
        _judge(trace, entry, target, turn.start, _reply_item(trace, turn))
    auto_before(float("inf"), len(trace.turns))
    return results


def evaluate(trace: Trace, buffer_ms: float = 20.0, jitter_ms: float = 0.0) -> ScenarioResult:
    applied: dict[int, str | None] = {}
    for turn in trace.turns:
        d = trace.disposition_for(turn.utterance_id)
        applied[turn.index] = d.applied.value if d is not None else None
    dispositions = [{"turn": t.index + 1, "expected": t.expect, "got": applied.get(t.index)}
                    for t in trace.turns if t.expect is not None]
    phantom, lost = context_metrics(trace)
    interruptions = cursor_errors(trace, buffer_ms / 1000.0, jitter_ms / 1000.0)
    err_ms = [i.error_ms for i in interruptions]
    err_words = [float(i.error_words) for i in interruptions]
    stops = barge_in_stops(trace) if trace.mode == "audio" else []
    firsts = first_audio(trace, applied)
    backs = go_back(trace, applied)
    report = {
        "name": trace.scenario,
        "phantom_words": phantom,
        "lost_words": lost,
        "cursor_error_ms": {"max": _r(max(err_ms, default=0.0)), "p95": _r(percentile(err_ms, 95) or 0.0)},
        "cursor_error_words": {"max": int(max(err_words, default=0)), "p95": int(percentile(err_words, 95) or 0)},
        "barge_in_stop_ms": {"p50": _r(percentile(stops, 50)), "p95": _r(percentile(stops, 95))},
        "dispositions": dispositions,
        "go_back": backs,
        "first_audio_ms": {"p50": _r(percentile(firsts, 50)), "p95": _r(percentile(firsts, 95))},
        "errors": list(trace.errors),
    }
    failures = []
    failures += [f"turn {d['turn']}: expected {d['expected']}, got {d['got']}" for d in dispositions
                 if d["expected"] != d["got"]]
    failures += [f"turn {g['turn']}: go-back failed (skipped {g['skipped_words']}, replayed {g['replayed_words']})"
                 for g in backs if g["verdict"] != "pass"]
    if phantom:
        failures.append(f"{phantom} phantom words")
    if lost:
        failures.append(f"{lost} lost words")
    failures += list(trace.errors)
    return ScenarioResult(report, not failures, tuple(interruptions), tuple(failures))


def unmeasured_context(result: ScenarioResult) -> ScenarioResult:
    """`result` with phantom and lost words null (not measured: the LLM requests were not seen, as
    with `--engine external`), and no failure counted from them."""
    report = {**result.report, "phantom_words": None, "lost_words": None}
    failures = tuple(f for f in result.failures if not f.endswith((" phantom words", " lost words")))
    return ScenarioResult(report, not failures, result.interruptions, failures)


def summary(results: list[ScenarioResult]) -> dict[str, Any]:
    reports = [r.report for r in results]
    backs = [g for rep in reports for g in rep["go_back"]]
    disps = [d for rep in reports for d in rep["dispositions"]]
    correct = sum(d["expected"] == d["got"] for d in disps)
    return {
        "scenarios": len(reports),
        "go_back_pass": sum(g["verdict"] == "pass" for g in backs),
        "go_back_total": len(backs),
        "phantom_words": sum(rep["phantom_words"] for rep in reports),
        "lost_words": sum(rep["lost_words"] for rep in reports),
        "disposition_accuracy": round(correct / len(disps), 3) if disps else 1.0,
        "cursor_error_ms_max": max((rep["cursor_error_ms"]["max"] or 0.0 for rep in reports), default=0.0),
    }
