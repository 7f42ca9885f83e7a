"""`--record DIR` for the in-process modes (text, audio): what a failed run needs to be debugged.

DIR/<scenario>/ gets `ear.wav` (the virtual card's ear: what reached the listener, mono 16-bit),
`mic.wav` (what the card's microphone captured: the user's voice and the echo), `requests.jsonl`
(each request as the scripted LLM endpoint received it; with --llm-base-url the engine's own requests
as it sent them), `mqtt.jsonl` (every message on the device's topics as the broker delivered it to a
listener of the harness's own, audio frames summarised), `server.log` and `device.log` (the loggers of
the engine and of the device, which share this process). Live mode writes the same files from its
recordings (evaluation.live.world).
"""

from __future__ import annotations

import json
import logging
import wave
from pathlib import Path
from typing import Any

import numpy as np

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm).astype("<i2").tobytes())


class Recording:
    def __init__(self, options: Any, scenario: str, topic_root: str, device_id: str) -> None:
        from evaluation.live.wire import WireTap

        self.dir = Path(options.record_dir) / scenario
        self.dir.mkdir(parents=True, exist_ok=True)
        self.handlers: list[tuple[logging.Logger, logging.Handler]] = []
        self.saved: list[tuple[logging.Logger, int, bool]] = []
        upward = _Upward()  # what the console showed before (the root's level) it still shows
        for name, loggers in (("server.log", ("segue", "server", "icp")), ("device.log", ("device",))):
            handler = logging.FileHandler(self.dir / name, mode="w")
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
            handler.setLevel(logging.INFO)
            for logger_name in loggers:
                logger = logging.getLogger(logger_name)
                self.saved.append((logger, logger.level, logger.propagate))
                logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
                logger.propagate = False
                logger.addHandler(handler)
                logger.addHandler(upward)
                self.handlers.append((logger, handler))
                self.handlers.append((logger, upward))
        self.wire = WireTap(options.broker_url, topic_root, device_id, self.dir / "mqtt.jsonl")

    def save(self, card: Any, llm: Any, trace: Any) -> None:
        """At the end of the run (the card and the endpoint are still there)."""
        rate = card.sample_rate
        write_wav(self.dir / "ear.wav", card.ear.pcm, rate)
        write_wav(self.dir / "mic.wav", card.mic, rate)
        with open(self.dir / "requests.jsonl", "w") as f:
            if llm is not None:
                for r in llm.requests:
                    f.write(json.dumps({"t_monotonic": round(r.time, 4), "path": r.path, "model": r.model,
                                        "messages": r.messages, "stream": r.stream, "reply": r.reply,
                                        "cancelled": r.cancelled}) + "\n")
            else:
                f.write(json.dumps({"note": "--llm-base-url: the engine's requests as it sent them (the endpoint "
                                            "is not the harness's)"}) + "\n")
                for t, g in trace.generations:
                    f.write(json.dumps({"t": round(t, 4), "messages": list(g.messages)}) + "\n")

    def close(self) -> None:
        self.wire.stop()
        for logger, handler in self.handlers:
            logger.removeHandler(handler)
        for logger, level, propagate in self.saved:
            logger.setLevel(level)
            logger.propagate = propagate
        for handler in {id(h): h for _, h in self.handlers}.values():
            handler.close()


class _Upward(logging.Handler):
    """Hands a record on to the root logger's handlers when the root's level lets it through."""

    def emit(self, record: logging.LogRecord) -> None:
        root = logging.getLogger()
        if record.levelno >= root.getEffectiveLevel():
            root.handle(record)
