"""Device settings: one TOML file, frozen dataclasses, every field with a default.

    [mqtt]     host, port, username, password, ca, cert, key, topic_root, keepalive_s
    [device]   id, software
    [audio]    backend ("portaudio" | "virtual"), sample_rate, buffer_ms, input_device, output_device,
               plus the virtual card's output_latency_ms, jitter_ms, echo_gain, echo_delay_ms, seed
    [aec]      backend ("speex" | "webrtc" | "none"), frame_ms, filter_ms, ref_lead_ms
    [vad]      backend ("webrtc" | "silero"), aggressiveness, frame_ms, threshold, onset_frames, offset_frames
    [bargein]  enabled, min_rms, echo_margin
    [machine]  heartbeat_s, listen_timeout_s
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

from device.aec import AecSettings
from device.bargein import BargeInSettings
from device.vad import VadSettings


@dataclass(frozen=True)
class MqttSettings:
    host: str = "localhost"
    port: int = 1883
    username: Optional[str] = None
    password: Optional[str] = None
    ca: Optional[str] = None      # CA file: enables TLS
    cert: Optional[str] = None    # client certificate (TLS client auth)
    key: Optional[str] = None
    topic_root: str = "segue"
    keepalive_s: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0


@dataclass(frozen=True)
class DeviceIdentity:
    id: str = "dev1"
    software: str = "segue-device 0.1"


@dataclass(frozen=True)
class AudioSettings:
    backend: str = "portaudio"  # portaudio | virtual
    sample_rate: int = 16000
    buffer_ms: float = 20.0
    input_device: Optional[int] = None
    output_device: Optional[int] = None
    output_latency_ms: float = 100.0   # virtual card only
    jitter_ms: float = 0.0
    echo_gain: float = 0.0
    echo_delay_ms: float = 20.0
    seed: int = 0
    realtime: bool = True              # virtual card paced by the wall clock under the CLI


@dataclass(frozen=True)
class MachineConfig:
    heartbeat_s: float = 1.0
    listen_timeout_s: float = 8.0


@dataclass(frozen=True)
class DeviceConfig:
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    device: DeviceIdentity = field(default_factory=DeviceIdentity)
    audio: AudioSettings = field(default_factory=AudioSettings)
    aec: AecSettings = field(default_factory=AecSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    bargein: BargeInSettings = field(default_factory=BargeInSettings)
    machine: MachineConfig = field(default_factory=MachineConfig)


def _section(cls: type, data: dict[str, Any], name: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"[{name}]: unknown setting(s) {', '.join(sorted(unknown))}")
    if cls is VadSettings and data.get("silero_model"):
        data = {**data, "silero_model": Path(data["silero_model"])}
    return cls(**data)


def from_dict(doc: dict[str, Any]) -> DeviceConfig:
    sections = {f.name: f for f in dataclasses.fields(DeviceConfig)}
    unknown = set(doc) - set(sections)
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(sorted(unknown))}")
    kw = {}
    for name, f in sections.items():
        cls = f.default_factory  # type: ignore[misc]
        kw[name] = _section(cls, dict(doc.get(name, {})), name)
    return DeviceConfig(**kw)


def load(path: Optional[str | Path]) -> DeviceConfig:
    if path is None:
        return DeviceConfig()
    with open(path, "rb") as f:
        return from_dict(tomllib.load(f))


def with_broker(cfg: DeviceConfig, url: str) -> DeviceConfig:
    """Override host/port (and TLS for mqtts://) from `mqtt://host:port`."""
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ValueError(f"broker URL must be mqtt://host:port or mqtts://host:port, got {url!r}")
    port = u.port or (8883 if u.scheme == "mqtts" else 1883)
    return dataclasses.replace(cfg, mqtt=dataclasses.replace(cfg.mqtt, host=u.hostname, port=port))
