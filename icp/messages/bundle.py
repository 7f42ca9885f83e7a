"""Config bundles: the small TOML files a device, the engine or a factory image reads. The fleet
writes them (provisioning/bundle.py), the device writes its own after a claim and reads them
(device/claim.py, device/enroll.py); this module is the format, text in and text out, no files.

Keys (all under `[mqtt]` unless said otherwise; absent keys are simply not written):

- `host`, `port` — the broker.
- `username`, `password` — a password credential (absent with a client certificate).
- `ca` — path of the fleet CA certificate (PEM) to verify the broker's TLS certificate; when present,
  connect with TLS.
- `cert`, `key` — paths of the device's client certificate and private key (PEM).
- `client_id` — the MQTT client id to use (the device id for devices).
- `topic_root` — the topic root (default `segue`).
- `[device] id` — the device id (topics are `<topic_root>/<id>/...`).
- `[claim] serial` — in a factory claim bundle only.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass

from icp.messages.topics import DEFAULT_ROOT as DEFAULT_TOPIC_ROOT

MQTT_KEYS = ("host", "port", "username", "password", "ca", "cert", "key", "client_id", "topic_root")


@dataclass(frozen=True)
class MqttBundle:
    host: str
    port: int
    topic_root: str = DEFAULT_TOPIC_ROOT
    username: str | None = None
    password: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class Bundle:
    mqtt: MqttBundle
    device_id: str | None = None
    comment: str = ""
    serial: str | None = None  # `[claim] serial`, factory claim bundles only


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    # JSON string escapes are valid TOML basic-string escapes for the ASCII text we write.
    return json.dumps(str(v), ensure_ascii=True)


def render(bundle: Bundle) -> str:
    m = bundle.mqtt
    lines = [f"# {line}" for line in bundle.comment.splitlines()] if bundle.comment else []
    lines.append("[mqtt]")
    for key in MQTT_KEYS:
        v = getattr(m, key)
        if v is not None:
            lines.append(f"{key} = {_value(v)}")
    if bundle.device_id is not None:
        lines += ["", "[device]", f"id = {_value(bundle.device_id)}"]
    if bundle.serial is not None:
        lines += ["", "[claim]", f"serial = {_value(bundle.serial)}"]
    return "\n".join(lines) + "\n"


def parse(text: str) -> Bundle:
    """A bundle from TOML text; raises tomllib.TOMLDecodeError, KeyError (no host/port), ValueError."""
    data = tomllib.loads(text)
    mq = data.get("mqtt", {})
    mqtt = MqttBundle(
        host=str(mq["host"]),
        port=int(mq["port"]),
        topic_root=str(mq.get("topic_root", DEFAULT_TOPIC_ROOT)),
        **{k: (str(mq[k]) if k in mq else None) for k in ("username", "password", "ca", "cert", "key", "client_id")},
    )
    dev, claim = data.get("device", {}), data.get("claim", {})
    return Bundle(mqtt=mqtt, device_id=str(dev["id"]) if "id" in dev else None,
                  serial=str(claim["serial"]) if "serial" in claim else None)
