"""Several engine workers on one fleet: Redis state, ownership, forwarding through Mosquitto's
round-robin shared subscription (the worst case for routing), metrics. Real Mosquitto, real
redis-server, the real openai client against the scripted server, espeak-ng."""

from __future__ import annotations

import shutil
import time
import urllib.request
from dataclasses import replace

import pytest

from evaluation.openai_server import ScriptedLLMServer
from evaluation.protocol_device import ProtocolDevice
from server.app import ServerApp
from server.metrics import METRICS
from tests.support.redis_server import RedisServer
from tests.test_server import EXPLANATION, RULES, assistant_words, go_back_scenario, make_settings

pytestmark = pytest.mark.broker


@pytest.fixture
def redis_url(tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        yield server.url


@pytest.fixture
def llm():
    with ScriptedLLMServer(RULES, chunk_delay_s=0.002) as server:
        yield server


def worker(broker, llm, tmp_path, redis_url, **extra) -> ServerApp:
    settings = make_settings(broker, llm, tmp_path)
    settings = replace(settings, storage=replace(settings.storage, url=redis_url), **extra)
    return ServerApp(settings).start()


def test_two_workers_carry_a_go_back_conversation_with_one_owner(broker, llm, tmp_path, redis_url):
    apps = [worker(broker, llm, tmp_path, redis_url) for _ in range(2)]
    device = ProtocolDevice(broker.url)
    try:
        device.hello()
        parent, heard = go_back_scenario(device, llm, heard_ms=3300)
        assert 3 <= len(heard) < 40
        assert assistant_words(llm.requests[1].messages) == heard
        n_before = len(device.segments)
        device.say("okay go back")
        device.wait_for(lambda: len(device.segments) > n_before + 1)
        resumed = device.segments[n_before].seg
        assert resumed.item != parent
        content = " ".join(s.seg.text for s in device.segments[n_before:]).split()[resumed.bridge_words:]
        words = llm.requests[0].reply.split()
        start = words.index(content[0], max(0, len(heard) - 1))
        assert start in (len(heard) - 1, len(heard))  # from the first word not fully heard
        owners = [app for app in apps if app.ownership.owns("dev1")]
        assert len(owners) == 1  # one owner acted; the other forwarded what the broker gave it
        assert sum(app.fleet.forwarded for app in apps) > 0
        assert not [app for app in apps if app is not owners[0] and "dev1" in app.engine.devices]
        rejected = sum(sum(app.inbound.rejected.values()) for app in apps)
        assert rejected == 0, [app.inbound.rejected for app in apps]
    finally:
        device.stop()
        for app in apps:
            app.stop()


def test_metrics_endpoint_serves_every_documented_metric(broker, llm, tmp_path, redis_url):
    from evaluation.broker import free_port

    port = free_port()
    app = worker(broker, llm, tmp_path, redis_url, metrics_port=port)
    device = ProtocolDevice(broker.url)
    try:
        device.hello()
        device.say("explain how transformers work")
        device.wait_for(lambda: device.segments and device.segments[0].complete)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        device.stop()
        app.stop()
    for name in METRICS:
        assert f"\n# HELP {name} " in text or text.startswith(f"# HELP {name} "), name
    samples = {line.split(" ")[0] for line in text.splitlines() if line.startswith("segue_")}
    assert 'segue_events_total{kind="UtteranceFinal"}' in samples
    assert "segue_llm_first_token_seconds_count" in samples and "segue_tts_seconds_count" in samples
    assert "segue_owned_devices" in samples and "segue_takeovers_total" in samples
    docs = open("docs/fleet-scale.md").read()
    assert all(name in docs for name in METRICS)  # the docs list what the endpoint serves


FAILOVER_CONFIG = '[engine]\nauto_resume_delay_s = 60.0\n'  # (auto_resume = "off" is refused by the loader: reported)


def play_realtime(device: ProtocolDevice, seconds: float, step_ms: float = 100.0) -> None:
    """Play what is queued in real time, a heartbeat per step (as a device does); never block on audio."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        device.play_ms(step_ms, wait=False)
        time.sleep(step_ms / 1000.0)


def commands_seen(device: ProtocolDevice) -> int:
    with device.lock:
        return len(device.controls) + len(device.segments) + len(device.states)


@pytest.fixture
def two_workers(broker, tmp_path, redis_url):
    """Two worker processes on Redis (auto-resume far off), the scripted LLM, and a protocol device."""
    from evaluation.workers import EngineWorkers

    with ScriptedLLMServer(RULES, chunk_delay_s=0.04) as llm, \
            EngineWorkers(tmp_path / "workers", 2, broker.url, redis_url, llm.base_url,
                          config=FAILOVER_CONFIG) as workers:
        device = ProtocolDevice(broker.url)
        try:
            yield device, llm, workers
        finally:
            device.stop()


def kill_owner_mid_reply(device: ProtocolDevice, llm: ScriptedLLMServer, workers) -> str:
    """Ask for the explanation, hear 1.5 s of it, kill -9 the worker serving the device while the reply
    is still being generated; returns the reply's item."""
    device.hello()
    device.say("explain how transformers work")
    device.wait_for(lambda: device.segments and len(device.segments[0].pcm) > 0)
    play_realtime(device, 1.5)
    assert not llm.requests[0].completed  # mid-reply: still generating
    owner = workers.owner_pid("dev1")
    assert owner is not None
    workers.kill(owner)
    return device.segments[0].seg.item


@pytest.mark.slow
def test_a_backchannel_that_finds_the_owner_killed_lets_the_reply_go_on(two_workers):
    """The survivor's first news of the device is the user's interruption ("uh huh") of a reply the
    dead worker was still generating. The takeover waits for the turn's disposition; the ABSORB then
    lets the reply go on from its heard prefix. (It used to stall in `speaking` for ever: the takeover
    ran only in `thinking`/`speaking`, so the dead generation was neither cut back nor asked again.)"""
    device, llm, workers = two_workers
    parent = kill_owner_mid_reply(device, llm, workers)
    device.say("uh huh", interrupt=True)
    heard_parent = device.heard_words(parent)  # paused: nothing more of it plays
    device.wait_for(lambda: any(s.seg.item != parent for s in device.segments), timeout=15)
    assert len(llm.requests) >= 2
    assert assistant_words(llm.requests[1].messages) == heard_parent, (heard_parent,
                                                                       llm.requests[1].messages)
    resumed = next(s.seg for s in device.segments if s.seg.item != parent)
    device.play_all()
    # the whole continuation reached the device: the reply ended instead of stalling
    sent = " ".join(s.seg.text for s in device.segments if s.seg.item == resumed.item).split()
    assert sent[resumed.bridge_words:][-3:] == llm.requests[1].reply.split()[-3:]
    logs = workers.log(0) + workers.log(1)
    assert "ABSORB" in logs and "Traceback" not in logs


@pytest.mark.slow
def test_a_side_question_that_finds_the_owner_killed_keeps_the_parent_resumable(two_workers):
    """As above, but the interruption is a side question (BRANCH): the dead reply is held, cut back to
    its heard words, and "go back" resumes it from the first word not fully heard, the model asked to
    go on from exactly the heard prefix."""
    device, llm, workers = two_workers
    parent = kill_owner_mid_reply(device, llm, workers)
    device.say("wait what's attention", interrupt=True)
    heard_parent = device.heard_words(parent)
    device.wait_for(lambda: len(llm.requests) >= 2, timeout=15)
    assert assistant_words(llm.requests[1].messages) == heard_parent  # the side question's context
    device.wait_for(lambda: any(s.seg.item != parent for s in device.segments))
    device.play_all()
    n_before = len(device.segments)
    device.say("okay go back")
    device.wait_for(lambda: len(device.segments) > n_before, timeout=15)
    assert device.segments[n_before].seg.bridge_words > 0  # the bridge phrase, then...
    device.play_all()  # ... once what was kept of the parent is heard, the model goes on
    device.wait_for(lambda: len(llm.requests) >= 3, timeout=15)
    # the held parent was cut back to its heard words: the model goes on from exactly there
    assert assistant_words(llm.requests[2].messages)[:len(heard_parent)] == heard_parent
    logs = workers.log(0) + workers.log(1)
    assert "BRANCH" in logs and "Traceback" not in logs


@pytest.mark.slow
@pytest.mark.parametrize("device_speaks", [True, False], ids=["device-reporting", "device-silent"])
def test_a_worker_killed_mid_reply_loses_no_heard_word_and_invents_none(broker, tmp_path, redis_url, device_speaks):
    """Two worker processes; kill -9 the one serving the device while the reply is still being generated;
    the survivor takes over, resumes the reply from its heard prefix, and the go-back conversation passes.
    device-reporting: the device's next heartbeat finds the owner gone (a forward nobody receives);
    device-silent: the device says nothing after the kill, so the survivors' scan must find it."""
    from evaluation.workers import EngineWorkers

    with ScriptedLLMServer(RULES, chunk_delay_s=0.04) as llm, \
            EngineWorkers(tmp_path / "workers", 2, broker.url, redis_url, llm.base_url,
                          config=FAILOVER_CONFIG) as workers:
        device = ProtocolDevice(broker.url)
        try:
            device.hello()
            device.say("explain how transformers work")
            device.wait_for(lambda: device.segments and len(device.segments[0].pcm) > 0)
            play_realtime(device, 1.5)
            parent = device.segments[0].seg.item
            assert not llm.requests[0].completed  # mid-reply: still generating
            owner = workers.owner_pid("dev1")
            assert owner is not None
            before = commands_seen(device)
            workers.kill(owner)
            killed_at = time.monotonic()
            while commands_seen(device) == before and time.monotonic() - killed_at < 10:
                if device_speaks:
                    play_realtime(device, 0.1, step_ms=50)
                else:
                    time.sleep(0.02)
            next_command_s = time.monotonic() - killed_at
            print(f"\nfailover ({'reporting' if device_speaks else 'silent'} device): next command "
                  f"{next_command_s * 1000:.0f} ms after kill -9")
            device.wait_for(lambda: any(s.seg.item != parent for s in device.segments), timeout=15)
            heard_parent = device.heard_words(parent)
            resumed = next(s.seg for s in device.segments if s.seg.item != parent)
            # The continuation was asked for from the heard prefix: every heard word, no unheard one.
            assert len(llm.requests) >= 2
            assert assistant_words(llm.requests[1].messages) == heard_parent, (heard_parent,
                                                                               llm.requests[1].messages)
            play_realtime(device, 2.0)
            heard_resumed = device.heard_words(resumed.item)
            device.say("wait what's attention", interrupt=True)
            device.wait_for(lambda: len(llm.requests) >= 3, timeout=10)
            side = llm.requests[2].messages
            assert assistant_words(side) == heard_parent + heard_resumed, (side, heard_parent, heard_resumed)
            device.wait_for(lambda: any(s.seg.item not in (parent, resumed.item) for s in device.segments))
            device.play_all()
            n_before = len(device.segments)
            device.say("okay go back")  # go back: the reply interrupted by the side question goes on
            device.wait_for(lambda: len(device.segments) > n_before + 1, timeout=10)
            back = device.segments[n_before].seg
            content = " ".join(s.seg.text for s in device.segments[n_before:]).split()[back.bridge_words:]
            continuation = llm.requests[1].reply.split()
            start = continuation.index(content[0], max(0, len(heard_resumed) - 1))
            assert start in (len(heard_resumed) - 1, len(heard_resumed))  # the first word not fully heard
            assert next_command_s <= 3.0
            logs = workers.log(0) + workers.log(1)
            assert "rejected message" not in logs and "Traceback" not in logs
        finally:
            device.stop()
            for i in range(2):
                print(f"--- worker {i}\n" + workers.log(i)[-2500:])


def test_the_grafana_dashboard_uses_only_served_metrics():
    import json
    import re
    from pathlib import Path

    dashboard = json.loads(Path("deploy/grafana/segue-engine.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for e in exprs for m in re.findall(r"segue_[a-z_]+", e)}
    assert used and used <= set(METRICS), used - set(METRICS)


def test_store_and_metrics_port_from_the_command_line_and_the_file(tmp_path):
    from server.cli import build_parser, settings_from_args
    from server.config import ConfigError, load

    args = build_parser().parse_args(["--store", "redis://10.0.0.5:6380/2", "--metrics-port", "9464"])
    settings = settings_from_args(args)
    assert settings.storage.url == "redis://10.0.0.5:6380/2" and settings.metrics_port == 9464
    with pytest.raises(ConfigError):
        settings_from_args(build_parser().parse_args(["--store", "http://x"]))
    path = tmp_path / "server.toml"
    path.write_text('metrics_port = 9100\n[storage]\nurl = "redis://127.0.0.1:6379/0"\n')
    assert load(path, env={}).storage.url == "redis://127.0.0.1:6379/0"
    path.write_text('[storage]\nurl = "sqlite:///x"\n')
    with pytest.raises(ConfigError):
        load(path, env={})


@pytest.mark.slow
def test_a_held_parent_and_unheard_audio_survive_the_killed_worker(broker, tmp_path, redis_url):
    """Kill -9 the owner while a side answer's audio is queued but not heard, with the explanation held:
    the survivor re-sends the side answer from its first word not fully heard, and "go back" resumes
    the explanation from its first word not fully heard."""
    from evaluation.workers import EngineWorkers

    with ScriptedLLMServer(RULES, chunk_delay_s=0.002) as llm, \
            EngineWorkers(tmp_path / "workers", 2, broker.url, redis_url, llm.base_url,
                          config=FAILOVER_CONFIG) as workers:
        device = ProtocolDevice(broker.url)
        try:
            device.hello()
            device.say("explain how transformers work")
            device.wait_for(lambda: device.segments and len(device.segments[0].pcm) > 0)
            play_realtime(device, 2.0)
            parent = device.segments[0].seg.item
            heard_parent = device.heard_words(parent)
            device.say("wait what's attention", interrupt=True)
            device.wait_for(lambda: any(s.seg.item != parent and s.complete for s in device.segments))
            side = next(s.seg.item for s in device.segments if s.seg.item != parent)
            play_realtime(device, 1.0)
            heard_side = device.heard_words(side)
            assert 0 < len(heard_side) < len(RULES[0]["reply"].split())  # mid-reply: audio queued, unheard
            before = commands_seen(device)
            workers.kill(workers.owner_pid("dev1"))
            killed_at = time.monotonic()
            while commands_seen(device) == before and time.monotonic() - killed_at < 10:
                play_realtime(device, 0.1, step_ms=50)
            next_command_s = time.monotonic() - killed_at
            print(f"\nfailover (side answer queued, parent held): next command {next_command_s * 1000:.0f} ms")
            device.wait_for(lambda: any(s.seg.item not in (parent, side) for s in device.segments), timeout=10)
            n_resent = next(i for i, s in enumerate(device.segments) if s.seg.item not in (parent, side))
            resent = device.segments[n_resent].seg
            content = " ".join(s.seg.text for s in device.segments[n_resent:]).split()[resent.bridge_words:]
            side_words = RULES[0]["reply"].split()
            print(f"side answer heard {heard_side}; re-sent from {content[:4]}")
            if content:  # the rest of the side answer, from its first word not fully heard
                start = side_words.index(content[0], max(0, len(heard_side) - 1))
                assert start in (len(heard_side) - 1, len(heard_side)), (heard_side, content)
            device.play_all()
            n_before = len(device.segments)
            device.say("okay go back")
            device.wait_for(lambda: len(device.segments) > n_before + 1, timeout=10)
            back = device.segments[n_before].seg
            words = " ".join(s.seg.text for s in device.segments[n_before:]).split()[back.bridge_words:]
            parent_words = EXPLANATION.split()
            start = parent_words.index(words[0], max(0, len(heard_parent) - 1))
            assert start in (len(heard_parent) - 1, len(heard_parent)), (heard_parent, words[:5])
            assert words[:6] == parent_words[start : start + 6]
            assert next_command_s <= 3.0
            # No request after the kill carries a word the user did not hear.
            for request in llm.requests[2:]:
                said = assistant_words(request.messages)
                assert said[: len(heard_parent)] == heard_parent
        finally:
            device.stop()


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("pulseaudio"), reason="the live harness needs pulseaudio")
def test_black_box_harness_go_back_passes_with_a_worker_killed_mid_reply(broker, tmp_path, redis_url):
    """As the issue's outside check runs it: `segue-eval run --mode text --engine external` (the device,
    the user and the listener only; real time, topic root `segue`) against two `segue-server` worker
    processes; the owner is killed -9 four seconds into the explanation. (~50 s; external mode cannot
    see the LLM requests, so phantom/lost words are null here and checked by the tests above.)"""
    import datetime
    import json
    import subprocess
    import sys
    import threading

    import yaml

    from evaluation.workers import EngineWorkers

    rules = yaml.safe_load(open("scenarios/01_go_back.yaml"))["llm"]
    killed: list[float] = []
    with ScriptedLLMServer(rules, chunk_delay_s=0.03) as llm, \
            EngineWorkers(tmp_path / "workers", 2, broker.url, redis_url, llm.base_url) as workers:
        def kill_mid_reply() -> None:
            while not llm.requests:
                time.sleep(0.05)
            time.sleep(4.0)  # the explanation is playing (and still being generated)
            import redis

            client = redis.Redis.from_url(redis_url)
            device = next(k.decode() for k in client.scan_iter("segue:segue:dev:*") if not k.endswith(b":log"))
            pid = int(client.hget(device, "owner").decode().rsplit("|", 1)[0].rsplit("-", 2)[-2])
            killed.append(time.time())
            workers.kill(pid)

        threading.Thread(target=kill_mid_reply, daemon=True).start()
        out = tmp_path / "report.json"
        run = subprocess.run([sys.executable, "-m", "evaluation.cli", "run", "scenarios/01_go_back.yaml", "--mode",
                              "text", "--engine", "external", "--broker", broker.url, "--speed", "1",
                              "--json", str(out)], capture_output=True, text=True, timeout=300)
        logs = workers.log(0) + workers.log(1)
    assert killed, run.stdout[-2000:] + run.stderr[-2000:]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    report = json.loads(out.read_text())["scenarios"][0]
    assert [g["verdict"] for g in report["go_back"]] == ["pass"], report
    assert all(d["expected"] == d["got"] for d in report["dispositions"]), report["dispositions"]
    assert report["phantom_words"] is None and report["lost_words"] is None  # not seen, so not claimed
    assert not report["errors"], report["errors"]
    taken = [line for line in logs.splitlines() if "taken over from" in line]
    assert taken and "rejected message" not in logs
    at = datetime.datetime.strptime(taken[0][:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    print(f"\nblack-box failover: taken over {1000 * (at - killed[0]):.0f} ms after kill -9; go-back pass")
    assert at - killed[0] < 3.0
