"""`segue-eval run --mode live` (and `--engine external`): scenarios one at a time, in real time.

Live runs share the machine's two cores with real models, so they never run in parallel; a progress
line per scenario (and every ten seconds inside one) shows the run is alive.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

from evaluation.metrics import ScenarioResult
from evaluation.scenario import Scenario


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_live_all(scenarios: list[Scenario], broker_url: str, strategy: str, engine: str, topic_root: str | None,
                 device_id: str, llm_base_url: str | None, llm_model: str, record_dir: str | None,
                 transcribe: bool = True) -> list[ScenarioResult]:
    from evaluation.live.pulse import PulseUnavailable
    from evaluation.live.verdict import live_verdict
    from evaluation.live.world import LiveOptions, run_live

    def _stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds the run: processes, sound server, recorders stop

    signal.signal(signal.SIGTERM, _stop)
    results = []
    for i, scenario in enumerate(scenarios, 1):
        t0 = time.monotonic()
        _say(f"[{i}/{len(scenarios)}] {scenario.name} (live, {engine} engine) ...")
        options = LiveOptions(broker_url=broker_url, strategy=strategy, engine=engine, topic_root=topic_root,
                              device_id=device_id, llm_base_url=llm_base_url, llm_model=llm_model,
                              record_dir=record_dir, on_progress=_say)
        try:
            run = run_live(scenario, options)
        except PulseUnavailable as exc:
            _say(f"segue-eval: {exc}")
            results.append(_failed(scenario, str(exc)))
            continue
        _say(f"  recorded {run.wall_s:.0f} s; transcribing the ear and computing the verdict ...")
        result = live_verdict(run, transcribe=transcribe)
        results.append(result)
        verdict = "pass" if result.passed else "FAIL: " + "; ".join(result.failures)[:300]
        _say(f"  {verdict} ({time.monotonic() - t0:.0f} s)")
    return results


def _failed(scenario: Scenario, why: str) -> ScenarioResult:
    report: dict[str, Any] = {
        "name": scenario.name, "phantom_words": None, "lost_words": None,
        "cursor_error_ms": {"max": None, "p95": None}, "cursor_error_words": {"max": None, "p95": None},
        "barge_in_stop_ms": {"p50": None, "p95": None}, "dispositions": [], "go_back": [],
        "first_audio_ms": {"p50": None, "p95": None}, "errors": [why],
    }
    return ScenarioResult(report, False, (), (why,))
