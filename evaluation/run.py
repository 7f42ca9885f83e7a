"""`segue-eval run`: run scenarios through the real device and server code and report the metrics.

Each (scenario, strategy) pair runs in its own worker process (its own server, device, virtual card
and scripted LLM, on its own topic root of one shared broker), so runs do not disturb each other and
use every core.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from evaluation.scenario import Scenario, ScenarioError, load_many

STRATEGY_CHOICES = ("icp", "cancel-restart", "truncate-clear", "generated-as-heard", "all")
DEFAULT_SPEED = {"text": 8.0, "audio": 2.0}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "run", help="run scenarios and report the metrics",
        description="Run scenario files (shared/SCENARIOS.md) through the real device and server code with a "
                    "real broker, a virtual sound card and a virtual listener; report phantom/lost words, "
                    "cursor error, dispositions, the go-back verdict and latencies.")
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenario files, or directories of *.yaml")
    p.add_argument("--mode", choices=("text", "audio", "live"), default="text",
                   help="live: real time, segue-server and segue-device as processes, a PulseAudio of its own, "
                        "the verdict from recordings (shared/SCENARIOS.md)")
    p.add_argument("--strategy", choices=STRATEGY_CHOICES, default="icp",
                   help="the engine's policy; `all` runs every strategy and prints them side by side")
    p.add_argument("--broker", metavar="URL", help="use this broker (mqtt://host:port) instead of starting one")
    p.add_argument("--llm-base-url", metavar="URL",
                   help="an OpenAI-compatible endpoint instead of the scenario's scripted replies")
    p.add_argument("--llm-model", default="scripted", help="model name sent to --llm-base-url")
    p.add_argument("--record", metavar="DIR",
                   help="per scenario, DIR/<name>/: ear.wav, mic.wav, requests.jsonl, mqtt.jsonl, server.log, "
                        "device.log (every mode)")
    p.add_argument("--engine", choices=("local", "external"), default="local",
                   help="external: run only the device, the user and the listener against whatever engine serves "
                        "--broker (one worker or many), in real time (--speed 1), in any mode")
    p.add_argument("--topic-root", metavar="ROOT",
                   help="MQTT topic root (default: a fresh one per run; `segue` with --engine external)")
    p.add_argument("--device-id", metavar="ID", default="", help="the device's id (default: a fresh one per run)")
    p.add_argument("--no-transcribe", action="store_true",
                   help="live mode: skip the ASR transcript of ear.wav (the signal-based verdict stays)")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON (a list of reports with --strategy all)")
    p.add_argument("--plot", metavar="DIR", help="write a timeline PNG per scenario (and strategy) into DIR")
    p.add_argument("--speed", type=float,
                   help="simulated seconds per wall second (default: 8 text, 2 audio; 1 with --engine external)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs in parallel (default: CPU count)")
    p.set_defaults(func=main)
    return p


def _job(scenario: Scenario, options: Any, plot_dir: str | None) -> Any:
    """One run in a worker process: returns its `ScenarioResult` (the trace stays here)."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    from evaluation.harness import run_scenario
    from evaluation.metrics import evaluate, unmeasured_context

    trace = run_scenario(scenario, options)
    result = evaluate(trace, scenario.audio.buffer_ms, scenario.audio.jitter_ms)
    if options.engine == "external":  # the engine's LLM requests were not seen here
        result = unmeasured_context(result)
    if plot_dir:
        from evaluation.plot import plot_trace

        plot_trace(trace, result, Path(plot_dir) / f"{scenario.name}.{options.strategy}.png")
    return result


def run_all(scenarios: list[Scenario], strategies: list[str], mode: str, broker_url: str,
            llm_base_url: str | None = None, llm_model: str = "scripted", speed: float | None = None,
            jobs: int = 1, plot_dir: str | None = None, record_dir: str | None = None, engine: str = "local",
            topic_root: str | None = None, device_id: str = "") -> dict[str, list[Any]]:
    """Every scenario under every strategy; results in scenario order per strategy."""
    from evaluation.harness import RunOptions

    speed = speed or (1.0 if engine == "external" else DEFAULT_SPEED[mode])
    if device_id:
        jobs = 1  # one device id cannot be two devices at once
    tasks = [(s, RunOptions(broker_url=broker_url, mode=mode, strategy=strategy, llm_base_url=llm_base_url,
                            llm_model=llm_model, speed=speed, record_dir=record_dir, engine=engine,
                            topic_root=topic_root, device_id=device_id), plot_dir)
             for strategy in strategies for s in scenarios]
    if jobs <= 1 or len(tasks) == 1:
        results = [_job(*t) for t in tasks]
    else:
        ctx = multiprocessing.get_context("spawn")  # the server and device run threads: never fork them
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            results = list(pool.map(_job, *zip(*tasks)))
    out: dict[str, list[Any]] = {}
    for (scenario, options, _), result in zip(tasks, results):
        out.setdefault(options.strategy, []).append(result)
    return out


def main(args: argparse.Namespace) -> int:
    from evaluation import report

    try:
        scenarios = load_many(args.scenarios)
    except ScenarioError as exc:
        print(f"segue-eval: {exc}", file=sys.stderr)
        return 2
    if not scenarios:
        print("segue-eval: no scenario files found", file=sys.stderr)
        return 2
    strategies = list(STRATEGY_CHOICES[:-1]) if args.strategy == "all" else [args.strategy]
    if args.engine == "external" and args.speed not in (None, 1.0):
        print("segue-eval: --engine external runs in real time (the engine keeps the wall clock): drop --speed "
              "or give --speed 1", file=sys.stderr)
        return 2
    if args.engine == "external" and len(strategies) > 1:
        print("segue-eval: --engine external judges the engine that serves --broker: --strategy all compares "
              "local engines only", file=sys.stderr)
        return 2
    if args.engine == "external" and args.broker is None:
        print("segue-eval: --engine external needs --broker (the broker the engine serves)", file=sys.stderr)
        return 2
    if args.plot:
        Path(args.plot).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with ExitStack() as stack:
        broker_url = args.broker
        if broker_url is None:
            from evaluation.broker import Mosquitto

            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="segue-eval-"))
            broker_url = stack.enter_context(Mosquitto(Path(workdir))).url
        print(f"running {len(scenarios)} scenario(s) x {len(strategies)} strategy(ies) in {args.mode} mode "
              f"against {broker_url} ...", file=sys.stderr, flush=True)
        if args.mode == "live":
            from evaluation.live.runner import run_live_all

            runs = {strategy: run_live_all(scenarios, broker_url, strategy, args.engine, args.topic_root,
                                           args.device_id, args.llm_base_url, args.llm_model, args.record,
                                           transcribe=not args.no_transcribe)
                    for strategy in strategies}
        else:
            runs = run_all(scenarios, strategies, args.mode, broker_url, args.llm_base_url, args.llm_model,
                           args.speed, max(1, args.jobs), args.plot, args.record, args.engine, args.topic_root,
                           args.device_id)
    for strategy, results in runs.items():
        print(f"\n== strategy {strategy} ({args.mode} mode) ==")
        print(report.scenario_table(results))
        if args.mode == "live":
            print()
            print(report.live_table(results))
        print(report.summary_line(strategy, args.mode, results))
    if len(runs) > 1:
        print("\n== strategies side by side ==")
        print(report.side_by_side(runs))
        print()
        print(report.per_scenario_matrix(runs))
    print(f"\n{sum(map(len, runs.values()))} run(s) in {time.monotonic() - started:.1f} s")
    reports = [report.strategy_report(s, args.mode, r) for s, r in runs.items()]
    if args.json:
        Path(args.json).write_text(json.dumps(reports if len(reports) > 1 else reports[0], indent=2) + "\n")
    failed = any(r.report["errors"] for rs in runs.values() for r in rs)
    failed |= any(not r.passed for r in runs.get("icp", []))
    return 1 if failed else 0
