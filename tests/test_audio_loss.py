"""`segue-device` as a process on PortAudio over a PulseAudio that dies under it.

A sound card can vanish (a USB card unplugged, PulseAudio or PipeWire restarted). The device must
say so (retained state `error`, an `audio_lost` event), keep trying to reopen the card, exit with 74
for systemd to restart it when it cannot, and end within a second on SIGTERM in every state.
Everything is real: Mosquitto, PulseAudio, the `segue-device` command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SEGUE_DEVICE = str(Path(sys.executable).with_name("segue-device"))


class Watch:
    """Everything a device publishes under segue/<id>/up and status, with arrival times."""

    def __init__(self, broker_url: str, device_id: str) -> None:
        import paho.mqtt.client as mqtt
        from urllib.parse import urlsplit

        u = urlsplit(broker_url)
        self.msgs: list[tuple[float, str, bytes]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u_, m: self._add(m.topic, m.payload)
        self.client.connect(u.hostname, u.port)
        self.client.subscribe(f"segue/{device_id}/#", qos=1)
        self.client.loop_start()

    def _add(self, topic: str, payload: bytes) -> None:
        with self.lock:
            self.msgs.append((time.monotonic(), topic, payload))

    def wait(self, pred, timeout: float, what: str) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                for t, topic, payload in self.msgs:
                    if pred(topic, payload):
                        return t
            time.sleep(0.02)
        with self.lock:
            seen = [(topic, payload[:120]) for _, topic, payload in self.msgs[-15:]]
        raise AssertionError(f"{what} not seen within {timeout} s; last messages: {seen}")

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _body(payload: bytes) -> dict:
    try:
        doc = json.loads(payload)
    except ValueError:
        return {}
    return doc.get("body", doc) if isinstance(doc, dict) else {}


def _state_is(status: str):
    return lambda topic, payload: topic.endswith("/up/state") and _body(payload).get("state") == status


def _event_is(kind: str):
    return lambda topic, payload: topic.endswith("/up/event") and _body(payload).get("event_type") == kind


@pytest.fixture
def pulse():
    from tests.support.pulse import PulseAudio, PulseUnavailable

    try:
        server = PulseAudio(sample_rate=16000, source="null").start()
    except PulseUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    yield server
    server.stop()


def _start_device(tmp_path: Path, broker_url: str, device_id: str, pulse, give_up_s: float) -> subprocess.Popen:
    cfg = tmp_path / "device.toml"
    cfg.write_text(f"[audio]\nbackend = \"portaudio\"\nstall_s = 1.0\nretry_s = 0.5\ngive_up_s = {give_up_s}\n"
                   "[aec]\nbackend = \"none\"\n")
    env = dict(os.environ, **pulse.client_env())
    log = open(tmp_path / "device.log", "wb")  # noqa: SIM115 - the process owns it
    return subprocess.Popen([SEGUE_DEVICE, "--config", str(cfg), "--broker", broker_url, "--id", device_id],
                            env=env, stdout=log, stderr=subprocess.STDOUT)


def _log(tmp_path: Path) -> str:
    return (tmp_path / "device.log").read_text(errors="replace")[-3000:]


def _sigterm_exit_s(proc: subprocess.Popen) -> float:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return float("inf")
    return time.monotonic() - t0


def test_sigterm_while_audio_alive_exits_within_a_second(tmp_path, broker, pulse):
    watch = Watch(broker.url, "aud1")
    proc = _start_device(tmp_path, broker.url, "aud1", pulse, give_up_s=30)
    try:
        watch.wait(_state_is("idle"), 15, "the device's idle state")
        time.sleep(1.0)  # audio running
        assert proc.poll() is None, _log(tmp_path)
        took = _sigterm_exit_s(proc)
        print(f"\n[audio-loss] SIGTERM with audio alive: exited in {took * 1000:.0f} ms, code {proc.returncode}")
        assert took < 1.0, f"took {took:.2f} s to exit on SIGTERM\n{_log(tmp_path)}"
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        watch.stop()


def test_sound_server_killed_reports_error_and_sigterm_still_works(tmp_path, broker, pulse):
    watch = Watch(broker.url, "aud2")
    proc = _start_device(tmp_path, broker.url, "aud2", pulse, give_up_s=30)
    try:
        watch.wait(_state_is("idle"), 15, "the device's idle state")
        time.sleep(1.0)
        killed = time.monotonic()
        pulse.proc.kill()
        pulse.proc.wait(5)
        t_err = watch.wait(_state_is("error"), 10, "retained state `error`")
        t_evt = watch.wait(_event_is("audio_lost"), 10, "event `audio_lost`")
        print(f"\n[audio-loss] sound server killed: state error after {t_err - killed:.2f} s, "
              f"event after {t_evt - killed:.2f} s")
        assert t_err - killed < 5
        time.sleep(1.5)  # several reopen attempts against the dead server
        assert proc.poll() is None, "the device gave up before give_up_s"
        took = _sigterm_exit_s(proc)
        print(f"[audio-loss] SIGTERM with the sound server gone: exited in {took * 1000:.0f} ms")
        assert took < 1.0, f"took {took:.2f} s to exit on SIGTERM\n{_log(tmp_path)}"
        assert "sound card lost" in (tmp_path / "device.log").read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        watch.stop()


def test_device_exits_74_when_the_card_stays_lost(tmp_path, broker, pulse):
    watch = Watch(broker.url, "aud3")
    proc = _start_device(tmp_path, broker.url, "aud3", pulse, give_up_s=3)
    try:
        watch.wait(_state_is("idle"), 15, "the device's idle state")
        pulse.proc.kill()
        pulse.proc.wait(5)
        killed = time.monotonic()
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 15 s after the sound server died\n{_log(tmp_path)}")
        print(f"\n[audio-loss] gave up after {time.monotonic() - killed:.1f} s with exit code {code}")
        assert code == 74, _log(tmp_path)
        assert "exiting with 74" in _log(tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
        watch.stop()
