"""The engine's scheduling (issue 13, capacity): reply streams on a bounded thread pool, and deadlines
that still fire on time.

Against the real parts: a real Mosquitto, the real openai client against the scripted
OpenAI-compatible server, espeak-ng, protocol devices.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from evaluation.openai_server import ScriptedLLMServer
from evaluation.protocol_device import ProtocolDevice
from icp import commands as C
from server.app import ServerApp
from server.config import ConfigError, from_dict
from tests.test_engine_defects import LONG, Recorder, make_settings


def test_max_streams_has_a_default_and_refuses_zero():
    assert from_dict({}).llm.max_streams >= 4
    assert from_dict({"llm": {"max_streams": 3}}).llm.max_streams == 3
    with pytest.raises(ConfigError, match="max_streams"):
        from_dict({"llm": {"max_streams": 0}})


# -- against the real parts -----------------------------------------------------------------------------
@pytest.mark.broker
@pytest.mark.parametrize("replies", ["process", "threads"])
def test_replies_wait_for_a_free_stream_and_a_cancel_frees_it(broker, tmp_path, replies):
    """One stream slot: the second device's reply waits while the first streams a long answer; the first
    device's "stop" cancels its stream, which frees the slot, and the second reply then streams. The
    same whether the streams run in the reply process or on this process's threads."""
    llm = ScriptedLLMServer([{"match": "tides", "reply": LONG}, {"match": "stop", "reply": "Okay."},
                             {"default": "It is noon."}], chunk_delay_s=0.01).start()
    settings = replace(make_settings(broker, llm, tmp_path), replies=replies)
    app = ServerApp(replace(settings, llm=replace(settings.llm, max_streams=1))).start()
    first, second = ProtocolDevice(broker.url, "dev1"), ProtocolDevice(broker.url, "dev2")
    try:
        first.hello()
        second.hello()
        first.say("explain how the tides work")
        first.wait_for(lambda: first.segments, timeout=10)
        second.say("what time is it")
        time.sleep(0.5)
        assert not second.segments, "a second reply streamed while the only slot was busy"
        assert len(llm.requests) == 1
        first.play_ms(300)
        first.say("stop", interrupt=True)
        assert llm.wait_for(lambda s: s.requests and s.requests[0].cancelled, 10), "the long reply ran on"
        second.wait_for(lambda: second.segments, timeout=10)
        assert "noon" in " ".join(s.seg.text for s in second.segments)
        gen_threads = [t.name for t in threading.enumerate() if t.name.startswith("gen")]
        # reused, not one per reply; and none here when the reply process streams them
        assert len(gen_threads) == (1 if replies == "threads" else 0), gen_threads
    finally:
        first.stop()
        second.stop()
        app.stop()
        llm.stop()


@pytest.mark.broker
def test_a_generation_cancelled_while_queued_never_sends_its_request(broker, tmp_path):
    llm = ScriptedLLMServer([{"default": LONG}], chunk_delay_s=0.01).start()
    settings = make_settings(broker, llm, tmp_path)
    app = ServerApp(replace(settings, llm=replace(settings.llm, max_streams=1))).start()
    engine = app.engine
    ask = ({"role": "user", "content": "tell me about tides"},)
    try:
        engine.call_soon(lambda: engine._start_generation("devA", C.StartGeneration("g1", ask, 400)))
        assert llm.wait_for(lambda s: s.requests, 10)
        engine.call_soon(lambda: engine._start_generation("devB", C.StartGeneration("g2", ask, 400)))
        engine.call_soon(lambda: engine._carry_out("devB", None, C.CancelGeneration("g2")))  # type: ignore[arg-type]
        engine.call_soon(lambda: engine._carry_out("devA", None, C.CancelGeneration("g1")))  # type: ignore[arg-type]
        assert llm.wait_for(lambda s: s.requests[0].cancelled, 10)
        time.sleep(0.5)  # the queued one has had its turn by now
        assert len(llm.requests) == 1, "a generation cancelled while queued still sent its request"
        assert not engine.streams
    finally:
        app.stop()
        llm.stop()


@pytest.mark.broker
def test_a_deadline_fires_on_time(broker, tmp_path):
    """A wake and then nothing: the listen deadline ticks the session back to idle on time, and a
    session with no deadline left holds no entry (the ticker's cost follows the sessions due)."""
    llm = ScriptedLLMServer([{"default": "Okay."}]).start()
    settings = make_settings(broker, llm, tmp_path)
    app = ServerApp(replace(settings, engine=replace(settings.engine, listen_timeout_s=0.4))).start()
    seen = Recorder()
    app.engine.observers.append(seen)
    device = ProtocolDevice(broker.url)
    try:
        from icp.messages import Wake, WakeSource

        device.hello()
        device.wait_for(lambda: device.states, timeout=5)
        woke = time.monotonic()
        device.send(Wake(WakeSource.BUTTON))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ticked = [(t, c) for t, c in seen.of(C.Transition) if c.event == "Tick"]
            if ticked:
                break
            time.sleep(0.01)
        assert ticked, "the listen deadline never fired"
        at, transition = ticked[0]
        assert transition.after == "idle"
        assert 0.35 <= at - woke <= 0.4 + 0.3, f"fired {at - woke:.2f} s after the wake"
    finally:
        device.stop()
        app.stop()
        llm.stop()
