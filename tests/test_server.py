"""The engine end to end at protocol level: a real Mosquitto, the real openai client against a local
OpenAI-compatible server, espeak-ng speech, and a test device speaking the wire protocol."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from evaluation.openai_server import ScriptedLLMServer
from icp.context import strip_notes
from icp.dispositions import Disposition
from icp.machine import AutoResume
from server.app import ServerApp
from server.config import ServerSettings, apply_broker_url, load
from evaluation.protocol_device import ProtocolDevice

pytestmark = pytest.mark.broker

EXPLANATION = (
    "Transformers are neural networks that read a whole sentence at once. They turn every word into a "
    "vector of numbers. Then attention lets each word look at every other word to decide what matters. "
    "After attention, small feed forward layers refine each position. Many such layers are stacked on "
    "top of each other. Training needs a lot of text and a lot of patience."
)
RULES = [
    {"match": "attention", "reply": "Attention is a weighted average over the words of the sentence."},
    {"match": "transformers", "reply": EXPLANATION},
    {"default": "Here is something new for you."},
]


def make_settings(broker, llm, tmp_path, auto_resume=AutoResume.OFF) -> ServerSettings:
    settings = load(None, env={})
    return replace(
        settings,
        mqtt=apply_broker_url(settings.mqtt, broker.url),
        llm=replace(settings.llm, base_url=llm.base_url, model="scripted"),
        tts=replace(settings.tts, backend="espeak"),
        storage=replace(settings.storage, state_dir=str(tmp_path / "state")),
        engine=replace(settings.engine, auto_resume=auto_resume),
    )


@pytest.fixture
def llm():
    with ScriptedLLMServer(RULES, chunk_delay_s=0.002) as server:
        yield server


@pytest.fixture
def server(broker, llm, tmp_path):
    app = ServerApp(make_settings(broker, llm, tmp_path)).start()
    yield app
    app.stop()


@pytest.fixture
def device(broker, server):
    dev = ProtocolDevice(broker.url)
    dev.hello()
    yield dev
    dev.stop()


def assistant_words(messages) -> list[str]:
    return [w for m in messages if m["role"] == "assistant" for w in strip_notes(m["content"]).split()]


def items_in_order(device: ProtocolDevice) -> list[str]:
    seen: list[str] = []
    for s in device.segments:
        if s.seg.item not in seen:
            seen.append(s.seg.item)
    return seen


def go_back_scenario(device: ProtocolDevice, llm: ScriptedLLMServer, heard_ms: float) -> tuple[str, list[str]]:
    device.say("explain how transformers work")
    device.wait_for(lambda: device.segments and len(device.segments[0].pcm) > 0)
    device.play_ms(heard_ms)
    parent = device.segments[0].seg.item
    heard = device.heard_words(parent)
    device.say("wait what's attention", interrupt=True)
    device.wait_for(lambda: any(s.seg.item != parent for s in device.segments))
    device.play_all()
    return parent, heard


def test_the_engine_and_the_test_broker_switch_nagle_off(broker, server, device):
    """A command must not wait in a socket for the peer's delayed ACK (~40 ms on Linux): the engine's
    socket has TCP_NODELAY and the broker is told to set it towards its clients (servicekit.net)."""
    import socket

    sock = server.mqtt.client.socket()
    assert sock is not None and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert "set_tcp_nodelay true" in broker.config_path.read_text()


def test_go_back_resumes_at_the_first_word_not_fully_heard(device, llm):
    parent, heard = go_back_scenario(device, llm, heard_ms=3300)
    assert 3 <= len(heard) < 40
    # The side question's request: the parent's heard words, nothing unheard, plus the question.
    assert assistant_words(llm.requests[1].messages) == heard
    assert llm.requests[1].messages[-1]["content"] == "wait what's attention"
    n_before = len(device.segments)
    device.say("okay go back")
    device.wait_for(lambda: len(device.segments) > n_before + 1)
    device.play_all()
    resumed = device.segments[n_before].seg
    assert resumed.bridge_words > 0 and resumed.text.startswith("Right, as I was saying")
    words = " ".join(s.seg.text for s in device.segments[n_before:]).split()[resumed.bridge_words:]
    parent_words = EXPLANATION.split()
    # resume point: the first word not fully heard, which is the last heard word or the one after it
    start = parent_words.index(words[0], max(0, len(heard) - 1))
    assert start in (len(heard) - 1, len(heard)), (heard, words[:5])
    assert words[:8] == parent_words[start : start + 8]
    assert len(llm.requests) == 2  # resuming replays the held remainder; no new generation
    # The device is told which disposition each flush or resume carries out, in a typed field.
    flushes = [c for c in device.controls if c.action.value == "flush"]
    assert flushes and flushes[0].disposition is Disposition.BRANCH and flushes[0].reason == "BRANCH"
    assert all(c.disposition is None for c in device.controls if c.action.value in ("pause", "listen"))


def test_no_unheard_word_reaches_the_llm_after_an_interruption(device, llm):
    device.say("explain how transformers work")
    device.wait_for(lambda: device.segments and len(device.segments[0].pcm) > 0)
    device.play_ms(2500)
    first_item = device.segments[0].seg.item
    heard = device.heard_words(first_item)
    device.say("no I meant the electrical kind", interrupt=True)  # a correction: MODIFY
    device.wait_for(lambda: len(llm.requests) >= 2)
    request = llm.requests[1].messages
    assert assistant_words(request) == heard
    notes = [m["content"] for m in request if m["role"] == "assistant"]
    assert "[interrupted after:" in notes[0]
    # generation of the first reply was cancelled or had finished; nothing after the heard point is shown
    unheard = EXPLANATION.split()[len(heard):]
    assert not set(unheard[5:]) & set(assistant_words(request)) - set(heard)


def test_restart_keeps_a_held_thread(broker, llm, tmp_path):
    app = ServerApp(make_settings(broker, llm, tmp_path)).start()
    device = ProtocolDevice(broker.url)
    try:
        device.hello()
        parent, heard = go_back_scenario(device, llm, heard_ms=2600)
    finally:
        app.stop()
    app = ServerApp(make_settings(broker, llm, tmp_path)).start()
    try:
        n_before = len(device.segments)
        device.say("okay go back")
        device.wait_for(lambda: len(device.segments) > n_before + 1)
        words = " ".join(s.seg.text for s in device.segments[n_before:]).split()
        resumed = device.segments[n_before].seg
        content = words[resumed.bridge_words:]
        parent_words = EXPLANATION.split()
        start = parent_words.index(content[0], max(0, len(heard) - 1))
        assert start in (len(heard) - 1, len(heard))
    finally:
        device.stop()
        app.stop()


def test_bad_input_is_rejected_and_counted_and_never_touches_another_device(broker, server, llm, device):
    other = ProtocolDevice(broker.url, device_id="dev2")
    other.hello()
    client = other.client
    root = "segue"
    bad = [
        (f"{root}/dev1/up/utterance", b"{not json"),
        (f"{root}/dev1/up/utterance", b"x" * 20000),
        (f"{root}/dev1/up/interrupt", json.dumps({"v": 2, "type": "interrupt"}).encode()),
        (f"{root}/dev1/up/playback", json.dumps({"v": 1, "type": "playback", "id": "a", "session": device.session,
                                                  "seq": 1, "event": "heartbeat", "cursor": None,
                                                  "queued_ms": 0, "stream_ms": 0}).encode()),  # replayed seq
        (f"{root}/Bad Id/up/hello", b"{}"),
        (f"{root}/dev1/status", b"maybe"),
    ]
    for topic, payload in bad:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while sum(server.inbound.rejected.values()) < len(bad) and time.monotonic() < deadline:
        time.sleep(0.05)
    reasons = server.inbound.rejected
    assert reasons["invalid"] >= 2 and reasons["oversized"] == 1 and reasons["replay"] == 1
    assert reasons["bad status"] == 1
    # both devices still get served
    device.say("tell me something")
    other.say("explain transformers")
    device.wait_for(lambda: device.segments)
    other.wait_for(lambda: other.segments)
    assert server.engine.counters["internal_error"] == 0
    other.stop()


def test_a_flood_of_bad_input_is_counted_in_full_logged_within_a_budget_and_published(
        broker, server, llm, device, caplog):
    """35,000 malformed messages once wrote 35,000 warning lines. Every one is still counted, by device
    and reason; a few lines per device and reason are written; dashboards read the counts, retained."""
    import logging

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from icp.messages.monitor import RejectionCounts, rejections_topic

    caplog.set_level(logging.WARNING, logger="segue.mqtt")
    n = 2000
    for i in range(n):
        info = device.client.publish("segue/dev1/up/utterance", b"{not json %d" % i, qos=0)
    info.wait_for_publish(10)
    device.client.publish("segue/dev1/up/playback", b"x" * 20000, qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 15
    while server.rejections.total("dev1") < n + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.rejections.counts["dev1"] == {"invalid": n, "oversized": 1}
    lines = [r for r in caplog.records if r.name == "segue.mqtt" and "rejected message" in r.getMessage()]
    assert len(lines) <= 2 * server.rejections.budget.per_interval  # two reasons, a few lines each
    # the tick after the interval writes one summary of what was suppressed
    server.rejections.tick(server.engine.clock() + server.rejections.budget.interval_s + 1)
    summaries = [r.getMessage() for r in caplog.records if "more like it suppressed" in r.getMessage()]
    assert any(f"{n - server.rejections.budget.per_interval} more" in m for m in summaries), summaries
    # a dashboard connecting later reads the counts (retained)
    got: list[bytes] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    watcher.on_message = lambda c, u, msg: got.append(msg.payload)
    watcher.on_connect = lambda c, u, f, r, p: c.subscribe(rejections_topic("segue", "dev1"), 1)
    watcher.connect("127.0.0.1", broker.port)
    watcher.loop_start()
    try:
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        counts = RejectionCounts.from_json(json.loads(got[-1]))
        assert counts.total >= 1 and dict(counts.reasons).keys() <= {"invalid", "oversized"}
    finally:
        watcher.loop_stop()
        watcher.disconnect()
    # and the conversation holds
    device.say("tell me something")
    device.wait_for(lambda: device.segments)


def test_cancel_closes_the_llm_stream(broker, tmp_path):
    slow = ScriptedLLMServer([{"default": EXPLANATION * 3}], chunk_delay_s=0.05).start()
    app = ServerApp(make_settings(broker, slow, tmp_path)).start()
    device = ProtocolDevice(broker.url)
    try:
        device.hello()
        device.say("talk for a long time")
        device.wait_for(lambda: device.segments and len(device.segments[0].pcm) > 0)
        device.play_ms(500)
        device.say("stop", interrupt=True)
        assert slow.wait_for(lambda s: s.cancelled_count >= 1, timeout=5)
        req = slow.requests[0]
        assert req.chunks_sent < req.chunks_total
    finally:
        device.stop()
        app.stop()
        slow.stop()


@pytest.mark.slow
def test_the_real_offline_llm_through_the_same_code_path(broker, tmp_path):
    """SmolLM2-135M under llama.cpp's OpenAI-compatible server: the reply reaches the device as audio."""
    from server.llama_server import LlamaServer

    with LlamaServer() as llama:
        base = load(None, env={})
        settings = replace(
            base, mqtt=apply_broker_url(base.mqtt, broker.url),
            llm=replace(base.llm, base_url=llama.base_url, model=llama.alias),
            tts=replace(base.tts, backend="espeak"),
            storage=replace(base.storage, state_dir=str(tmp_path / "state")),
            engine=replace(base.engine, max_tokens=60),
        )
        app = ServerApp(settings).start()
        device = ProtocolDevice(broker.url)
        try:
            device.hello()
            device.say("what is the capital of france")
            device.wait_for(lambda: device.segments and device.segments[0].complete, timeout=90)
            text = device.segments[0].seg.text
            assert text.strip() and len(device.segments[0].pcm) > 1000
        finally:
            device.stop()
            app.stop()



def test_a_worker_is_ready_only_once_the_broker_took_its_subscription(broker, llm, tmp_path):
    """`start()` returns once the broker acknowledged the subscription (a device's message published
    before it would be lost to this worker); a refusal (EMQX answers an ACL denial with 0x87 in the
    SUBACK; Mosquitto 2.0 grants and filters later) is never taken for readiness."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    app = ServerApp(make_settings(broker, llm, tmp_path)).start()
    try:
        mqtt = app.mqtt
        assert mqtt is not None and mqtt.connected.is_set() and mqtt.refused is None
        mqtt.connected.clear()
        mqtt._on_subscribe(mqtt.client, None, -1, [ReasonCode(PacketTypes.SUBACK, identifier=0)], None)
        assert not mqtt.connected.is_set()  # another subscription's SUBACK says nothing of ours
        mid = mqtt._sub_mid
        mqtt._on_subscribe(mqtt.client, None, mid, [ReasonCode(PacketTypes.SUBACK, identifier=0x87)], None)
        assert not mqtt.connected.is_set() and "Not authorized" in (mqtt.refused or "")
    finally:
        app.stop()
