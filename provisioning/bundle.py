"""Config bundles: the small TOML files a device, the engine or a factory image reads.

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
from pathlib import Path

from .passwords import write_file


@dataclass(frozen=True)
class MqttBundle:
    host: str
    port: int
    topic_root: str
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
    for key in ("host", "port", "username", "password", "ca", "cert", "key", "client_id", "topic_root"):
        v = getattr(m, key)
        if v is not None:
            lines.append(f"{key} = {_value(v)}")
    if bundle.device_id is not None:
        lines += ["", "[device]", f"id = {_value(bundle.device_id)}"]
    return "\n".join(lines) + "\n"


def write(bundle: Bundle, path: Path) -> Path:
    """Write a bundle, mode 0600 (it may hold a password)."""
    return write_file(path, render(bundle), mode=0o600)


def load(path: Path) -> Bundle:
    data = tomllib.loads(path.read_text())
    mq = data.get("mqtt", {})
    mqtt = MqttBundle(
        host=str(mq["host"]),
        port=int(mq["port"]),
        topic_root=str(mq.get("topic_root", "segue")),
        **{k: (str(mq[k]) if k in mq else None) for k in ("username", "password", "ca", "cert", "key", "client_id")},
    )
    dev = data.get("device", {})
    return Bundle(mqtt=mqtt, device_id=str(dev["id"]) if "id" in dev else None)
