"""Prometheus metrics of one engine worker (`--metrics-port`), for the Grafana dashboard in deploy/.

Each worker has its own registry (several apps can live in one test process) and serves it with
`prometheus_client`'s own HTTP server. `METRICS` lists every name with its help text: the docs
(docs/fleet-scale.md) and the test of the endpoint read the same list.
"""

from __future__ import annotations

from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
SLOW_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

METRICS: dict[str, str] = {
    "segue_devices_served": "Devices with a live session in this worker",
    "segue_owned_devices": "Devices this worker owns (several workers; equals devices served with one)",
    "segue_events_total": "Device events handled, by kind (DeviceConnected, UtteranceFinal, InterruptReported, PlaybackReported, ...)",
    "segue_rejections_total": "Device messages refused, by reason (invalid, replay, oversized, ...)",
    "segue_event_to_command_seconds": "From a device message's arrival to its commands published",
    "segue_llm_first_token_seconds": "From a generation's request to its first text",
    "segue_tts_seconds": "Synthesis time of one segment",
    "segue_takeovers_total": "Devices this worker took over from another (dead or gone) worker",
    "segue_forwarded_total": "Messages forwarded to the owning worker",
    "segue_reply_process_restarts_total": "Times the reply process (LLM streams and TTS) died and was started again",
}


class EngineMetrics:
    def __init__(self, devices: Callable[[], int], owned: Callable[[], int], takeovers: Callable[[], int],
                 forwarded: Callable[[], int] = lambda: 0, reply_restarts: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        Gauge("segue_devices_served", METRICS["segue_devices_served"], registry=r).set_function(devices)
        Gauge("segue_owned_devices", METRICS["segue_owned_devices"], registry=r).set_function(owned)
        self.events = Counter("segue_events", METRICS["segue_events_total"], ["kind"], registry=r)
        self.rejections = Counter("segue_rejections", METRICS["segue_rejections_total"], ["reason"], registry=r)
        self.latency = Histogram("segue_event_to_command_seconds", METRICS["segue_event_to_command_seconds"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.first_token = Histogram("segue_llm_first_token_seconds", METRICS["segue_llm_first_token_seconds"],
                                     buckets=SLOW_BUCKETS, registry=r)
        self.tts = Histogram("segue_tts_seconds", METRICS["segue_tts_seconds"], buckets=SLOW_BUCKETS, registry=r)
        _FunctionCounter("segue_takeovers", METRICS["segue_takeovers_total"], takeovers, r)
        _FunctionCounter("segue_forwarded", METRICS["segue_forwarded_total"], forwarded, r)
        _FunctionCounter("segue_reply_process_restarts", METRICS["segue_reply_process_restarts_total"],
                         reply_restarts, r)
        self._server: WSGIServer | None = None

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve /metrics; returns the port (0 picks a free one)."""
        self._server, _ = start_http_server(port, addr=addr, registry=self.registry)
        return self._server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _FunctionCounter:
    """A counter whose value another object keeps (ownership counts takeovers itself)."""

    def __init__(self, name: str, documentation: str, value: Callable[[], int], registry: CollectorRegistry) -> None:
        from prometheus_client.core import CounterMetricFamily

        class _Collector:
            def collect(self):  # noqa: ANN202 (prometheus_client's collector protocol)
                yield CounterMetricFamily(name, documentation, value=value())

        registry.register(_Collector())
