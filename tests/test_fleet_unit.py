"""segue-fleet without a broker: registry, files, bundles, claim messages, discovery schema, CLI."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from device import claim as device_claim
from provisioning import claim_messages as cm
from provisioning.broker import render_acl
from provisioning.cli import build_parser, main
from provisioning.discovery import EVENT_TYPES, DeviceInfo, config_topic, device_config
from provisioning.fleet import Fleet, FleetError
from provisioning.passwords import check_mosquitto_hash, mosquitto_hash

# ---------------------------------------------------------------- Home Assistant discovery schema
# The subset of Home Assistant's MQTT *device* discovery schema (homeassistant/device/<id>/config,
# HA 2024.11+) that we check. Full key names or their documented abbreviations are accepted.
#   - top level: `dev`/`device` (object, required), `o`/`origin` (object, required),
#     `cmps`/`components` (object, required, non-empty); optional `availability` (list of
#     {topic (req), payload_available, payload_not_available}), `qos` (0..2), `state_topic`.
#   - dev: `identifiers`/`ids` (required, non-empty string or list of strings), `name` (string).
#   - o: `name` (required string), optional `sw`/`sw_version`, `url`/`support_url`.
#   - each component: `p`/`platform` (required, a known MQTT platform), `unique_id`/`uniq_id`
#     (required, unique over the whole payload); per platform:
#       sensor: state_topic;  event: state_topic, event_types (non-empty list of strings);
#       switch: command_topic (state_topic optional);  button: command_topic.
#   - every *_topic value is a non-empty string without wildcards.
PLATFORMS = {"sensor", "binary_sensor", "switch", "button", "event", "number", "select", "text", "update"}
REQUIRED_BY_PLATFORM = {
    "sensor": ("state_topic",), "binary_sensor": ("state_topic",), "event": ("state_topic", "event_types"),
    "switch": ("command_topic",), "button": ("command_topic",),
}


def _get(d: dict[str, Any], *names: str) -> Any:
    for n in names:
        if n in d:
            return d[n]
    return None


def validate_device_discovery(payload: dict[str, Any]) -> None:
    dev, origin, cmps = _get(payload, "dev", "device"), _get(payload, "o", "origin"), _get(payload, "cmps", "components")
    assert isinstance(dev, dict), "dev required"
    ids = _get(dev, "identifiers", "ids")
    assert ids and (isinstance(ids, str) or all(isinstance(i, str) and i for i in ids)), "dev.identifiers"
    assert isinstance(origin, dict) and isinstance(origin.get("name"), str) and origin["name"], "o.name"
    assert isinstance(cmps, dict) and cmps, "cmps required"
    uids: set[str] = set()
    for key, c in cmps.items():
        platform = _get(c, "p", "platform")
        assert platform in PLATFORMS, f"{key}: platform {platform!r}"
        uid = _get(c, "unique_id", "uniq_id")
        assert isinstance(uid, str) and uid and uid not in uids, f"{key}: unique_id"
        uids.add(uid)
        for req in REQUIRED_BY_PLATFORM.get(platform, ()):
            assert c.get(req), f"{key}: {req} required for {platform}"
        if platform == "event":
            assert all(isinstance(e, str) for e in c["event_types"])
    for av in _get(payload, "availability", "avty") or []:
        assert isinstance(av.get("topic"), str) and av["topic"]
    qos = payload.get("qos", 0)
    assert qos in (0, 1, 2)

    def topics(obj: Any) -> list[str]:
        if isinstance(obj, dict):
            out = [v for k, v in obj.items() if k.endswith("topic") and isinstance(v, str)]
            return out + [t for v in obj.values() for t in topics(v)]
        if isinstance(obj, list):
            return [t for v in obj for t in topics(v)]
        return []

    for t in topics(payload):
        assert t and "#" not in t and "+" not in t, t


def test_discovery_payload_matches_schema() -> None:
    payload = device_config(DeviceInfo("kitchen-1", "segue"))
    validate_device_discovery(payload)
    cmps = payload["cmps"]
    assert payload["availability"] == [{"topic": "segue/kitchen-1/status", "payload_available": "online",
                                         "payload_not_available": "offline"}]
    assert cmps["mute"]["command_topic"] == "segue/kitchen-1/down/mute"
    assert (cmps["mute"]["payload_on"], cmps["mute"]["payload_off"]) == ("ON", "OFF")
    assert cmps["restart"]["command_topic"] == "segue/kitchen-1/down/restart"
    assert cmps["restart"]["payload_press"] == "PRESS"
    assert cmps["event"]["state_topic"] == "segue/kitchen-1/up/event"
    assert set(cmps["event"]["event_types"]) == set(EVENT_TYPES)
    assert {c["state_topic"] for c in cmps.values() if c["p"] == "sensor"} == {
        "segue/kitchen-1/up/state", "segue/kitchen-1/up/telemetry"}
    assert config_topic("kitchen-1") == "homeassistant/device/kitchen-1/config"
    # the templates name the documented fields
    text = json.dumps(payload)
    for field in ("state", "held_threads", "muted", "uptime_s", "cpu_temp_c", "wake_count",
                  "interruptions.BRANCH", "cursor_lag_ms", "rtt_ms"):
        assert f"value_json.{field}" in text


def test_schema_check_catches_breakage() -> None:
    good = device_config(DeviceInfo("d1"))
    for breaker in (lambda p: p.pop("dev"), lambda p: p["o"].pop("name"), lambda p: p["cmps"]["mute"].pop("unique_id"),
                    lambda p: p["cmps"]["state"].update(p="bogus"), lambda p: p["cmps"]["restart"].pop("command_topic"),
                    lambda p: p["cmps"]["rtt"].update(unique_id=p["cmps"]["state"]["unique_id"])):
        p = json.loads(json.dumps(good))
        breaker(p)
        with pytest.raises(AssertionError):
            validate_device_discovery(p)


# ------------------------------------------------------------------------------- passwords, ACL
def test_mosquitto_hash_round_trip() -> None:
    h = mosquitto_hash("s3cret")
    assert h.startswith("$7$101$") and check_mosquitto_hash("s3cret", h) and not check_mosquitto_hash("nope", h)


def test_acl_least_privilege_text(tmp_path: Path) -> None:
    fleet = Fleet.init(tmp_path / "home")
    fleet.enroll("dev-a")
    acl = render_acl(fleet.reg.active_credentials(), "segue")
    block = acl.split("user dev-a\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert block == ["topic deny segue/claim/#", "topic write segue/dev-a/up/#",
                     "topic write segue/dev-a/status", "topic read segue/dev-a/down/#"]
    assert "topic read #" not in acl and "readwrite #" not in acl


# --------------------------------------------------------------------------------- fleet home
def test_init_modes_and_enroll_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fleet = Fleet.init(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "secrets").stat().st_mode) == 0o700
    for f in (home / "secrets").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE((home / "ca" / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "fleet.db").stat().st_mode) == 0o600
    assert fleet.enroll("dev-a") is True
    assert fleet.enroll("dev-a") is False
    with pytest.raises(ValueError):
        fleet.enroll("Bad ID")
    with pytest.raises(ValueError):
        fleet.enroll("claim")
    with pytest.raises(FleetError):
        Fleet.init(home)
    # the registry holds no plain-text secret
    pw = fleet.read_password("dev-a")
    assert pw.encode() not in (home / "fleet.db").read_bytes()


def test_cli_help_and_verbs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    verbs = ["init", "enroll", "list", "show", "revoke", "rotate", "broker-config", "export",
             "export-server", "allow", "serve"]
    for verb in verbs:
        with pytest.raises(SystemExit) as e:
            parser.parse_args(["--home", "x", verb, "--help"])
        assert e.value.code == 0
        assert len(capsys.readouterr().out) > 120, verb
    home = str(tmp_path / "h")
    assert main(["--home", home, "init"]) == 0
    csv = tmp_path / "devices.csv"
    csv.write_text("device_id,auth\nkitchen,password\nhall,cert\n\n# comment\n")
    assert main(["--home", home, "enroll", "--csv", str(csv)]) == 0
    assert main(["--home", home, "enroll", "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert out.count("\tcreated") == 2 and out.count("\texists") == 2
    assert main(["--home", home, "broker-config", "--port", "1883", "--tls-port", "8883",
                 "--out", str(tmp_path / "b"), "--broker-user", "root"]) == 0
    assert main(["--home", home, "export", "kitchen", "--out", str(tmp_path / "k.toml")]) == 0
    assert main(["--home", home, "export", "hall", "--out", str(tmp_path / "hall.toml")]) == 0
    assert main(["--home", home, "export-server", "--out", str(tmp_path / "e.toml")]) == 0
    k = tomllib.loads((tmp_path / "k.toml").read_text())
    assert k["device"]["id"] == "kitchen" and k["mqtt"]["username"] == "kitchen" and k["mqtt"]["port"] == 1883
    assert k["mqtt"]["topic_root"] == "segue" and len(k["mqtt"]["password"]) >= 32
    assert stat.S_IMODE((tmp_path / "k.toml").stat().st_mode) == 0o600
    h = tomllib.loads((tmp_path / "hall.toml").read_text())
    assert h["mqtt"]["port"] == 8883 and "password" not in h["mqtt"]
    assert Path(h["mqtt"]["key"]).exists() and stat.S_IMODE(Path(h["mqtt"]["key"]).stat().st_mode) == 0o600
    e = tomllib.loads((tmp_path / "e.toml").read_text())
    assert e["mqtt"]["username"] == "svc.engine"
    capsys.readouterr()
    assert main(["--home", home, "list"]) == 0
    assert main(["--home", home, "show", "kitchen"]) == 0
    shown = capsys.readouterr().out
    assert "kitchen" in shown and k["mqtt"]["password"] not in shown
    assert main(["--home", home, "show", "nobody"]) == 2
    assert main(["--home", home, "allow", "SN-1", "SN-2=living-room"]) == 0
    assert "added" in capsys.readouterr().out


# ------------------------------------------------------------------------------ claim messages
def _req(serial: str = "SN1", nonce: str = "n" * 20) -> bytes:
    return device_claim.build_request(serial, nonce, X25519PrivateKey.generate())


@pytest.mark.parametrize("payload,reason", [
    (b"not json", "not JSON"),
    (b"[1,2]", "not a JSON object"),
    (b"\xff\xfe", "not JSON"),
    (json.dumps({"v": 1, "serial": "SN1", "nonce": "n" * 20}).encode(), "fields"),
    (json.dumps({"v": 2, "serial": "SN1", "nonce": "n" * 20, "pubkey": "x"}).encode(), "version"),
    (json.dumps({"v": 1, "serial": "SN2", "nonce": "n" * 20, "pubkey": "AAAA"}).encode(), "topic"),
    (json.dumps({"v": 1, "serial": "SN1", "nonce": "short", "pubkey": "AAAA"}).encode(), "nonce"),
    (json.dumps({"v": 1, "serial": "SN1", "nonce": "n" * 20, "pubkey": "AAAA"}).encode(), "pubkey"),
    (b"{" + b" " * 5000 + b"}", "oversized"),
])
def test_parse_request_refuses(payload: bytes, reason: str) -> None:
    with pytest.raises(cm.ClaimError, match=reason):
        cm.parse_request("SN1", payload)


def test_seal_round_trip_and_binding() -> None:
    key = X25519PrivateKey.generate()
    req = cm.parse_request("SN1", device_claim.build_request("SN1", "n" * 20, key))
    reply = json.loads(cm.ok_reply(req, device_id="sn1", username="sn1", password="pw-123", host="h",
                                   port=1, topic_root="segue"))
    assert "pw-123" not in json.dumps(reply)
    assert device_claim.open_sealed(reply["sealed"], key, "SN1", "n" * 20) == "pw-123"
    with pytest.raises(cm.ClaimError):
        device_claim.open_sealed(reply["sealed"], X25519PrivateKey.generate(), "SN1", "n" * 20)
    with pytest.raises(cm.ClaimError):
        device_claim.open_sealed(reply["sealed"], key, "SN1", "m" * 20)


# ------------------------------------------------------------- shared facts (icp.messages), both sides
def test_claim_topics_and_replies_come_from_the_core() -> None:
    from icp.errors import ProtocolError
    from icp.messages import Topics
    from icp.messages import claim as wire

    t = Topics("segue")
    assert (t.claim_request("SN1"), t.claim_reply(), t.claim_tree()) == (
        "segue/claim/SN1/request", "segue/claim/+/reply", "segue/claim/#")
    assert t.parse_claim("segue/claim/SN1/request") == ("SN1", "request")
    for bad in ("segue/claim/SN1", "other/claim/SN1/reply", "segue/dev-a/up/hello", "segue/claim//request"):
        with pytest.raises(ProtocolError):
            t.parse_claim(bad)
    assert t.engine_subscriptions("g") == ["$share/g/segue/+/up/#", "$share/g/segue/+/status"]
    req = cm.parse_request("SN1", _req())
    assert wire.parse_reply(cm.refused_reply(req), "SN1", "n" * 21) is None          # another nonce
    assert wire.parse_reply(b"not json", "SN1", "n" * 20) is None
    refused = wire.parse_reply(cm.refused_reply(req, "nope"), "SN1", "n" * 20)
    assert refused is not None and not refused.ok and refused.error == "nope"
    broken = json.dumps({"v": 1, "serial": "SN1", "nonce": "n" * 20, "ok": True, "port": 1883}).encode()
    with pytest.raises(wire.ClaimError, match="sealed"):
        wire.parse_reply(broken, "SN1", "n" * 20)


def test_bundle_format_round_trip() -> None:
    from icp.messages.bundle import Bundle, MqttBundle, parse, render

    b = Bundle(MqttBundle("h", 1883, "segue", username="u", password='p"w\\'), device_id="d1", serial="SN1")
    assert parse(render(b)) == b
