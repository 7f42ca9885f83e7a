"""segue-server settings: a TOML file, environment overrides for secrets, command-line overrides.

Every setting has a default, so `segue-server` runs with no file at all against a local broker.
Secrets come from the environment (`OPENAI_API_KEY`, `SEGUE_MQTT_PASSWORD`) or the file; they are
never logged (the dataclasses hide them from repr).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from icp.machine import AutoResume, EngineSettings
from icp.strategies import STRATEGIES


class ConfigError(ValueError):
    """A setting is wrong; the message says which and what to do."""


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca: str | None = None  # CA file that signed the broker's certificate
    cert: str | None = None  # client certificate (TLS client authentication)
    key: str | None = field(default=None, repr=False)
    topic_root: str = "segue"
    group: str = "segue-engine"  # shared-subscription group: workers in one group split the fleet
    client_id: str = ""  # empty: generated
    keepalive_s: int = 30


@dataclass(frozen=True)
class LlmSettings:
    base_url: str = "http://127.0.0.1:8080/v1"
    model: str = "smollm2"
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    temperature: float | None = None


@dataclass(frozen=True)
class TtsSettings:
    backend: str = "auto"  # auto (best offline), piper, espeak, openai
    sample_rate: int = 16000
    voice: str | None = None  # openai voice, or espeak voice
    model: str | None = None  # openai speech model


@dataclass(frozen=True)
class ClassifierSettings:
    backend: str = "local"  # local, llm, auto (local; the LLM where the local one is unsure)
    threshold: float = 0.6  # auto: below this local confidence, ask the LLM
    llm_timeout_s: float = 2.0


@dataclass(frozen=True)
class StorageSettings:
    state_dir: str = "state"
    backend: str = "sqlite"


@dataclass(frozen=True)
class ServerSettings:
    mqtt: MqttSettings = MqttSettings()
    llm: LlmSettings = LlmSettings()
    tts: TtsSettings = TtsSettings()
    classifier: ClassifierSettings = ClassifierSettings()
    storage: StorageSettings = StorageSettings()
    engine: EngineSettings = EngineSettings()
    strategy: str = "icp"
    allowed_devices: tuple[str, ...] = ()  # empty: any device the broker lets in
    tick_s: float = 0.05
    log_level: str = "INFO"


SECTIONS = {"mqtt": MqttSettings, "llm": LlmSettings, "tts": TtsSettings, "classifier": ClassifierSettings,
            "storage": StorageSettings, "engine": EngineSettings}


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"[{where}] has no setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"[{where}] {name} must be true or false")
        if isinstance(default, AutoResume):
            try:
                value = AutoResume(value)
            except ValueError:
                raise ConfigError(f"[{where}] {name} must be one of auto, ask, off") from None
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"[{where}] {name} must be a number")
            value = type(default)(value)
        elif isinstance(default, tuple):
            value = tuple(value)
        values[name] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{where}] {exc}") from None


def load(path: str | Path | None, env: dict[str, str] | None = None) -> ServerSettings:
    env = dict(os.environ) if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    top: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS:
            continue
        if key not in ("strategy", "allowed_devices", "tick_s", "log_level"):
            raise ConfigError(f"unknown setting {key!r} (sections: {', '.join(SECTIONS)})")
        top[key] = tuple(value) if key == "allowed_devices" else value
    sections = {name: _build(cls, data.get(name, {}), name) for name, cls in SECTIONS.items()}
    settings = ServerSettings(**sections, **top)
    if settings.strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}")
    if env.get("OPENAI_API_KEY"):
        settings = replace(settings, llm=replace(settings.llm, api_key=env["OPENAI_API_KEY"]))
    if env.get("SEGUE_MQTT_PASSWORD"):
        settings = replace(settings, mqtt=replace(settings.mqtt, password=env["SEGUE_MQTT_PASSWORD"]))
    return settings


def apply_broker_url(mqtt: MqttSettings, url: str) -> MqttSettings:
    """`mqtt://host:port` or `mqtts://host:port` (user:password@ allowed, but prefer the env)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"--broker {url!r}: use mqtt://host:port or mqtts://host:port")
    tls = parts.scheme == "mqtts"
    return replace(
        mqtt,
        host=parts.hostname or mqtt.host,
        port=parts.port or (8883 if tls else 1883),
        tls=tls,
        username=parts.username or mqtt.username,
        password=parts.password or mqtt.password,
    )
