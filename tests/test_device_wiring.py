"""The device's optional parts wired into the process: wake word, ASR, GPIO, dashboard commands,
telemetry, claim enrollment. Real broker, virtual sound card, real openwakeword and faster-whisper
models on espeak-ng speech where they are at hand; a scripted recogniser where only the wiring is
under test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from device import machine as m
from device.app import DeviceApp
from device.asr.base import Final, Partial
from device.audio import VirtualCard, VirtualCardSettings
from device.config import (AsrConfig, ClaimConfig, DeviceConfig, GpioConfig, TelemetryConfig, WakeWordConfig,
                           with_broker)
from device.models import openwakeword_dir
from icp.dispositions import Disposition
from icp.messages import Control, Direction, EngineState, Envelope, decode, encode
from icp.words import WordTiming
from tests.audio_fixtures import concat, have_espeak, silence, speech
from tests.test_device_mqtt import Engine, _segment

SR = 16000
ROOT = Path(__file__).resolve().parents[1]

needs_wake = pytest.mark.skipif(not (have_espeak() and (openwakeword_dir() / "hey_jarvis_v0.1.onnx").is_file()),
                                reason="needs espeak-ng, sox and the openwakeword models (scripts/setup.sh)")


# ---- helpers ---------------------------------------------------------------------------------------
def up(engine: Engine, level: str) -> list:
    with engine.lock:
        return [p for t, p in engine.up if t.endswith("/up/" + level)]


def wait(app: DeviceApp, pred, sim_s: float = 5.0, wall_s: float = 15.0) -> None:
    assert app.run_until(pred, sim_s, wall_timeout_s=wall_s), "condition not reached"


def settle(app: DeviceApp, sim_s: float = 0.3) -> None:
    """Let in-flight MQTT traffic arrive while simulated time runs a little."""
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        app.run(0.02)
        time.sleep(0.005)
    app.run(sim_s)


class ScriptedASR:
    """A stand-in recogniser: partial after every 0.5 s of audio, a fixed final (the wiring is under
    test, not the model)."""

    backend, language = "scripted", "en"

    def __init__(self, text: str = "turn on the lights") -> None:
        self.text = text
        self.fed = 0
        self.total = 0
        self.starts = 0
        self.finishes = 0

    def start(self) -> None:
        self.fed, self.starts = 0, self.starts + 1

    def feed(self, pcm) -> list[Partial]:
        before = self.fed
        self.fed += len(pcm)
        self.total += len(pcm)
        if self.fed // 8000 > before // 8000:
            return [Partial(self.text.split()[0], self.fed / 16)]
        return []

    def finish(self) -> Final:
        self.finishes += 1
        words = tuple(WordTiming(w, 100.0 + i * 300, 350.0 + i * 300) for i, w in enumerate(self.text.split()))
        return Final(self.text, words, self.fed / 16, self.backend, self.language)


@pytest.fixture(scope="module")
def detector():
    from device.wakeword import WakeWordDetector, WakeWordSettings

    return WakeWordDetector(WakeWordSettings(models=("hey_jarvis",), threshold=0.5, refractory_s=2.0))


def make_rig(broker, cfg: DeviceConfig, realtime: bool = False, **kw):
    cfg = with_broker(cfg, broker.url)
    card = VirtualCard(VirtualCardSettings(output_latency_ms=100, seed=1), realtime=realtime)
    app = DeviceApp(cfg, backend=card, **kw)
    engine = Engine(broker.port)
    app.start()
    wait(app, lambda: app.machine.online and up(engine, "hello"))
    return app, card, engine


@pytest.fixture
def rigs():
    made = []

    def close_all():
        for app, _card, engine in made:
            app.stop()
            engine.close()

    yield made
    close_all()


def hey_jarvis(card: VirtualCard, at_s: float | None = None) -> None:
    card.add_mic(concat(silence(300), speech("hey jarvis"), silence(800)), at_s=at_s)


# ---- wake word -------------------------------------------------------------------------------------
@needs_wake
@pytest.mark.broker
def test_wake_word_on_the_mic_sends_wake_event_and_listens(broker, rigs):
    cfg = DeviceConfig(wakeword=WakeWordConfig(enabled=True))
    app, card, engine = make_rig(broker, cfg)
    rigs.append((app, card, engine))
    assert "wake" in up(engine, "hello")[0]["capabilities"]
    assert "asr" not in up(engine, "hello")[0]["capabilities"]
    card.run(0.5)
    hey_jarvis(card)
    wait(app, lambda: up(engine, "wake") and up(engine, "event"), sim_s=5)
    wake = up(engine, "wake")[0]
    assert wake["source"] == "wake_word" and 0.5 <= wake["score"] <= 1.0
    assert up(engine, "event")[0]["event_type"] == "wake"
    assert app.state == m.State.LISTENING
    wait(app, lambda: [p["state"] for p in up(engine, "state")][-1:] == ["listening"])
    # one wake per phrase; ignored while listening; the listen timeout brings it back to idle
    app.run(9.0)
    assert len(up(engine, "wake")) == 1
    assert app.state == m.State.IDLE
    assert app.telemetry.wake_count == 1


@needs_wake
@pytest.mark.parametrize("while_speaking", [False, True])
def test_wake_word_listens_while_speaking_only_when_asked(detector, while_speaking):
    from device.playback import SegmentInfo

    from device.bargein import BargeInSettings

    # barge-in off (else the VAD pauses first): the case the wake word while speaking is for
    cfg = DeviceConfig(wakeword=WakeWordConfig(enabled=True, while_speaking=while_speaking),
                       bargein=BargeInSettings(enabled=False))
    card = VirtualCard(VirtualCardSettings())
    app = DeviceApp(cfg, backend=card, connect=False, wakeword=detector)
    app.start()
    detector.reset()
    app.playback.add_segment(SegmentInfo(1, 6 * SR))
    app.playback.add_audio(1, 0, np.zeros(6 * SR, np.int16), True)
    app._dispatch(m.SegmentQueued(1))
    fed = detector.samples_fed
    hey_jarvis(card)
    app.run(3.0)
    if while_speaking:  # a wake word while speaking interrupts like a barge-in
        assert app.state == m.State.PAUSED
        names = [type(b).__name__ for b in app.sent]
        assert "Interrupt" in names and "DeviceEvent" in names and "Wake" not in names
    else:
        assert app.state == m.State.SPEAKING and detector.samples_fed == fed
    app.stop()


# ---- ASR -------------------------------------------------------------------------------------------
@pytest.mark.broker
@needs_wake
def test_utterance_after_wake_streams_partials_and_a_final_with_words(broker, rigs, detector):
    """Wake word, then speech: partials while the user talks, a final after the VAD's silence."""
    asr = ScriptedASR("turn on the lights")
    cfg = DeviceConfig(wakeword=WakeWordConfig(enabled=True), asr=AsrConfig(backend="faster-whisper"))
    app, card, engine = make_rig(broker, cfg, wakeword=detector, asr=asr)
    rigs.append((app, card, engine))
    detector.reset()
    assert {"wake", "asr"} <= set(up(engine, "hello")[0]["capabilities"])
    said = concat(silence(300), speech("hey jarvis"), silence(700), speech("please turn on the lights in the kitchen"))
    start = card.time()
    card.add_mic(said, at_s=start)
    speech_end = start + len(said) / SR
    wait(app, lambda: any(u["final"] for u in up(engine, "utterance")), sim_s=12)
    utts = up(engine, "utterance")
    partials, final = [u for u in utts if not u["final"]], [u for u in utts if u["final"]]
    assert partials and len(final) == 1
    assert {u["utterance_id"] for u in utts} == {final[0]["utterance_id"]}
    assert final[0]["text"] == "turn on the lights" and len(final[0]["words"]) == 4
    assert asr.starts == 1 and asr.finishes == 1
    # the capture covered the spoken request and ended on silence, not on the max length
    fed_s = asr.fed / SR
    assert speech_end - start - 1.8 < fed_s < speech_end - start + 1.5
    assert app.state == m.State.THINKING


@needs_wake
@pytest.mark.slow
@pytest.mark.broker
def test_real_whisper_recognises_the_request_after_the_wake_word(broker, rigs, detector):
    """faster-whisper tiny.en on espeak speech at the virtual mic, in real time (latency measured)."""
    cfg = DeviceConfig(wakeword=WakeWordConfig(enabled=True), asr=AsrConfig(backend="faster-whisper"))
    app, card, engine = make_rig(broker, cfg, realtime=True, wakeword=detector)
    rigs.append((app, card, engine))
    detector.reset()
    assert app.asr.ready.wait(60) and app.asr.error is None
    request = speech("what is the weather like tomorrow")
    said = concat(silence(300), speech("hey jarvis"), silence(700), request, silence(200))
    t0 = card.time()
    card.add_mic(said, at_s=t0)
    wait(app, lambda: any(u["final"] for u in up(engine, "utterance")), sim_s=15, wall_s=30)
    end_of_speech = t0 + (len(said) - 200 * 16 - 300 * 16) / SR  # espeak pads 300 ms
    latency = card.time() - end_of_speech
    utts = up(engine, "utterance")
    final = [u for u in utts if u["final"]][0]
    text = final["text"].lower()
    assert "weather" in text and "tomorrow" in text, text
    assert any(not u["final"] and u["text"] for u in utts), "no partial"
    if final["words"]:  # the short final pass (the default) has no word timings; the window pass has
        assert [w["w"] for w in final["words"]][-1].lower().startswith("tomorrow")
    print(f"\nend of speech -> final: {latency * 1000:.0f} ms (end_silence 700 ms + VAD + final pass)")
    # ~0.9 s on an idle 2-core x86 (700 ms of it the end-of-utterance silence); generous under load,
    # yet well below the max-length cut (15 s)
    assert latency < 8.0


# ---- GPIO and mute ---------------------------------------------------------------------------------
@pytest.fixture
def pins():
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


GPIO = GpioConfig(enabled=True, orb_pins=(17, 27, 22), mute_pin=23, talk_pin=24, bounce_time_s=None,
                  hold_time_s=0.3)


def press(pins, pin: int, hold_s: float = 0.0) -> None:
    pins.pin(pin).drive_low()
    time.sleep(max(0.02, hold_s))
    pins.pin(pin).drive_high()
    time.sleep(0.02)


@needs_wake
@pytest.mark.broker
def test_mute_by_button_and_by_dashboard_stops_wake_and_asr(broker, rigs, pins, detector):
    asr = ScriptedASR()
    cfg = DeviceConfig(wakeword=WakeWordConfig(enabled=True), asr=AsrConfig(backend="faster-whisper"), gpio=GPIO)
    app, card, engine = make_rig(broker, cfg, wakeword=detector, asr=asr, gpio_pin_factory=pins)
    rigs.append((app, card, engine))
    caps = set(up(engine, "hello")[0]["capabilities"])
    assert {"wake", "asr", "gpio", "button"} <= caps
    assert app.gpio.orb_state == "idle"

    def last_state():
        return up(engine, "state")[-1]

    # the mute button: state muted, published retained; the orb goes red
    press(pins, 23)
    wait(app, lambda: last_state()["muted"] is True and last_state()["state"] == "muted")
    assert app.gpio.orb_state == "muted"
    fed = asr.total
    hey_jarvis(card)
    app.run(3.0)
    assert not up(engine, "wake") and asr.total == fed and asr.starts == 0
    press(pins, 23)
    wait(app, lambda: last_state()["muted"] is False)
    assert app.gpio.orb_state == "idle"

    # the dashboard: down/mute ON mutes (and the button's position follows), OFF unmutes
    engine.raw("mute", b"ON")
    wait(app, lambda: last_state()["muted"] is True)
    assert app.gpio.muted is True
    hey_jarvis(card)
    app.run(3.0)
    assert not up(engine, "wake") and asr.starts == 0
    engine.raw("mute", b"OFF")
    wait(app, lambda: last_state()["muted"] is False)
    detector.reset()
    hey_jarvis(card)
    # the capture opens on the recogniser's worker thread: wait for it, not just for the wake message
    wait(app, lambda: up(engine, "wake") and asr.starts == 1, sim_s=4)
    assert app.gpio.orb_state == "listening" and asr.starts == 1

    # muting mid-utterance drops the capture and closes the utterance empty
    card.add_mic(speech("turn on the lights"))
    app.run(0.5)
    engine.raw("mute", b"ON")
    wait(app, lambda: any(u["final"] for u in up(engine, "utterance")))
    final = [u for u in up(engine, "utterance") if u["final"]][0]
    assert final["text"] == "" and asr.finishes == 0
    fed = asr.total
    app.run(1.0)
    assert asr.total == fed and app.state == m.State.IDLE


@pytest.mark.broker
def test_talk_button_wakes_and_long_press_cancels_with_a_hint(broker, rigs, pins):
    app, card, engine = make_rig(broker, DeviceConfig(gpio=GPIO), gpio_pin_factory=pins)
    rigs.append((app, card, engine))
    press(pins, 24)
    wait(app, lambda: up(engine, "wake"))
    assert up(engine, "wake")[0]["source"] == "button" and app.state == m.State.LISTENING
    # a reply plays; holding the talk button pauses it and cancels, with the hint on both messages
    engine.send(_segment(1, 3 * SR))
    engine.audio(1, np.random.default_rng(0).integers(-4000, 4000, 3 * SR).astype(np.int16))
    wait(app, lambda: app.state == m.State.SPEAKING and card.ear.heard(1) > SR // 2)
    assert app.gpio.orb_state == "speaking"
    press(pins, 24, hold_s=0.6)
    wait(app, lambda: up(engine, "interrupt") and up(engine, "utterance"))
    intr, utt = up(engine, "interrupt")[0], up(engine, "utterance")[0]
    assert intr["hint"] == "cancel" and utt["hint"] == "cancel" and utt["final"]
    assert utt["utterance_id"] == intr["utterance_id"] and intr["cursor"]["segment"] == 1
    assert app.playback.paused and len(up(engine, "wake")) == 1  # a long press never starts a turn
    # the engine holds a thread and goes idle: the orb shows the held thread
    engine.send(Control("flush", "BRANCH", Disposition.BRANCH))
    engine.seq += 1  # engine_state travels on down/state
    data = encode(Envelope("eng1", engine.seq, f"m{engine.seq}", EngineState("idle", 1)))
    engine.c.publish("segue/dev1/down/state", data, qos=1).wait_for_publish(5)
    wait(app, lambda: app.state == m.State.IDLE)
    assert app.gpio.orb_state == "branch_held"
    # offline shows on the orb (recorded as it is set: the link may be back before the next look)
    shown: list[str] = []
    set_orb = app.gpio.set_orb
    app.gpio.set_orb = lambda state: (shown.append(state), set_orb(state))[-1]
    app.link.drop_connection()
    # the loss is seen on paho's thread in wall time: simulated time must not run out first (the card
    # steps far faster than real time; 5 simulated seconds went by before paho noticed, 2 runs in ~25)
    wait(app, lambda: "offline" in shown, sim_s=600.0, wall_s=5)


# ---- dashboard commands ----------------------------------------------------------------------------
@pytest.mark.broker
def test_bad_dashboard_payloads_are_rejected_with_a_reason(broker, rigs):
    # a retained PRESS left on the broker reaches the device at every (re)subscribe: refused
    pre = Engine(broker.port, device="dev1")
    pre.c.publish("segue/dev1/down/restart", b"PRESS", qos=1, retain=True).wait_for_publish(5)
    pre.close()
    try:
        app, card, engine = make_rig(broker, DeviceConfig())
        rigs.append((app, card, engine))
        for payload in (b"on", b"TOGGLE", b"", b"ON ", b'{"state": "ON"}', b"\xff\xfe"):
            engine.raw("mute", payload)
        engine.raw("restart", b"press")
        wait(app, lambda: len(app.link.rejected) >= 8)
        reasons = " | ".join(app.link.rejected)
        assert "mute payload must be ON or OFF" in reasons and "'TOGGLE'" in reasons
        assert "restart payload must be PRESS" in reasons and "retained restart is refused" in reasons
        settle(app)
        assert not app.machine.muted and not app.restart_requested
        assert all(p["muted"] is False for p in up(engine, "state"))
    finally:
        pre = Engine(broker.port, device="dev1")
        pre.c.publish("segue/dev1/down/restart", b"", qos=1, retain=True).wait_for_publish(5)  # clear it
        pre.close()


@pytest.mark.broker
def test_restart_command_stops_the_loop_in_process(broker, rigs):
    app, card, engine = make_rig(broker, DeviceConfig())
    rigs.append((app, card, engine))
    called = []
    app.on_restart = lambda: called.append(True)
    engine.raw("restart", b"PRESS")
    wait(app, lambda: app.restart_requested)
    assert called == [True]
    app.serve()  # returns at once: the loop is stopped


def _spawn_device(broker, tmp_path: Path, device_id: str, restart: str = "exit") -> subprocess.Popen:
    conf = tmp_path / "device.toml"
    conf.write_text(f'[device]\nid = "{device_id}"\nrestart = "{restart}"\n'
                    '[audio]\nbackend = "virtual"\n[aec]\nbackend = "none"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "device.cli", "--config", str(conf), "--broker", broker.url,
                             "--log-level", "WARNING"], env=env, cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.broker
def test_segue_device_exits_for_systemd_on_restart_press(broker, tmp_path):
    engine = Engine(broker.port, device="devr")
    proc = _spawn_device(broker, tmp_path, "devr")
    try:
        deadline = time.monotonic() + 20
        while not up(engine, "hello") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert up(engine, "hello"), proc.stderr.read() if proc.poll() is not None else "no hello"
        engine.raw("restart", b"PRESS")
        code = proc.wait(timeout=15)
        assert code == 75  # [device] restart_exit_code: systemd's Restart= starts it again
        with engine.lock:
            status = [p for t, p in engine.up if t.endswith("/status")]
        assert status[-1] == b"offline"  # a clean goodbye, not a Last Will after a timeout
    finally:
        if proc.poll() is None:
            proc.kill()
        engine.close()


@pytest.mark.broker
def test_segue_device_reexecs_itself_with_restart_exec(broker, tmp_path):
    engine = Engine(broker.port, device="devx")
    proc = _spawn_device(broker, tmp_path, "devx", restart="exec")
    try:
        deadline = time.monotonic() + 20
        while not up(engine, "hello") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert up(engine, "hello")
        engine.raw("restart", b"PRESS")
        deadline = time.monotonic() + 25
        while len(up(engine, "hello")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        hellos = up(engine, "hello")
        assert len(hellos) == 2 and hellos[0]["session"] != hellos[1]["session"]  # a new process session
        assert proc.poll() is None  # the same pid lives on (exec)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        engine.close()


# ---- telemetry and events --------------------------------------------------------------------------
@pytest.mark.broker
def test_telemetry_and_disposition_events_validate_with_the_codec(broker, rigs, tmp_path):
    thermal = tmp_path / "temp"
    thermal.write_text("48312\n")
    cfg = DeviceConfig(telemetry=TelemetryConfig(interval_s=1.0, thermal_path=str(thermal)))
    app, card, engine = make_rig(broker, cfg)
    rigs.append((app, card, engine))
    app.wake("button")
    engine.send(_segment(1, 2 * SR))
    engine.audio(1, np.random.default_rng(1).integers(-4000, 4000, 2 * SR).astype(np.int16))
    wait(app, lambda: app.state == m.State.SPEAKING and card.ear.heard(1) > 4000)
    app.inject_speech_onset()
    app.inject_text("uh huh")
    engine.send(Control("resume", "ABSORB", Disposition.ABSORB))
    wait(app, lambda: app.state == m.State.SPEAKING and not app.playback.paused)
    app.inject_speech_onset()
    app.inject_text("wait, what is that")
    engine.send(Control("flush", "BRANCH", Disposition.BRANCH))
    wait(app, lambda: app.state == m.State.THINKING)
    settle(app, 1.2)
    wait(app, lambda: len(up(engine, "telemetry")) >= 2 and up(engine, "telemetry")[-1]["interruptions"]["BRANCH"])
    for raw in up(engine, "telemetry") + up(engine, "event"):
        kind = raw["type"]
        decode(json.dumps(raw).encode(), Direction.UP, kind)  # every field by the codec's rules
    t = up(engine, "telemetry")[-1]
    assert t["cpu_temp_c"] == pytest.approx(48.3)
    assert t["wake_count"] == 1 and t["interruptions"] == {"BRANCH": 1, "MODIFY": 0, "CANCEL": 0, "ABSORB": 1}
    assert t["uptime_s"] > 0 and t["rtt_ms"] is not None and 0 <= t["rtt_ms"] < 2000
    lags = [x["cursor_lag_ms"] for x in up(engine, "telemetry") if x["cursor_lag_ms"] is not None]
    assert all(0 <= lag < 100 for lag in lags), lags  # the loop runs every buffer (20 ms) here
    events = [e["event_type"] for e in up(engine, "event")]
    assert events == ["wake", "interrupt_absorb", "interrupt_branch"]
    assert app.telemetry.interrupts_sent == 2


def test_cpu_temperature_is_null_where_unreadable(tmp_path):
    from device.telemetry import read_cpu_temp

    assert read_cpu_temp(str(tmp_path / "missing")) is None
    (tmp_path / "bad").write_text("hot")
    assert read_cpu_temp(str(tmp_path / "bad")) is None
    (tmp_path / "t").write_text("51000")
    assert read_cpu_temp(str(tmp_path / "t")) == 51.0


# ---- the machine's listening rules (pure) ----------------------------------------------------------
def _asr_machine(**kw) -> m.Machine:
    return m.Machine(m.MachineSettings(asr=True, **kw), online=True)


def kinds(cmds) -> list[str]:
    """What was sent and done, heartbeats aside; the orb and mic-consumer updates are looked at elsewhere."""
    return [type(c).__name__ for c in cmds if not isinstance(c, (m.SendPlayback, m.SetOrb, m.SetListening))]


def no_effect(cmds) -> bool:
    return all(isinstance(c, m.Ignored) for c in cmds)


def test_capture_opens_at_wake_and_ends_on_silence_after_speech():
    mc = _asr_machine()
    cmds = mc.handle(m.WakeDetected("wake_word", 0.9), 1.0)
    assert kinds(cmds)[:3] == ["SendWake", "SendEvent", "StartCapture"]
    uid = mc.capture
    # the wake word's own tail (speech already going on at the wake) does not end the capture
    mc.handle(m.SpeechEnded(1.1), 1.6)
    assert mc.handle(m.Tick(), 2.5) == [] and mc.capture == uid
    mc.handle(m.SpeechStarted(2.6), 2.7)
    assert kinds(mc.handle(m.AsrPartial(uid, "turn on"), 3.0)) == ["SendUtterance"]
    mc.handle(m.SpeechEnded(3.5), 4.0)
    assert mc.handle(m.Tick(), 4.1) == []  # 600 ms of silence: not yet
    assert kinds(mc.handle(m.Tick(), 4.21)) == ["FinishCapture"]
    cmds = mc.handle(m.AsrFinal(uid, "turn on the lights", (WordTiming("turn", 0, 100),)), 4.6)
    assert cmds[0] == m.SendUtterance(uid, "turn on the lights", True, None, (WordTiming("turn", 0, 100),))
    assert mc.state == m.State.THINKING
    assert no_effect(mc.handle(m.AsrFinal(uid, "late duplicate", ()), 4.7))


def test_capture_max_length_and_no_speech_timeout():
    mc = _asr_machine(max_utterance_s=5.0, listen_timeout_s=3.0)
    mc.handle(m.WakeDetected(), 0.0)
    cmds = mc.handle(m.Tick(), 3.1)  # nobody spoke: cancelled, closed empty, idle
    assert kinds(cmds)[:2] == ["CancelCapture", "SendUtterance"] and cmds[1].text == "" and cmds[1].final
    assert mc.state == m.State.IDLE
    mc.handle(m.WakeDetected(), 10.0)
    mc.handle(m.SpeechStarted(10.2), 10.3)  # talks and never stops
    assert kinds(mc.handle(m.Tick(), 15.1)) == ["FinishCapture"]


def test_bargein_opens_a_capture_with_preroll_and_a_short_backchannel_ends_it():
    mc = _asr_machine()
    mc.handle(m.SegmentQueued(1), 0.0)
    cmds = mc.handle(m.SpeechStarted(2.0), 2.06)
    assert kinds(cmds)[:3] == ["PausePlayback", "SendInterrupt", "StartCapture"]
    assert cmds[2].from_s == pytest.approx(1.7)
    mc.handle(m.SpeechEnded(2.2), 2.7)  # "mm": 200 ms is enough once the onset was seen
    assert kinds(mc.handle(m.Tick(), 2.95)) == ["FinishCapture"]
    assert mc.state == m.State.PAUSED


def test_muted_machine_ignores_wake_talk_and_speech():
    mc = _asr_machine()
    mc.handle(m.MuteSet(True), 0.0)
    for ev in (m.WakeDetected(), m.TalkPressed(0.1), m.SpeechStarted(0.1), m.TextHeard("hi", True)):
        assert no_effect(mc.handle(ev, 0.2))
    assert mc.capture is None


def test_text_mode_is_unchanged_without_asr():
    mc = m.Machine(online=True)  # the machine sends nothing while the link is down
    cmds = mc.handle(m.WakeDetected("button"), 0.0)
    assert kinds(cmds) == ["SendWake", "SendEvent", "SendState"] and mc.capture is None
    cmds = mc.handle(m.TextHeard("hello", True), 0.5)
    assert kinds(cmds)[0] == "SendUtterance" and mc.state == m.State.THINKING


def test_default_config_adds_nothing_to_the_text_mode_device():
    app = DeviceApp(DeviceConfig(), backend=VirtualCard(VirtualCardSettings()), connect=False)
    assert app.wakeword is None and app.asr is None and app.gpio is None and app.mic.listeners == []
    assert [c.value for c in app.capabilities()] == ["aec", "vad"]


# ---- claim enrollment ------------------------------------------------------------------------------
def test_claim_enrollment_on_first_boot_then_the_credential_is_used(tmp_path):
    from device.enroll import ensure_credential

    claim = tmp_path / "claim.toml"
    claim.write_text('[mqtt]\nhost = "fleet"\nport = 1883\nusername = "svc.claim"\npassword = "x"\n'
                     '[claim]\nserial = "SN0042"\n')
    cred = tmp_path / "state" / "device.toml"
    calls = []

    def fake_enroll(bundle, serial, out, timeout, host):
        calls.append((bundle, serial, timeout))
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text('[mqtt]\nhost = "broker.example"\nport = 8883\nusername = "living-room"\n'
                             'password = "s3cret"\nclient_id = "living-room"\ntopic_root = "segue"\n'
                             '\n[device]\nid = "living-room"\n')

    cfg = DeviceConfig(claim=ClaimConfig(bundle=str(claim), credential=str(cred), timeout_s=3.0))
    out = ensure_credential(cfg, enroll=fake_enroll)
    assert calls == [(str(claim), "SN0042", 3.0)]
    assert (out.mqtt.host, out.mqtt.port, out.mqtt.username, out.mqtt.client_id) == \
        ("broker.example", 8883, "living-room", "living-room")
    assert out.device.id == "living-room" and out.mqtt.password == "s3cret"
    # second boot: no claim, the stored credential
    out2 = ensure_credential(cfg, enroll=lambda *a, **k: pytest.fail("enrolled twice"))
    assert out2 == out
    # no [claim] bundle: nothing happens
    assert ensure_credential(DeviceConfig(), enroll=lambda *a, **k: pytest.fail("no claim")) == DeviceConfig()


def test_claim_failures_say_whether_to_retry(tmp_path):
    from device.enroll import EnrollmentError, ensure_credential

    cfg = DeviceConfig(claim=ClaimConfig(bundle=str(tmp_path / "claim.toml"), serial="SN1",
                                         credential=str(tmp_path / "dev.toml")))

    def timeout(*a, **k):
        raise TimeoutError("no reply from the fleet")

    def refused(*a, **k):
        raise RuntimeError("serial not allow-listed")

    with pytest.raises(EnrollmentError) as e:
        ensure_credential(cfg, enroll=timeout)
    assert e.value.retry
    with pytest.raises(EnrollmentError) as e:
        ensure_credential(cfg, enroll=refused)
    assert not e.value.retry and "allow-listed" in str(e.value)


# ---- settings --------------------------------------------------------------------------------------
def test_settings_parse_and_help_lists_every_section(tmp_path):
    from device import cli, config

    doc = {"wakeword": {"enabled": True, "models": ["alexa"], "while_speaking": True},
           "asr": {"backend": "auto", "end_silence_ms": 900},
           "gpio": {"enabled": True, "orb_pins": [], "mute_pin": -1},
           "telemetry": {"interval_s": 10}, "claim": {"bundle": "/etc/segue/claim.toml"}}
    c = config.from_dict(doc)
    assert c.wakeword.models == ("alexa",) and c.asr.end_silence_ms == 900
    assert c.gpio.orb_pins is None and c.gpio.mute_pin is None and c.gpio.talk_pin == 24
    with pytest.raises(ValueError, match="backend"):
        config.from_dict({"asr": {"backend": "siri"}})
    with pytest.raises(ValueError, match="unknown setting"):
        config.from_dict({"wakeword": {"treshold": 0.3}})
    text = cli.build_parser().format_help()
    for section in ("[wakeword]", "[asr]", "[gpio]", "[telemetry]", "[claim]", "down/mute", "restart_exit_code"):
        assert section in text
    example = config.load(ROOT / "device" / "example.toml")
    assert example.wakeword.enabled and example.asr.backend == "auto" and example.gpio.enabled


def test_dispositions_count_only_after_an_interrupt_this_device_sent():
    mc = m.Machine(online=True)  # the machine sends nothing while the link is down
    mc.handle(m.SegmentQueued(1), 0.0)
    assert not [c for c in mc.handle(m.ControlReceived("flush", "RESTART"), 0.5) if isinstance(c, m.SendEvent)]
    mc.handle(m.SegmentQueued(2), 1.0)
    mc.handle(m.SpeechStarted(1.1), 1.2)
    events = [c.event_type for c in mc.handle(m.ControlReceived("flush", "CANCEL", "CANCEL"), 2.0) if isinstance(c, m.SendEvent)]
    assert events == ["interrupt_cancel"]
    assert not [c for c in mc.handle(m.ControlReceived("flush", "RESEND"), 2.5) if isinstance(c, m.SendEvent)]
