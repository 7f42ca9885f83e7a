"""The live verdict: the documented report from the recordings, the wire and the LLM endpoint.

Nothing here reads the engine's or the device's memory. Per turn:
- when the user spoke: the synthesised voice located in `mic.wav` (`transcript.locate`);
- what the device did: its `interrupt` / final `utterance` on the wire;
- what the engine chose: inferred from the wire (a `flush` control names BRANCH/MODIFY/CANCEL, a
  `resume` names ABSORB; for a turn said to an idle agent: a reply whose first segment carries bridge
  words is RESUME, another reply NEW, none DROP);
- what was heard: the ear recording aligned sample-exactly against the PCM on the wire
  (`LiveEarIndex`), words by the segments' timings; cross-checked by an ASR transcript of `ear.wav`.

Word-boundary tolerance, one word at each cut: a word counts as heard for phantom words when any of
it played, and must be in the next request (lost words) only when all of it played.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from evaluation.harness.trace import Trace, item_heard
from evaluation.live.transcript import AsrWord, Located, locate, save_transcript, transcribe_ear
from evaluation.live.world import LiveRun
from evaluation.metrics import ScenarioResult, context_metrics, evaluate, norm_words, percentile
from icp import commands as C
from icp.dispositions import Disposition
from icp.messages import Action, Control, Interrupt, Segment, Utterance

TOLERANCE_NOTE = ("heard words from the ear recording aligned to the PCM on the wire; word-boundary tolerance "
                  "±1 word at each cut (a partly played word is not phantom, and not required in the next request)")


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def _ev_time(run: LiveRun, ev: Any) -> float:
    return ev.t - run.ear_t0


def _place_speech(run: LiveRun) -> dict[int, Located]:
    """Turn index -> where its words really sounded at the mic (ear time)."""
    placed: dict[int, Located] = {}
    rate = run.trace.sample_rate
    for sp in run.spoken:
        if sp.turn < 0:
            continue
        found = locate(run.mic_pcm, sp.pcm, rate, run.mic_offset, sp.started - run.ear_t0)
        if found is not None and found.score > 0.3:
            placed[sp.turn] = found
    return placed


def _fill_turns(run: LiveRun, placed: dict[int, Located]) -> None:
    trace = run.trace
    for turn in trace.turns:
        if turn.index in placed:
            turn.start, turn.end = placed[turn.index].start, placed[turn.index].end
    events = run.wire_events
    for i, turn in enumerate(trace.turns):
        nxt = trace.turns[i + 1].start if i + 1 < len(trace.turns) else float("inf")
        for ev in events:
            t = _ev_time(run, ev)
            if not (turn.start - 0.3 <= t < nxt):
                continue
            # A turn's own interrupt comes before its final: one after it is the next turn's (whose
            # start the recording may place a little after the device heard it).
            if isinstance(ev.body, Interrupt) and not turn.interrupted and turn.text_heard is None:
                turn.interrupted, turn.interrupt_cursor = True, ev.body.cursor
                turn.utterance_id = ev.body.utterance_id
            elif isinstance(ev.body, Utterance) and ev.body.final and turn.text_heard is None:
                turn.utterance_id, turn.text_heard = ev.body.utterance_id, ev.body.text
                turn.last_segment_before = max([s for s in trace.segments
                                                if _announced(run, s) <= t] or [0])


def _announced(run: LiveRun, sid: int) -> float:
    for ev in run.wire_events:
        if isinstance(ev.body, Segment) and ev.body.segment == sid:
            return _ev_time(run, ev)
    return float("inf")


def _final_at(run: LiveRun, utterance_id: str) -> float | None:
    for ev in run.wire_events:
        if isinstance(ev.body, Utterance) and ev.body.final and ev.body.utterance_id == utterance_id:
            return _ev_time(run, ev)
    return None


def _dispositions(run: LiveRun) -> list[tuple[float, C.DispositionApplied]]:
    """What the engine chose for each turn, as the wire shows it right after the turn's final utterance.

    The engine decides on the final, so only what follows it counts: a `flush` naming BRANCH, MODIFY or
    CANCEL, a `resume` naming ABSORB, or (to an idle agent) the next reply's first segment: bridge
    words -> RESUME, none -> NEW; nothing before the next turn -> DROP. A reply that started while
    the user was still speaking (the engine's auto-resume, say) is noted, not credited to the turn.
    Early ABSORB (issue 12): a `resume` naming ABSORB on one of the turn's partials, before its
    final, stands unless the final's decision says otherwise (a `flush` naming another disposition);
    the reply going on after the final is then that ABSORB, not a NEW reply.
    """
    trace, out = run.trace, []
    for i, turn in enumerate(trace.turns):
        if turn.utterance_id is None:
            continue
        tf = _final_at(run, turn.utterance_id)
        if tf is None:
            continue
        nxt = trace.turns[i + 1].start if i + 1 < len(trace.turns) else float("inf")
        got: str | None = None
        early = any(isinstance(ev.body, Control) and ev.body.action is Action.RESUME
                    and ev.body.disposition == "ABSORB" and turn.start <= _ev_time(run, ev) < tf - 0.01
                    for ev in run.wire_events)
        for ev in run.wire_events:
            t = _ev_time(run, ev)
            if isinstance(ev.body, Segment) and turn.start <= t < tf - 0.01 and ev.body.bridge_words > 0:
                trace.notes.append(f"turn {turn.index + 1}: a resumed reply (segment {ev.body.segment}) started "
                                   f"{tf - t:.1f} s before the turn's final utterance reached the engine")
            if not (tf - 0.01 <= t < nxt):
                continue
            if isinstance(ev.body, Control):
                action, reason = str(ev.body.action.value), ev.body.reason
                if action == "flush" and reason in ("BRANCH", "MODIFY", "CANCEL"):
                    got = reason
                    break
                if action == "resume" and reason == "ABSORB":
                    got = "ABSORB"
                    break
            if isinstance(ev.body, Segment):
                got = "ABSORB" if early else "RESUME" if ev.body.bridge_words > 0 else "NEW"
                break
        if got is None and early:
            got = "ABSORB"
        if got is None and not turn.interrupted:
            got = "DROP"
        if got is not None:
            d = Disposition(got)
            out.append((tf, C.DispositionApplied(turn.utterance_id, turn.text_heard or "", d, d, 0.0, "wire")))
    return out


def _items(run: LiveRun) -> dict[str, tuple[str, str]]:
    """Item -> (thread, text): the segments' text on the wire, or the LLM reply it is the start of."""
    by_item: dict[str, list[Segment]] = {}
    for sid in sorted(run.trace.segments):
        seg = run.trace.segments[sid]
        by_item.setdefault(seg.item, []).append(seg)
    out = {}
    for item, segs in by_item.items():
        text = " ".join(s.text for s in segs)
        words = norm_words(text)
        for reply in run.llm_replies:
            rw = norm_words(reply)
            if len(rw) > len(words) and rw[: len(words)] == words:
                text = reply
        out[item] = (segs[0].thread, text)
    return out


def _pause_after(run: LiveRun, start: float, by: float) -> tuple[float, float | None] | None:
    """The agent's first silence at the ear after `start` that began before `by` (the device's pause
    for the user's voice): (its start, when agent audio came back or None). None: no such silence.

    Read off the ear's runs, not from one instant: since the engine resumes a backchannel from a
    partial (issue 12), the agent plays again *while* the user is still speaking, so "the last agent
    sample before the user's voice ended" is resumed audio, not the pause."""
    for g0, g1 in run.ear.agent_gaps(start, by + 30.0, min_gap_s=0.03):
        if g0 <= start:
            continue
        if g0 > by:
            return None
        return g0, (g1 if g1 < by + 30.0 else None)
    return None


def _agent_at(run: LiveRun, t: float) -> bool:
    before = run.ear.last_agent_time(t + 0.001)
    return before is not None and t - before <= 0.1


def _absorb_gaps(run: LiveRun) -> list[float]:
    """How long the agent stayed silent at the ear for each ABSORB that reached it while it spoke (0:
    it never paused)."""
    gaps = []
    for _, d in run.trace.dispositions:
        if d.applied is not Disposition.ABSORB:
            continue
        turn = next((t for t in run.trace.turns if t.utterance_id == d.utterance_id), None)
        if turn is None or not _agent_at(run, turn.start):
            continue
        pause = _pause_after(run, turn.start, turn.end + 0.5)
        if pause is None:
            gaps.append(0.0)
        elif pause[1] is not None:
            gaps.append((pause[1] - pause[0]) * 1000.0)
    return gaps


def _dropouts(run: LiveRun) -> tuple[int, float]:
    """Silences inside a segment the device did not pause for (the segment sample runs on across them)."""
    count, total = 0, 0.0
    def _value(x: Any) -> str:
        return str(getattr(x, "value", x))

    # a pause the device announced: its interrupt, `up/state` paused, or a `paused` playback report
    paused = [_ev_time(run, e) for e in run.wire_events
              if isinstance(e.body, Interrupt)
              or (e.level == "state" and e.direction == "up" and _value(getattr(e.body, "state", "")) == "paused")
              or (e.level == "playback" and _value(getattr(e.body, "event", "")) == "paused")]
    last: dict[int, tuple[float, int]] = {}
    for s, e, seg, first in run.ear.spans():
        if seg in last:
            end_t, end_sample = last[seg]
            if first >= end_sample - 200 and s - end_t > 0.015 and not any(end_t - 0.5 <= p <= s for p in paused):
                count += 1
                total += (s - end_t) * 1000.0
        last[seg] = (e, first + int(round((e - s) * run.trace.sample_rate)))
    return count, total


def _segment_end_vs_ear(run: LiveRun, clock: list[float] | None = None) -> list[float]:
    """Report arrival minus the ear's end of each reported segment; `clock` gets ear time - stream time."""
    from icp.messages import PlaybackReport

    out = []
    for ev in run.wire_events:
        body = ev.body
        if not isinstance(body, PlaybackReport) or str(getattr(body.event, "value", body.event)) != "segment_end":
            continue
        if body.cursor is None:
            continue
        seg = run.trace.segments.get(body.cursor.segment)
        if seg is None:
            continue
        pcm = run.segment_pcm.get(seg.segment)
        if pcm is None or not len(pcm):
            continue
        import numpy as np

        loud = np.flatnonzero(np.abs(pcm) >= 200)
        k = int(loud[-1]) if loud.size else len(pcm) - 1  # the last loud sample (a quiet tail is not matched)
        rate = run.trace.sample_rate
        for s, e, sid, first in run.ear.spans():
            if sid == seg.segment and first <= k < first + round((e - s) * rate):
                end_at = s + (k - first) / rate + (seg.samples - k) / rate  # the tail played on from there
                out.append((_ev_time(run, ev) - end_at) * 1000.0)
                if clock is not None:
                    clock.append(end_at - body.stream_ms / 1000.0)
    return out


def _similar(a: str, b: str) -> bool:
    from difflib import SequenceMatcher

    return a == b or SequenceMatcher(None, a, b).ratio() >= 0.6


def _asr_check(run: LiveRun, words: list[AsrWord]) -> list[dict[str, Any]]:
    """At each interruption: words heard of the reply by the signal vs by the ASR of ear.wav."""
    out = []
    for turn in run.trace.turns:
        if not turn.interrupted or turn.playing_item is None:
            continue
        cut = run.ear.last_agent_time(turn.end)
        segs = run.trace.item_segments(turn.playing_item)
        first = min((run.ear.first_heard(s.segment) for s in segs if run.ear.first_heard(s.segment) is not None),
                    default=None)
        if cut is None or first is None:
            continue
        signal = item_heard(run.trace, turn.playing_item, cut + 0.001, content_only=False)
        item_spans = [(s, e) for s, e, sid, _ in run.ear.spans()
                      if sid in {x.segment for x in segs} and s <= cut + 0.05]
        asr = [w for w in words if w.end <= cut + 0.05
               and any(s - 0.05 <= (w.start + w.end) / 2 <= e + 0.05 for s, e in item_spans)]
        said = norm_words(run.trace.items.get(turn.playing_item, ("", ""))[1])
        heard = [x for w in asr for x in norm_words(w.w)]
        last = heard[-1] if heard else ""
        # ±1 word at the cut: the ASR's last word is the signal's last heard word or a neighbour of it
        near = [said[k] for k in (signal - 2, signal - 1, signal) if 0 <= k < len(said)]
        out.append({"turn": turn.index + 1, "signal_words": signal, "signal_last": " ".join(said[max(0, signal - 3):signal]),
                    "asr_words": len(heard), "asr_last": " ".join(w.w for w in asr[-3:]),
                    "within_tolerance": bool(last) and any(_similar(last, w) for w in near)})
    return out


def live_verdict(run: LiveRun, transcribe: bool = True) -> ScenarioResult:
    trace: Trace = run.trace
    placed = _place_speech(run)
    _fill_turns(run, placed)
    trace.items = _items(run)
    trace.dispositions = _dispositions(run)
    trace.mode = "audio"  # barge-in stop is measured (from the recordings) in this mode
    # the cursor's truth: the last agent sample at the ear before the user's voice ended (the device has
    # stopped by then), not a modelled settle time after the onset
    trace.output_latency_s = 3600.0
    result = evaluate(trace, 0.0, 0.0)
    report = dict(result.report)
    notes: list[str] = list(trace.notes)
    stops = []
    for turn in trace.turns:
        if not turn.agent_speaking:
            continue
        if not _agent_at(run, turn.start):
            notes.append(f"turn {turn.index + 1}: no agent audio at the ear when the user's voice started "
                         f"(a dropout or the reply's end): no barge-in stop for it")
            continue
        last = run.ear.last_agent_time(turn.end)
        pause = _pause_after(run, turn.start, turn.end)
        stop = pause[0] if pause is not None else last  # (an early resume plays again before turn.end)
        stops.append(max(0.0, (stop - turn.start) * 1000.0) if stop is not None else 0.0)
    report["barge_in_stop_ms"] = {"p50": _r(percentile(stops, 50)), "p95": _r(percentile(stops, 95))}
    # phantom/lost with ±1 word at each cut
    if run.requests_seen:
        generous = copy.copy(trace)
        generous.threshold = 0.0
        strict = copy.copy(trace)
        strict.threshold = 0.9999
        report["phantom_words"] = context_metrics(generous)[0]
        report["lost_words"] = context_metrics(strict)[1]
    else:
        report["phantom_words"] = report["lost_words"] = None
        notes.append(run.requests_note)
    detect = []
    for turn in trace.turns:
        if turn.interrupted:
            ev = next((e for e in run.wire_events if isinstance(e.body, Interrupt)
                       and e.body.utterance_id == turn.utterance_id), None)
            if ev is not None:
                detect.append((_ev_time(run, ev) - turn.start) * 1000.0)
    cursor_vs_ear = []
    for i in result.interruptions:
        if i.engine is not None and i.truth is not None and i.engine.segment == i.truth[0]:
            cursor_vs_ear.append({"turn": i.turn, "device_minus_ear_ms": round(
                (i.engine.sample - i.truth[1]) * 1000.0 / trace.sample_rate, 1)})
    clock: list[float] = []
    ends = _segment_end_vs_ear(run, clock)
    capture = []  # the device's speech onset, on its stream clock mapped to the ear, minus the voice at the mic
    if clock:
        offset = sorted(clock)[len(clock) // 2]
        for turn in trace.turns:
            ev = next((e for e in run.wire_events if isinstance(e.body, Interrupt)
                       and e.body.utterance_id == turn.utterance_id), None) if turn.interrupted else None
            if ev is not None:
                capture.append((ev.body.onset_ms / 1000.0 + offset - turn.start) * 1000.0)
    asr_words: list[AsrWord] = []
    if transcribe and len(run.ear_pcm):
        try:
            asr_words = transcribe_ear(run.ear_pcm, trace.sample_rate, [(s, e) for s, e, _, _ in run.ear.spans()])
            if run.record_dir is not None:
                save_transcript(run.record_dir / "ear.transcript.json", asr_words)
        except Exception as exc:  # noqa: BLE001 - the check is extra; its failure is reported, not fatal
            notes.append(f"ASR of ear.wav failed: {exc}")
    check = _asr_check(run, asr_words) if asr_words else []
    gaps = _absorb_gaps(run)
    drops, drop_ms = _dropouts(run)
    echo = run.echo
    report["absorb_gap_ms"] = {"p50": _r(percentile(gaps, 50)), "max": _r(max(gaps, default=None) if gaps else None)}
    report["live"] = {
        "tolerance": TOLERANCE_NOTE,
        "heard_by": "ear.wav aligned sample-exactly to the segments' PCM on the wire",
        "unmatched_ear_ms": round(1000.0 * run.ear.unmatched_samples / trace.sample_rate, 1),
        "capture_detect_ms": {"p50": _r(percentile(detect, 50)), "p95": _r(percentile(detect, 95)),
                              "what": "user speech start in mic.wav -> the device's interrupt on the wire"},
        "capture_delay_ms": {"p50": _r(percentile(capture, 50)), "p95": _r(percentile(capture, 95)),
                             "what": "the device's speech onset (interrupt.onset_ms, its stream clock mapped to the "
                                     "ear by its own segment_end reports) minus the user's voice start in mic.wav"},
        "dropouts": {"count": drops, "total_ms": round(drop_ms, 1),
                     "what": "silences at the ear inside a segment the device did not pause for"},
        "asr_check": check,
        "interrupt_cursor_vs_ear": cursor_vs_ear,
        "segment_end_report_vs_ear_ms": {
            "p50": _r(percentile(ends, 50)), "min": _r(min(ends, default=None) if ends else None),
            "max": _r(max(ends, default=None) if ends else None),
            "what": "arrival of the device's segment_end report minus when the segment's last sample reached "
                    "the ear: the device's idea of its output latency against the recording (negative: it "
                    "reports audio as heard before it played)"},
        "in_effect": {
            "sample_rate": trace.sample_rate, "buffer_ms": run.scenario.audio.buffer_ms,
            "device_streams": run.device_stream,
            "echo": None if echo is None or echo.module is None else {
                "requested_delay_ms": echo.requested_delay_ms, "requested_gain": echo.requested_gain,
                "loopback_volume": echo.volume, **measure_echo(run)},
            "output_latency_ms_requested": run.scenario.audio.output_latency_ms,
            "not_applied": "output_latency_ms and jitter_ms are properties of a real card: PulseAudio's null "
                           "sink has its own (see device_streams); jitter is the machine's own",
        },
        "user_speech": {str(k + 1): {"start": round(v.start, 3), "end": round(v.end, 3), "score": round(v.score, 2)}
                        for k, v in placed.items()},
        "sigterm_s": {k: (None if v is None else round(v, 2)) for k, v in run.stop_times.items()},
        "wall_s": round(run.wall_s, 1),
        "notes": notes,
    }
    failures = [f for f in result.failures if "phantom" not in f and "lost" not in f]
    if report["phantom_words"]:
        failures.append(f"{report['phantom_words']} phantom words")
    if report["lost_words"]:
        failures.append(f"{report['lost_words']} lost words")
    return dataclasses.replace(result, report=report, passed=not failures, failures=tuple(failures))


def measure_echo(run: LiveRun) -> dict[str, Any]:
    """The echo path as it really was: delay and gain of the speaker's sound in mic.wav."""
    import numpy as np
    from scipy.signal import fftconvolve

    rate = run.trace.sample_rate
    spans = [(s, e) for s, e, _, _ in run.ear.spans() if e - s > 1.0]
    if not spans:
        return {"measured_delay_ms": None, "measured_gain": None}
    s, e = spans[0]
    s = s + 0.3  # a short window: the loopback resamples adaptively, so a long one smears the match
    a, b = int(s * rate), int(min(e, s + 0.3) * rate)
    ref = run.ear_pcm[a:b].astype(np.float32)
    m0 = int((s - run.mic_offset) * rate)
    hay = run.mic_pcm[max(0, m0) : max(0, m0) + (b - a) + rate // 2].astype(np.float32)
    if len(hay) < len(ref) or not len(ref):
        return {"measured_delay_ms": None, "measured_gain": None}
    corr = fftconvolve(hay, ref[::-1], mode="valid")
    k = int(np.argmax(corr))
    win = hay[k : k + len(ref)]
    gain = float(np.dot(win, ref) / (np.dot(ref, ref) or 1.0))
    return {"measured_delay_ms": round((max(0, m0) + k - m0) * 1000.0 / rate, 1), "measured_gain": round(gain, 3)}
