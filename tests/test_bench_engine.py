"""`segue-bench engine` end to end on a small fleet: real Mosquitto, Redis, workers and simulated devices."""

from __future__ import annotations

import pytest

from evaluation import bench_engine


@pytest.mark.slow
def test_a_small_fleet_talks_to_two_workers_without_errors():
    report = bench_engine.run(devices=12, workers=2, seconds=6.0, warmup_s=3.0, think_s=(0.5, 1.0))
    assert report["errors"] == 0, report["error_kinds"]
    assert report["latency_ms"]["n"] > 20 and report["reply_ms"]["n"] > 5
    assert {"hello", "wake", "final"} & set(report["by_event"])
    assert report["latency_ms"]["p99"] < 2000  # every sample is an answer, in ms, not a timeout
    assert set(report["cpu_s"]) >= {"engine", "load_generator", "broker", "redis", "llm", "worker0", "worker1"}
    assert report["events_per_s"] > 0 and report["engine_cpu_s"] > 0
