"""Engine defects found in review (issue 11, item 3), each against the real parts: a real Mosquitto, the
real openai client against the scripted OpenAI-compatible server (which streams with chunk delays and
records what it sent), espeak-ng, and a test device speaking the wire protocol.

Each test failed before its fix; the report of issue 11 shows the failures.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import httpx
import openai
import pytest

from evaluation.openai_server import ScriptedLLMServer
from evaluation.protocol_device import ProtocolDevice
from icp import commands as C
from icp.dispositions import Classification, ClassifyRequest, Disposition
from icp.machine import AutoResume
from server.app import ServerApp
from server.config import ServerSettings, apply_broker_url, load

pytestmark = pytest.mark.broker

LONG = " ".join(f"Sentence {i} goes on about tides and the moon for a while." for i in range(40))


def make_settings(broker: Any, llm: ScriptedLLMServer, tmp_path: Any) -> ServerSettings:
    settings = load(None, env={})
    return replace(
        settings,
        mqtt=apply_broker_url(settings.mqtt, broker.url),
        llm=replace(settings.llm, base_url=llm.base_url, model="scripted"),
        tts=replace(settings.tts, backend="espeak"),
        storage=replace(settings.storage, state_dir=str(tmp_path / "state")),
        engine=replace(settings.engine, auto_resume=AutoResume.OFF),
    )


class Recorder:
    """An engine observer: every command the core gave, with the time it was carried out."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, C.Command]] = []
        self.lock = threading.Lock()

    def __call__(self, device_id: str, cmd: C.Command) -> None:
        with self.lock:
            self.seen.append((time.monotonic(), cmd))

    def of(self, kind: type) -> list[tuple[float, Any]]:
        with self.lock:
            return [(t, c) for t, c in self.seen if isinstance(c, kind)]

    def wait(self, kind: type, timeout: float = 10.0) -> tuple[float, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(kind)
            if found:
                return found[0]
            time.sleep(0.01)
        raise AssertionError(f"no {kind.__name__} within {timeout} s")


def test_a_cancel_while_the_llm_request_is_being_opened_closes_the_stream(broker, tmp_path):
    """The cancel arrives while `chat.completions.create()` is still sending the request (held there
    by an httpx request hook): the stream must be closed as soon as it exists, not run to max_tokens."""
    opening, release = threading.Event(), threading.Event()

    def hold_first_request(request: httpx.Request) -> None:
        if not opening.is_set():
            opening.set()
            release.wait(10)

    llm = ScriptedLLMServer([{"default": LONG}], chunk_delay_s=0.01).start()
    http = httpx.Client(event_hooks={"request": [hold_first_request]})
    client = openai.OpenAI(base_url=llm.base_url, api_key="x", http_client=http, max_retries=0)
    app = ServerApp(make_settings(broker, llm, tmp_path), llm_client=client).start()
    seen = Recorder()
    app.engine.observers.append(seen)
    device = ProtocolDevice(broker.url)
    try:
        device.hello()
        device.say("explain how the tides work")
        assert opening.wait(10), "the generation request was never opened"
        device.say("stop", interrupt=True)
        seen.wait(C.CancelGeneration)  # the engine carried out the cancel while the request was opening
        release.set()
        assert llm.wait_for(lambda s: s.requests and (s.requests[0].cancelled or s.requests[0].completed), 15)
        req = llm.requests[0]
        assert req.cancelled and not req.completed, "the cancelled generation ran to its end"
        assert req.chunks_sent < req.chunks_total
    finally:
        release.set()
        device.stop()
        app.stop()
        llm.stop()
        http.close()


class Exploding:
    """A classifier backend that fails, as a broken model file or a dead endpoint would."""

    def classify(self, request: ClassifyRequest) -> Classification:
        raise RuntimeError("test: the classifier model could not be loaded")


def test_a_classifier_that_raises_falls_back_at_once(broker, tmp_path):
    llm = ScriptedLLMServer([{"default": "Here is something new for you."}]).start()
    app = ServerApp(make_settings(broker, llm, tmp_path)).start()
    app.engine.classifier = Exploding()
    seen = Recorder()
    app.engine.observers.append(seen)
    device = ProtocolDevice(broker.url)
    try:
        device.hello()
        device.say("tell me something")
        said = device.final_sent_at
        at, applied = seen.wait(C.DispositionApplied, timeout=10)
        assert applied.applied is Disposition.NEW  # the fallback while idle: a new request
        assert applied.source == "failed", f"fell back through {applied.source!r}, not the failure"
        assert at - said < 1.0, f"{at - said:.1f} s of silence before falling back"
        device.wait_for(lambda: device.segments)  # and the reply comes
    finally:
        device.stop()
        app.stop()
        llm.stop()


class Forgetful(dict):
    """The engine's store of synthesised audio, losing one segment's PCM: the state the review found
    the engine could reach (`_send_segment` then sent nothing while the core counted it as sent)."""

    def __init__(self, lose: int) -> None:
        super().__init__()
        self.lose: int | None = lose

    def pop(self, key: Any, default: Any = None) -> Any:
        if self.lose is not None and key[1] == self.lose:
            self.lose = None
            super().pop(key, None)
            return default
        return super().pop(key, default)


def test_a_segment_whose_audio_is_missing_is_sent_again(broker, tmp_path):
    reply = "Tides rise. The moon pulls the near side of the sea. The far side bulges too. That is all."
    llm = ScriptedLLMServer([{"default": reply}]).start()
    app = ServerApp(make_settings(broker, llm, tmp_path)).start()
    app.engine.audio = Forgetful(lose=2)
    seen = Recorder()
    app.engine.observers.append(seen)
    device = ProtocolDevice(broker.url)
    try:
        device.hello()
        device.say("tell me about tides")
        device.wait_for(lambda: device.segments)
        # The core learns at once that segment 2 never left, and re-sends from the heard cursor
        # (nothing heard yet: from the first word), well before lost-audio recovery (3 s) could.
        device.wait_for(lambda: any(c.reason == "RESEND" for c in device.controls), timeout=2.0)
        resend = next(i for i, c in enumerate(device.controls) if c.reason == "RESEND")
        assert device.controls[resend].disposition is None
        device.wait_for(lambda: any(s.seg.prev == 0 and s.seg.segment > 2 for s in device.segments), timeout=5)
        device.play_all()
        again = [s for s in device.segments if s.seg.segment > 2 and not s.dropped]
        start = next(i for i, s in enumerate(again) if s.seg.prev == 0)
        assert all(s.seg.prev == p.seg.segment for p, s in zip(again[start:], again[start + 1:]))
        assert " ".join(s.seg.text for s in again[start:]).split() == reply.split()
        sent = [c.segment.segment for _, c in seen.of(C.SendSegment)]
        segments = app.engine.devices["dev1"].session.conv.segments
        assert 2 in sent and next(s for s in segments if s.id == 2).dropped  # by id: not every run cuts alike
    finally:
        device.stop()
        app.stop()
        llm.stop()
