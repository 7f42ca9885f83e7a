"""segue-fleet against a real Mosquitto started on the generated configuration."""

from __future__ import annotations

import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from device.claim import EnrollmentRefused, build_request, claim_enroll, open_sealed
from provisioning import ca as fleet_ca
from provisioning.fleet import Fleet
from provisioning.ids import CLAIM_USER, ENGINE_USER, MONITOR_USER
from provisioning.service import FleetService, ServeSettings
from provisioning.settings import BrokerSettings
from tests.support.mosquitto import Mosquitto, free_port

pytestmark = pytest.mark.broker
SETTLE = 0.4  # seconds to wait for a delivery that must NOT happen


@dataclass
class Client:
    c: mqtt.Client
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)
    disconnected_at: float | None = None

    def sub(self, *topics: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe([(t, 1) for t in topics])
        assert done.wait(3)

    def pub(self, topic: str, payload: bytes | str, retain: bool = False, qos: int = 1) -> None:
        self.c.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(3)

    def wait_for(self, pred, timeout: float = 3.0) -> mqtt.MQTTMessage | None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in list(self.messages):
                if pred(m):
                    return m
            time.sleep(0.02)
        return None

    def topics(self) -> set[str]:
        return {m.topic for m in self.messages}

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def connect(port: int, username: str | None = None, password: str | None = None, *, client_id: str = "",
            tls: dict[str, str] | None = None, will: tuple[str, str] | None = None) -> Client:
    """Connected client, or raises ConnectionRefusedError / ssl / OS errors."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    cl = Client(c)
    if username is not None:
        c.username_pw_set(username, password)
    if tls is not None:
        c.tls_set(ca_certs=tls["ca"], certfile=tls.get("cert"), keyfile=tls.get("key"),
                  tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if will:
        c.will_set(will[0], will[1], qos=1, retain=True)
    result: dict[str, mqtt.ReasonCode] = {}
    ready = threading.Event()

    def on_connect(_c, _u, _f, rc, _p=None):  # type: ignore[no-untyped-def]
        result["rc"] = rc
        ready.set()

    def on_disconnect(*_a):  # type: ignore[no-untyped-def]
        if cl.disconnected_at is None:
            cl.disconnected_at = time.monotonic()
        cl.disconnected.set()
        ready.set()

    c.on_connect, c.on_disconnect = on_connect, on_disconnect
    c.on_message = lambda _c, _u, m: cl.messages.append(m)
    c.connect("127.0.0.1", port, keepalive=10)
    c.loop_start()
    if not ready.wait(5) or "rc" not in result or result["rc"].is_failure:
        c.loop_stop()
        raise ConnectionRefusedError(str(result.get("rc", "no CONNACK")))
    c.reconnect_delay_set(60, 60)  # no automatic reconnects inside a test
    return cl


@dataclass
class Env:
    fleet: Fleet
    broker: Mosquitto
    settings: BrokerSettings
    tmp: Path
    clients: list[Client] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.settings.port

    def pw(self, username: str) -> str:
        return self.fleet.read_password(username)

    def as_user(self, username: str, client_id: str = "", **kw) -> Client:  # type: ignore[no-untyped-def]
        cl = connect(self.port, username, self.pw(username), client_id=client_id, **kw)
        self.clients.append(cl)
        return cl

    def as_cert(self, device_id: str) -> Client:
        out = self.tmp / f"{device_id}.toml"
        b = self.fleet.device_bundle(device_id, out)
        assert b.mqtt.ca and b.mqtt.cert and b.mqtt.key
        cl = connect(self.settings.tls_port or 0, client_id=device_id,
                     tls={"ca": b.mqtt.ca, "cert": b.mqtt.cert, "key": b.mqtt.key})
        self.clients.append(cl)
        return cl


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    fleet = Fleet.init(tmp_path / "home")
    for dev in ("dev-a", "dev-b"):
        fleet.enroll(dev)
    fleet.enroll("dev-c", cert=True)
    settings = fleet.broker_config(BrokerSettings(
        out_dir=tmp_path / "broker", port=free_port(), tls_port=free_port(), bind="127.0.0.1",
        public_host="127.0.0.1", broker_user="root" if os.geteuid() == 0 else None))
    broker = Mosquitto(tmp_path / "run", config=settings.conf.read_text(), port=settings.port)
    with broker:
        e = Env(fleet, broker, settings, tmp_path)
        yield e
        for cl in e.clients:
            try:
                cl.close()
            except Exception:  # noqa: BLE001
                pass
    fleet.close()


def test_generated_config_runs_as_is(env: Env) -> None:
    # the very file broker-config wrote, with the pid file the fleet uses for SIGHUP
    assert env.fleet.broker_running()
    assert "Error" not in env.broker.log()


def test_device_cannot_touch_another_devices_topics(env: Env) -> None:
    engine = env.as_user(ENGINE_USER)
    engine.sub("$share/engines/segue/+/up/#", "segue/+/status")
    a = env.as_user("dev-a", "dev-a")
    a.sub("segue/dev-b/#", "segue/+/up/#", "#", "segue/dev-a/down/#", "segue/claim/#")
    b = env.as_user("dev-b", "dev-b")
    b.sub("segue/dev-b/down/#")
    b.pub("segue/dev-b/up/hello", "from b")
    b.pub("segue/dev-b/status", "online", retain=True)
    engine.pub("segue/dev-b/down/control", "to b")
    engine.pub("segue/dev-a/down/control", "to a")
    a.pub("segue/dev-b/up/hello", "forged by a")           # write to B's up: dropped
    a.pub("segue/dev-b/down/control", "forged by a")       # write to B's down: dropped
    a.pub("segue/dev-a/down/control", "a to own down")      # a device never writes down: dropped
    a.pub("segue/dev-a/up/hello", "from a")
    assert engine.wait_for(lambda m: m.payload == b"from a")
    assert b.wait_for(lambda m: m.payload == b"to b")
    time.sleep(SETTLE)
    assert {m.payload for m in a.messages} == {b"to a"}     # only its own down topic (overlapping subs: copies)
    assert {m.payload for m in engine.messages} == {b"from b", b"online", b"from a"}
    assert [m.payload for m in b.messages] == [b"to b"]


def test_anonymous_and_wrong_password_refused(env: Env) -> None:
    with pytest.raises(ConnectionRefusedError):
        connect(env.port)
    with pytest.raises(ConnectionRefusedError):
        connect(env.port, "dev-a", "wrong")
    with pytest.raises(ConnectionRefusedError):
        connect(env.port, "dev-c", "anything")              # a cert device has no password
    with pytest.raises(ConnectionRefusedError):
        connect(env.port, "nobody", "x")


def _measure_cut(env: Env, client: Client, device_id: str) -> float:
    t0 = time.monotonic()
    env.fleet.revoke(device_id)
    assert client.disconnected.wait(5), "live session not cut within 5 s"
    assert client.disconnected_at is not None
    return client.disconnected_at - t0


def test_revoke_cuts_password_device_within_seconds(env: Env, record_property) -> None:  # type: ignore[no-untyped-def]
    # a client id other than the device id: the cut comes from the SIGHUP reload alone
    a = env.as_user("dev-a", "some-other-client-id")
    password = env.pw("dev-a")
    cut = _measure_cut(env, a, "dev-a")
    record_property("revoke_cut_password_s", round(cut, 3))
    print(f"revoke -> password session cut: {cut * 1000:.0f} ms")
    t0 = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        connect(env.port, "dev-a", password, client_id="dev-a")
    assert time.monotonic() - t0 < 5
    assert env.fleet.view("dev-a").device.state == "revoked"
    env.as_user("dev-b", "dev-b")                           # others unaffected


def test_revoke_cuts_cert_device_and_crl_refuses_it(env: Env, record_property) -> None:  # type: ignore[no-untyped-def]
    c = env.as_cert("dev-c")
    bundle = env.fleet.device_bundle("dev-c", env.tmp / "c2.toml")
    cut = _measure_cut(env, c, "dev-c")
    record_property("revoke_cut_cert_s", round(cut, 3))
    print(f"revoke -> certificate session cut: {cut * 1000:.0f} ms")
    assert bundle.mqtt.ca and bundle.mqtt.cert and bundle.mqtt.key
    with pytest.raises((ConnectionRefusedError, ssl.SSLError, OSError)):
        connect(env.settings.tls_port or 0, client_id="dev-c",
                tls={"ca": bundle.mqtt.ca, "cert": bundle.mqtt.cert, "key": bundle.mqtt.key})


def test_tls_listener_accepts_fleet_cert_refuses_others(env: Env) -> None:
    c = env.as_cert("dev-c")
    c.pub("segue/dev-c/up/hello", "x")
    other = fleet_ca.create_ca("not the fleet")
    forged = fleet_ca.issue_client(other, "dev-c")
    (env.tmp / "f.pem").write_bytes(forged.cert_pem)
    (env.tmp / "f.key").write_bytes(forged.key_pem)
    ca = str(env.settings.out_dir / "ca.pem")
    with pytest.raises((ConnectionRefusedError, ssl.SSLError, OSError)):
        connect(env.settings.tls_port or 0, tls={"ca": ca, "cert": str(env.tmp / "f.pem"), "key": str(env.tmp / "f.key")})
    with pytest.raises((ConnectionRefusedError, ssl.SSLError, OSError)):
        connect(env.settings.tls_port or 0, "dev-a", env.pw("dev-a"), tls={"ca": ca})   # no client cert


def test_rotate_overlap_then_confirm(env: Env) -> None:
    old_pw = env.pw("dev-a")
    old = env.as_user("dev-a", "dev-a")
    cred = env.fleet.rotate("dev-a")
    assert cred.username == "dev-a.2"
    time.sleep(0.2)
    new = env.as_user("dev-a.2", "dev-a-new")
    assert not old.disconnected.is_set()
    env.as_user("dev-a", "dev-a-again")                      # old still valid during the overlap
    new.pub("segue/dev-a/up/x", "ok")
    env.fleet.confirm_rotation("dev-a")
    assert old.disconnected.wait(5)
    with pytest.raises(ConnectionRefusedError):
        connect(env.port, "dev-a", old_pw)
    time.sleep(SETTLE)
    assert not new.disconnected.is_set()
    b = env.fleet.device_bundle("dev-a", env.tmp / "a.toml")
    assert b.mqtt.username == "dev-a.2"


def test_claim_credential_can_do_nothing_but_enroll(env: Env) -> None:
    engine = env.as_user(ENGINE_USER)
    engine.sub("segue/+/up/#", "segue/+/status")
    fleetsvc = env.as_user("svc.fleet", "fleet-probe")
    fleetsvc.sub("segue/claim/+/request")
    claim = env.as_user(CLAIM_USER, "SN-1")
    claim.sub("#", "segue/claim/+/reply", "segue/dev-a/down/#")
    claim.pub("segue/dev-a/up/hello", "forged")
    claim.pub("segue/dev-a/status", "online")
    claim.pub("homeassistant/status", "online")
    claim.pub("segue/claim/SN-1/request", "{}")
    fleetsvc.pub("segue/claim/SN-2/reply", "for SN-2")
    fleetsvc.pub("segue/claim/SN-1/reply", "for SN-1")
    env.as_user(ENGINE_USER).pub("segue/dev-a/down/x", "down a")
    assert fleetsvc.wait_for(lambda m: m.topic == "segue/claim/SN-1/request")
    assert claim.wait_for(lambda m: m.payload == b"for SN-1")
    time.sleep(SETTLE)
    assert {m.payload for m in claim.messages} == {b"for SN-1"}
    assert engine.messages == []
    # a device (or the engine) cannot read claim replies even with a matching client id
    snoop = env.as_user("dev-b", "SN-3")
    snoop.sub("segue/claim/#")
    fleetsvc.pub("segue/claim/SN-3/reply", "for SN-3")
    time.sleep(SETTLE)
    assert snoop.messages == []


def _snapshot(env: Env) -> tuple[object, ...]:
    reg = env.fleet.reg
    return (reg.devices(), reg.allow_entries(), reg.active_credentials(),
            sorted(p.name for p in env.fleet.paths.secrets.iterdir()),
            env.settings.passwd.read_text(), env.settings.acl.read_text(),
            reg._q("SELECT * FROM claim_nonces"))


@pytest.fixture
def service(env: Env) -> Iterator[FleetService]:
    svc = FleetService(env.fleet, ServeSettings(port=env.port, sync_interval=0.3))
    stop = threading.Event()
    t = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    t.start()
    assert svc.connected.wait(5)
    yield svc
    stop.set()
    t.join(5)


def test_claim_enrollment_round_trip(env: Env, service: FleetService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env.fleet.allow("SN-0042", "kitchen")
    claim_file = env.tmp / "claim.toml"
    env.fleet.claim_bundle(claim_file)
    monitor = env.as_user(MONITOR_USER, "ha")
    monitor.sub("homeassistant/device/+/config", "segue/+/status")
    t0 = time.monotonic()
    bundle = claim_enroll(claim_file, "SN-0042", env.tmp / "device.toml", timeout=10)
    print(f"claim round trip incl. verify: {(time.monotonic() - t0) * 1000:.0f} ms")
    assert bundle.device_id == "kitchen" and bundle.mqtt.username == "kitchen"
    assert (env.tmp / "device.toml").stat().st_mode & 0o777 == 0o600
    dev = connect(env.port, bundle.mqtt.username, bundle.mqtt.password, client_id="kitchen",
                  will=("segue/kitchen/status", "offline"))
    env.clients.append(dev)
    dev.pub("segue/kitchen/status", "online", retain=True)
    # discovery for the new device appears (retained), and the fleet records last-seen
    cfg = monitor.wait_for(lambda m: m.topic == "homeassistant/device/kitchen/config" and m.payload != b"", 5)
    assert cfg is not None and json.loads(cfg.payload)["dev"]["identifiers"] == ["segue_kitchen"]
    deadline = time.monotonic() + 3
    while env.fleet.reg.device("kitchen").last_status != "online" and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.05)
    assert env.fleet.reg.device("kitchen").last_status == "online"  # type: ignore[union-attr]
    # secrets never in logs nor retained
    assert bundle.mqtt.password and bundle.mqtt.password not in caplog.text
    assert all(bundle.mqtt.password.encode() not in m.payload for m in monitor.messages)
    # a second claim of the same serial (new nonce) is refused: already enrolled
    with pytest.raises(EnrollmentRefused):
        claim_enroll(claim_file, "SN-0042", env.tmp / "again.toml", timeout=5, verify=False)
    assert not (env.tmp / "again.toml").exists()
    # an unlisted serial is refused over the wire too
    with pytest.raises(EnrollmentRefused):
        claim_enroll(claim_file, "SN-9999", env.tmp / "x.toml", timeout=5, verify=False)
    # revocation removes the device from Home Assistant (empty retained config)
    env.fleet.revoke("kitchen")
    assert monitor.wait_for(lambda m: m.topic == "homeassistant/device/kitchen/config" and m.payload == b"", 5)


def test_bad_claim_requests_refused_and_nothing_written(env: Env, service: FleetService,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    env.fleet.allow("SN-7")
    key = X25519PrivateKey.generate()
    good = build_request("SN-7", "nonce-" + "a" * 16, key)
    first = service.handle_claim("segue/claim/SN-7/request", good)
    assert first is not None and json.loads(first[1])["ok"] is True
    before = _snapshot(env)
    replay_other_key = build_request("SN-7", "nonce-" + "a" * 16, X25519PrivateKey.generate())
    cases = {
        "malformed": ("segue/claim/SN-7/request", b"{not json"),
        "oversized": ("segue/claim/SN-7/request", b"x" * 5000),
        "bad topic": ("segue/claim/../request", good),
        "serial mismatch": ("segue/claim/SN-8/request", good),
        "unlisted": ("segue/claim/SN-8/request", build_request("SN-8", "n" * 20, key)),
        "replay new nonce": ("segue/claim/SN-7/request", build_request("SN-7", "b" * 20, key)),
        "replay swapped key": ("segue/claim/SN-7/request", replay_other_key),
    }
    for name, (topic, payload) in cases.items():
        reply = service.handle_claim(topic, payload)
        assert reply is None or json.loads(reply[1])["ok"] is False, name
    assert _snapshot(env) == before
    assert caplog.text.count("claim refused") >= len(cases)
    # the very same request again is idempotent: same device, same credential, sealed to its key
    again = service.handle_claim("segue/claim/SN-7/request", good)
    assert again is not None
    data = json.loads(again[1])
    assert data["ok"] is True and data["device_id"] == "sn-7"
    assert open_sealed(data["sealed"], key, "SN-7", "nonce-" + "a" * 16) == env.pw("sn-7")
    assert _snapshot(env) == before
    # over the wire: an oversized request is refused and nothing is written
    claim = env.as_user(CLAIM_USER, "SN-8")
    claim.pub("segue/claim/SN-8/request", b"{" + b" " * 10000 + b"}")
    time.sleep(SETTLE)
    assert _snapshot(env) == before
    assert env.pw("sn-7") not in caplog.text


def test_discovery_republished_when_home_assistant_comes_online(env: Env, service: FleetService) -> None:
    ha = env.as_user(MONITOR_USER, "ha")
    ha.sub("homeassistant/device/+/config")
    wanted = {f"homeassistant/device/{d}/config" for d in ("dev-a", "dev-b", "dev-c")}
    deadline = time.monotonic() + 5
    while not wanted <= ha.topics() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert wanted <= ha.topics()          # retained (or live, if the service was still publishing)
    time.sleep(SETTLE)
    n = len(ha.messages)
    ha.pub("homeassistant/status", "online")
    deadline = time.monotonic() + 5
    while {m.topic for m in ha.messages[n:]} != wanted and time.monotonic() < deadline:
        time.sleep(0.02)
    assert {m.topic for m in ha.messages[n:]} == wanted
    late = env.as_user(MONITOR_USER, "late")
    late.sub("homeassistant/device/+/config")
    assert late.wait_for(lambda m: m.topic == "homeassistant/device/dev-a/config" and m.retain)
    payload = json.loads(ha.messages[-1].payload)
    from tests.test_fleet_unit import validate_device_discovery

    validate_device_discovery(payload)


DEVICE_SCRIPT = r"""
import sys, time, paho.mqtt.client as mqtt
port, user, pw, dev = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev, protocol=mqtt.MQTTv5)
c.username_pw_set(user, pw)
c.will_set(f"segue/{dev}/status", "offline", qos=1, retain=True)
c.connect("127.0.0.1", int(port), keepalive=5)
c.loop_start()
c.publish(f"segue/{dev}/status", "online", qos=1, retain=True).wait_for_publish(5)
print("up", flush=True)
time.sleep(60)
"""


def test_status_online_then_offline_when_process_dies(env: Env) -> None:
    proc = subprocess.Popen([sys.executable, "-c", DEVICE_SCRIPT, str(env.port), "dev-b", env.pw("dev-b"), "dev-b"],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
        mon = env.as_user(MONITOR_USER, "mon")
        mon.sub("segue/+/status")
        assert mon.wait_for(lambda m: m.topic == "segue/dev-b/status" and m.payload == b"online" and m.retain)
        os.kill(proc.pid, signal.SIGKILL)
        assert mon.wait_for(lambda m: m.payload == b"offline", 5)
    finally:
        proc.kill()
        proc.wait()
    late = env.as_user(ENGINE_USER)
    late.sub("segue/+/status")
    msg = late.wait_for(lambda m: m.topic == "segue/dev-b/status")
    assert msg is not None and msg.payload == b"offline" and msg.retain
