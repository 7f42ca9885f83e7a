"""`segue-bench server`: time from the end of the user's utterance to the first audio frame at the device.

Everything real but the LLM: a Mosquitto broker, the engine (`segue-server` code), the openai client
against the local scripted OpenAI-compatible server (so the LLM's own speed is not what is measured),
the chosen TTS backend, and a protocol-level device that timestamps the first audio frame it receives.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

REPLY = "Here is a short answer. It has a second sentence too, so there is more than one segment."


def add_parser(sub: Any) -> None:
    p = sub.add_parser("server", help="utterance end -> first audio frame at the device (engine + TTS latency)")
    p.add_argument("--tts", default="espeak", help="TTS backend: espeak (default), piper, auto")
    p.add_argument("--runs", type=int, default=20, help="utterances to time (default 20)")
    p.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT")
    p.set_defaults(func=cmd_server)


def cmd_server(args: argparse.Namespace) -> dict[str, Any]:
    from evaluation.broker import Mosquitto
    from evaluation.openai_server import ScriptedLLMServer
    from evaluation.protocol_device import ProtocolDevice
    from server.app import ServerApp
    from server.config import apply_broker_url, load

    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "broker") as broker, \
            ScriptedLLMServer([{"default": REPLY}], chunk_delay_s=0.002) as llm:
        base = load(None, env={})
        settings = replace(
            base, mqtt=apply_broker_url(base.mqtt, broker.url),
            llm=replace(base.llm, base_url=llm.base_url, model="scripted"),
            tts=replace(base.tts, backend=args.tts), storage=replace(base.storage, backend="memory"),
        )
        print(f"starting the engine (tts={args.tts}) ...", flush=True)
        app = ServerApp(settings).start()
        device = ProtocolDevice(broker.url)
        device.hello()
        latencies = []
        try:
            for i in range(args.runs):
                n = len(device.segments)
                device.say(f"tell me something number {i}")
                device.wait_for(lambda: len(device.segments) > n and len(device.segments[n].pcm) > 0, timeout=30)
                latencies.append((device.segments[n].first_audio_at - device.final_sent_at) * 1000.0)
                device.play_all(settle_s=0.3)
        finally:
            device.stop()
            app.stop()
    latencies.sort()
    result = {
        "tts": args.tts, "runs": len(latencies),
        "first_audio_ms": {"p50": round(statistics.median(latencies), 1),
                           "p95": round(latencies[max(0, int(len(latencies) * 0.95) - 1)], 1),
                           "min": round(latencies[0], 1)},
    }
    print(f"utterance end -> first audio frame at the device ({len(latencies)} runs, tts={args.tts}): "
          f"p50 {result['first_audio_ms']['p50']} ms, p95 {result['first_audio_ms']['p95']} ms", flush=True)
    return result
