"""The device process end to end through a real Mosquitto, on the virtual sound card."""

import json
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from device.app import DeviceApp
from device.audio import VirtualCard, VirtualCardSettings
from device.config import DeviceConfig, with_broker
from device.machine import State
from icp.dispositions import Disposition
from icp.messages import AudioFrame, Control, Envelope, Segment, encode
from icp.words import WordTiming

pytestmark = pytest.mark.broker
SR = 16000


class Engine:
    """A stand-in engine: publishes down messages, records up messages."""

    def __init__(self, port: int, device: str = "dev1") -> None:
        self.device = device
        self.up: list[tuple[str, dict | bytes]] = []
        self.lock = threading.Lock()
        self.seq = 0
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="engine", protocol=mqtt.MQTTv5)
        self.c.on_message = self._msg
        ready = threading.Event()
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.c.subscribe(f"segue/{device}/#", qos=1)
        assert ready.wait(5)

    def _msg(self, client, userdata, msg):
        with self.lock:
            try:
                self.up.append((msg.topic, json.loads(msg.payload)))
            except ValueError:
                self.up.append((msg.topic, msg.payload))

    def of(self, level):
        with self.lock:
            return [p for t, p in self.up if t.endswith("/" + level)]

    def send(self, body, seq=None, session="eng1"):
        self.seq = self.seq + 1 if seq is None else seq
        data = encode(Envelope(session, self.seq, f"m{self.seq}", body))
        self.c.publish(f"segue/{self.device}/down/{body.TYPE}", data, qos=1).wait_for_publish(5)

    def raw(self, level, payload):
        self.c.publish(f"segue/{self.device}/down/{level}", payload, qos=1).wait_for_publish(5)

    def audio(self, segment, pcm, chunk=8000):
        for off in range(0, len(pcm), chunk):
            f = AudioFrame(segment, off, pcm[off : off + chunk].astype("<i2").tobytes(), off + chunk >= len(pcm))
            self.c.publish(f"segue/{self.device}/down/audio", f.encode(), qos=1).wait_for_publish(5)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def _segment(seg, n):
    words = tuple(WordTiming(f"w{i}", i * 250.0, i * 250.0 + 200) for i in range(int(n / SR * 4)))
    return Segment(seg, "item1", "thread1", " ".join(w.word for w in words), words, 0, SR, n)


@pytest.fixture
def rig(broker):
    cfg = with_broker(DeviceConfig(), broker.url)
    card = VirtualCard(VirtualCardSettings(output_latency_ms=100, jitter_ms=2, seed=1))
    app = DeviceApp(cfg, backend=card)
    engine = Engine(broker.port)
    app.start()
    assert app.run_until(lambda: app.machine.online and engine.of("hello"), 5.0, wall_timeout_s=10)
    yield app, card, engine
    app.stop()
    engine.close()


def _wait(app, pred, sim_s=5.0):
    assert app.run_until(pred, sim_s, wall_timeout_s=10), "condition not reached"


def test_plays_reports_and_interrupts_with_exact_cursor(rig):
    app, card, engine = rig
    status = [p for t, p in engine.up if t.endswith("/status")]
    assert status and status[-1] == b"online"
    pcm = np.random.default_rng(0).integers(-8000, 8000, 3 * SR).astype(np.int16)
    engine.send(_segment(1, len(pcm)))
    engine.audio(1, pcm)
    _wait(app, lambda: app.playback.queued_ms(card.time()) >= 2999)
    _wait(app, lambda: card.ear.heard(1) > SR)  # a second has been heard
    assert app.state == State.SPEAKING
    assert any(p["event"] == "heartbeat" for p in engine.of("playback"))
    app.inject_speech_onset()
    app.process()
    assert app.state == State.PAUSED
    _wait(app, lambda: engine.of("interrupt"))
    intr = engine.of("interrupt")[0]
    app.run(0.5)
    assert (intr["cursor"]["segment"], intr["cursor"]["sample"]) == card.ear.last_heard()
    heard_at_pause = card.ear.heard(1)
    # resume continues from the exact sample
    engine.send(Control("resume", "ABSORB", Disposition.ABSORB))
    _wait(app, lambda: engine.of("playback") and engine.of("playback")[-1]["event"] in ("resumed", "heartbeat")
          and app.state == State.SPEAKING)
    _wait(app, lambda: any(p["event"] == "segment_end" for p in engine.of("playback")), 5.0)
    assert card.ear.sequence(1) == [(0, len(pcm))]
    assert heard_at_pause < len(pcm)
    end = [p for p in engine.of("playback") if p["event"] == "segment_end"][0]
    assert end["cursor"] == {"segment": 1, "sample": len(pcm)}
    _wait(app, lambda: any(p["event"] == "idle" for p in engine.of("playback")))
    assert app.state == State.IDLE
    # the retained state follows: paused, then speaking again, then idle (in that order)
    _wait(app, lambda: [p["state"] for p in engine.of("state")][-1:] == ["idle"])
    states = [p["state"] for p in engine.of("state")]
    after_pause = states[len(states) - 1 - states[::-1].index("paused"):]
    assert after_pause[0] == "paused" and "speaking" in after_pause and after_pause[-1] == "idle"


def test_the_device_socket_has_nagle_off(rig):
    """Interrupts and playback reports must not wait for the broker's delayed ACK (servicekit.net)."""
    import socket

    app, _, _ = rig
    sock = app.link._client.socket()
    assert sock is not None and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_bad_down_messages_are_rejected_without_crashing(rig):
    app, card, engine = rig
    engine.raw("control", b"{not json")
    engine.raw("control", json.dumps({"v": 2, "type": "control", "id": "x", "session": "eng1", "seq": 1,
                                      "action": "pause", "reason": ""}).encode())
    engine.raw("control", b"x" * 20000)
    engine.raw("audio", b"SGA\x01" + b"\x00" * 5)
    engine.send(Control("pause", "test"), seq=5)
    engine.send(Control("flush", "test"), seq=5)  # replay
    engine.raw("segment", json.dumps({**json.loads(encode(Envelope("eng1", 9, "m9", _segment(2, SR)))),
                                      "extra": 1}).encode())
    _wait(app, lambda: len(app.link.rejected) >= 6 and app.playback.paused, 2.0)
    reasons = " | ".join(app.link.rejected)
    assert "version" in reasons and "replayed" in reasons and "extra" in reasons
    assert app.playback.paused  # the valid pause was applied
    assert app.state != State.SPEAKING
    # still alive and serving
    engine.send(Control("resume", "test"), seq=10)
    _wait(app, lambda: not app.playback.paused)


def test_text_mode_interrupt_and_reconnect_reports_cursor(rig):
    app, card, engine = rig
    pcm = np.random.default_rng(1).integers(-8000, 8000, 2 * SR).astype(np.int16)
    engine.send(_segment(1, len(pcm)))
    engine.audio(1, pcm)
    _wait(app, lambda: card.ear.heard(1) > 8000)
    app.inject_text("wait, what is attention?")
    app.process()
    assert app.state == State.PAUSED
    _wait(app, lambda: engine.of("utterance") and engine.of("interrupt"))
    u = engine.of("utterance")[0]
    assert u["final"] and u["text"] == "wait, what is attention?"
    assert u["utterance_id"] == engine.of("interrupt")[0]["utterance_id"]
    n_hello = len(engine.of("hello"))
    n_playback = len(engine.of("playback"))
    app.link.drop_connection()
    _wait(app, lambda: len(engine.of("hello")) > n_hello, 30.0)
    _wait(app, lambda: any(p["event"] == "heartbeat" for p in engine.of("playback")[n_playback:]), 30.0)
    hb = [p for p in engine.of("playback")[n_playback:] if p["event"] == "heartbeat"][-1]
    assert hb["cursor"] == engine.of("interrupt")[0]["cursor"]


def test_a_flood_of_bad_input_is_counted_but_not_logged_line_by_line(rig, caplog):
    app, card, engine = rig
    n = 600
    with caplog.at_level("WARNING", logger="device.mqtt"):
        for i in range(n):
            engine.c.publish(f"segue/{engine.device}/down/control", b"{not json" + str(i).encode(), qos=0)
        engine.raw("control", b"{last")
        deadline = time.monotonic() + 10
        while sum(app.link.rejected_counts.values()) < n + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sum(app.link.rejected_counts.values()) == n + 1, app.link.rejected_counts
    lines = [r for r in caplog.records if r.name == "device.mqtt" and "rejected" in r.getMessage()]
    assert 1 <= len(lines) <= 10, f"{len(lines)} log lines for {n + 1} bad messages"
    assert app.machine.online  # the conversation's link held
