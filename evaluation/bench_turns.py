"""`segue-bench turns`: segue's turn taking beside a baseline configured like the common stacks, in one run.

    segue-bench turns [--trials N] [--columns segue,baseline] [--kinds question,bargein,...] [--seed S]
                      [--latency-ms MS] [--echo-gain G] [--json OUT] [--record DIR]

Both columns hear the same synthesised user speech (piper joe, seeded phrase choice and timing)
through the real device and the real engine (`evaluation.turns.world`: `ServerApp` + `DeviceApp` in
one process through a real Mosquitto, the device's own resampler, speex echo canceller, webrtc VAD,
state machine, playback and faster-whisper recogniser on its worker thread), in REAL TIME: the card
is paced at 1x the wall clock and simulated time never waits for the recogniser, so Whisper's,
piper's and the engine's compute time all count. The two columns' worlds are open side by side and
take turns trial by trial (the waiting one's card, the clock of its engine too, stands still), so a
change of load on the machine falls on both columns alike.

The LLM is the harness's scripted OpenAI-compatible server (`evaluation.openai_server`) with a fixed
first-token delay (default 50 ms) and then one token-like chunk every `--chunk-delay` (default 20 ms,
50 tokens/s); the agent's voice is piper on the server (`[tts] backend = "piper"`).

The virtual sound card (`device.audio.virtual`) models: a sample-exact DAC timeline; a fixed output
latency from the audio callback's handover to the ear (default 100 ms, `--latency-ms`); 20 ms buffers;
an acoustic echo of what reached the ear at the mic (gain 0.3, `--echo-gain`; delay 20 ms), mixed with
the user's speech. It does not model: room reverberation or noise, loudspeaker/microphone frequency
response or non-linearity, clock drift between input and output, or callback jitter (0 here).

Columns. "segue": the defaults. "baseline": Pipecat's and LiveKit's published defaults — Pipecat
`VADParams(start_secs=0.2, stop_secs=0.8)` (VAD start 0.2 s -> 10 onset frames of 20 ms; end-of-turn
silence 0.8 s), LiveKit Agents `min_interruption_duration=0.5` s; no early ABSORB, no optimistic
pause, no semantic end of turn, no speculative generation, Whisper partials as before, and the
first audio segment is the first sentence (see `evaluation.turns.columns`). Knobs that do not exist
in this checkout are listed as "not applied" and the column runs without them.

Metrics (all on the card's clock, from the ear tap and the mic; `evaluation.turns.trials`):

- bargein_stop_over_latency_ms: while the agent speaks the user interrupts; (last agent sample at the
  ear after the user's first sample) - (user's first sample) - output latency. A trial in which the
  agent never stopped (a baseline "Stop." shorter than the minimum interruption) is counted in
  `missed`, not in the percentiles.
- absorb_gap_ms: while the agent speaks the user backchannels; how long the reply stays silent at
  the ear between the pause and the resumption of the same segment; 0 when playback never paused
  (`paused` counts the trials that did); a reply never resumed is counted in `not_resumed`.
- first_audio_ms: from idle (talk button) the user asks a question; last user sample -> first audible
  reply sample at the ear (louder than ~-41 dBFS: the voice's leading silence is not an answer yet;
  the output latency included: that is what the listener waits).
- user_cutoffs: questions with an internal pause of 0.5-1.0 s; a cut-off is a final utterance sent
  before the user's last sample, or more than one final for the turn.
- false_pauses_per_min: pauses inside agent speech (a gap at the ear after which the same segment
  goes on) that start outside any user speech (first sample - 50 ms .. last sample + 500 ms), per
  minute of agent audio at the ear, echo at `--echo-gain`: `false_pauses_per_min` (from the ear) and
  `false_pauses_device` (the device machine's own count of dismissed optimistic pauses, if it has one).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import sys
import time
from contextlib import ExitStack
from typing import Any, Callable

import numpy as np


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "turns", help="turn taking in real time: segue vs a Pipecat/LiveKit-like baseline",
        description="Both columns in one run, on the same synthesised user speech with echo, in real time on "
                    "the virtual card, through the real device and engine, a scripted local LLM and piper. "
                    "A full run (--trials 8, four kinds, two columns) takes about 20 minutes on 2 cores; "
                    "each trial prints a line as it ends.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--trials", type=int, default=3, help="trials of each kind per column")
    p.add_argument("--columns", default="segue,baseline", help="comma-separated: segue, baseline")
    p.add_argument("--seed", type=int, default=12, help="picks the phrases, their timing and the card's jitter")
    p.add_argument("--latency-ms", type=float, default=100.0, help="virtual card output latency (ms)")
    p.add_argument("--echo-gain", type=float, default=0.3, help="how loud the speaker is at the mic (0-1)")
    p.add_argument("--first-token-ms", type=float, default=50.0, help="scripted LLM: time to the first token")
    p.add_argument("--chunk-delay", type=float, default=0.02, help="scripted LLM: seconds between chunks")
    p.add_argument("--kinds", default="question,bargein,backchannel,cutoff",
                   help="comma-separated trial kinds to run")
    p.add_argument("--json", metavar="OUT", help="also write {column: metrics} as JSON to OUT")
    p.add_argument("--record", metavar="DIR", help="write each column's ear and mic as DIR/<column>.{ear,mic}.wav")
    p.set_defaults(func=cmd_turns)


def _pct(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    return {"p50": round(float(np.percentile(values, 50)), 1), "p95": round(float(np.percentile(values, 95)), 1)}


def machine_info() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "date": datetime.date.today().isoformat(),
            "python": platform.python_version()}


def summarize(trials: list[Any], world: Any) -> dict[str, Any]:
    """One column's metrics (M) from its trials and its world's recordings."""
    from evaluation.turns.ear import agent_seconds, gaps

    by = {k: [t for t in trials if t.kind == k] for k in ("bargein", "backchannel", "question", "cutoff")}
    barge = [t.value_ms for t in by["bargein"] if t.value_ms is not None]
    absorb = [t.value_ms for t in by["backchannel"] if t.value_ms is not None]
    first = [t.value_ms for t in by["question"] if t.value_ms is not None]
    minutes = agent_seconds(world.card.ear) / 60.0
    speech = world.speech
    false_ear = [g for g in gaps(world.card.ear) if g.inside_segment
                 and not any(a - 0.05 <= g.start <= b + 0.5 for a, b in speech)]
    device_count = getattr(world.device.machine, "false_pauses", None)
    return {
        "bargein_stop_over_latency_ms": {**_pct(barge), "n": len(barge), "trials": len(by["bargein"]),
                                         "missed": sum(1 for t in by["bargein"] if t.value_ms is None)},
        "absorb_gap_ms": {**_pct(absorb), "n": len(absorb), "trials": len(by["backchannel"]),
                          "paused": sum(1 for t in by["backchannel"] if t.paused),
                          "not_resumed": sum(1 for t in by["backchannel"] if t.paused and t.value_ms is None)},
        "first_audio_ms": {**_pct(first), "n": len(first), "trials": len(by["question"])},
        "false_pauses_per_min": round(len(false_ear) / minutes, 2) if minutes > 0 else None,
        "false_pauses": {"ear": len(false_ear), "device": device_count,
                         "device_per_min": round(device_count / minutes, 2) if device_count is not None
                         and minutes > 0 else None,
                         "agent_speech_min": round(minutes, 2),
                         "at_s_and_ms": [(round(g.start, 2), round(g.ms)) for g in false_ear]},
        "user_cutoffs": {"count": sum(1 for t in by["cutoff"] if t.cutoff), "turns": len(by["cutoff"])},
        "trials": [t.line() for t in trials],
        "diagnostics": {
            "asr_final_pass_ms": _pct([ms for op, _, ms in list(world.device.asr.timings) if op == "finish"]),
            "asr_ms_by_op": {op: _pct([ms for o, _, ms in list(world.device.asr.timings) if o == op])
                             for op in sorted({o for o, _, _ in list(world.device.asr.timings)})},
            "loop_max_lag_ms": round(1000 * world.max_lag_s, 1),
            "loop_late_fraction": round(world.late_steps / max(1, world.steps), 4),
        },
    }


def run_columns(names: list[str], args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    """Both columns' worlds open at once and take turns trial by trial (the idle one's card is frozen:
    its clock is the card's, so nothing in it times out), so changing load on the machine hits both."""
    from evaluation.turns.columns import column
    from evaluation.turns.trials import RULES, RUNNERS
    from evaluation.turns.world import CardSpec, TurnWorld, broker_and_llm

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    spec = CardSpec(output_latency_ms=args.latency_ms, echo_gain=args.echo_gain)
    trials: dict[str, list[Any]] = {n: [] for n in names}
    t0 = time.monotonic()
    report: dict[str, Any] = {}
    with ExitStack() as stack:
        broker_url, llm = broker_and_llm(stack, RULES, args.first_token_ms / 1000, args.chunk_delay)
        worlds = {}
        for name in names:
            say(f"[{name}] starting server (piper) and device (faster-whisper) ...")
            col = column(name)
            worlds[name] = stack.enter_context(TurnWorld(col, broker_url, llm.base_url, spec, seed=args.seed))
            if col.missing:
                say(f"[{name}] column settings NOT applied (no such knob in this checkout): {', '.join(col.missing)}")
            if col.applied:
                say(f"[{name}] applied: {', '.join(col.applied)}")
        total = args.trials * len(kinds)
        for i in range(args.trials):
            for kind in kinds:
                for name in names:
                    world = worlds[name]
                    world.resume()
                    rng = random.Random(f"{args.seed}-{kind}-{i}")  # the same speech and timing in both columns
                    tr = RUNNERS[kind](world, i, rng)
                    trials[name].append(tr)
                    say(f"[{name:<8}] {len(trials[name])}/{total} {time.monotonic() - t0:5.0f}s  {tr.line()}")
        for name in names:
            report[name] = summarize(trials[name], worlds[name])
            if args.record:
                _record(args.record, name, worlds[name])
            report[name]["not_applied"] = list(worlds[name].col.missing)
        wall = round(time.monotonic() - t0, 1)
    for m in report.values():
        m["wall_s"] = wall
    return report


def _record(directory: str, name: str, world: Any) -> None:
    """The ear (what played) and the mic (user + echo) on the card's clock, for listening to a run."""
    import wave

    os.makedirs(directory, exist_ok=True)
    for what, pcm in (("ear", world.card.ear.pcm), ("mic", world.card.mic)):
        with wave.open(os.path.join(directory, f"{name}.{what}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(world.card.sample_rate)
            w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())


ROWS = (("bargein_stop_over_latency_ms", "barge-in stop - latency (ms)"),
        ("absorb_gap_ms", "ABSORB gap (ms)"), ("first_audio_ms", "end of speech -> first audio (ms)"))


def table(report: dict[str, Any]) -> str:
    cols = [c for c in ("segue", "baseline") if c in report]
    lines = [f"{'metric':<42}" + "".join(f"{c:>22}" for c in cols)]

    def cell(m: dict[str, Any], key: str) -> str:
        v = m[key]
        p = "-" if v["p50"] is None else f"{v['p50']:.0f} / {v['p95']:.0f}"
        return f"{p} (n={v['n']})"

    for key, label in ROWS:
        lines.append(f"{label + ' p50/p95':<42}" + "".join(f"{cell(report[c], key):>22}" for c in cols))
    extra = (
        ("barge-ins missed (never stopped)", lambda m: f"{m['bargein_stop_over_latency_ms']['missed']}"),
        ("backchannels paused / not resumed",
         lambda m: f"{m['absorb_gap_ms']['paused']}/{m['absorb_gap_ms']['trials']} / {m['absorb_gap_ms']['not_resumed']}"),
        ("false pauses / min (ear)", lambda m: f"{m['false_pauses_per_min']}"),
        ("false pauses (device count)", lambda m: f"{m['false_pauses']['device']}"),
        ("agent speech (min)", lambda m: f"{m['false_pauses']['agent_speech_min']}"),
        ("user cut-offs / turns", lambda m: f"{m['user_cutoffs']['count']} / {m['user_cutoffs']['turns']}"),
        ("(diag) Whisper final / quick pass p50 (ms)",
         lambda m: f"{m['diagnostics']['asr_final_pass_ms']['p50']} / "
                   f"{m['diagnostics']['asr_ms_by_op'].get('quick', {}).get('p50')}"),
        ("(diag) loop behind real time >100 ms", lambda m: f"{100 * m['diagnostics']['loop_late_fraction']:.1f} %"),
    )
    for label, fn in extra:
        lines.append(f"{label:<42}" + "".join(f"{fn(report[c]):>22}" for c in cols))
    return "\n".join(lines)


def cmd_turns(args: argparse.Namespace) -> dict[str, Any]:
    import logging

    logging.getLogger().setLevel(logging.WARNING)
    names = [c.strip() for c in args.columns.split(",") if c.strip()]

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    info = machine_info()
    say(f"segue-bench turns: {args.trials} trial(s) of each kind per column, columns {', '.join(names)}; "
        f"{info['cpu']}, {info['cores']} cores, {info['date']} (real time: other load on the machine counts)")
    report = run_columns(names, args, say)
    say("")
    say(table(report))
    say(f"machine: {info['cpu']}, {info['cores']} cores; {info['date']}; output latency {args.latency_ms:.0f} ms, "
        f"echo gain {args.echo_gain}, LLM first token {args.first_token_ms:.0f} ms, TTS piper")
    settings = {"latency_ms": args.latency_ms, "echo_gain": args.echo_gain, "echo_delay_ms": 20.0,
                "first_token_ms": args.first_token_ms, "chunk_delay_s": args.chunk_delay,
                "trials": args.trials, "seed": args.seed, "tts": "piper", "user_voice": "piper joe"}
    for m in report.values():  # the top level stays {column: M}
        m["machine"], m["settings"] = info, settings
    return report
