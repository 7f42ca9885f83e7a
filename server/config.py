"""segue-server settings: a TOML file, environment overrides for secrets, command-line overrides.

The file is loaded with `servicekit.settings` (cattrs: unknown keys and bad values fail at start, naming
the key); the broker connection (`[mqtt]`, `--broker`) is the type both peers share
(`icp.settings.MqttSettings`).

Every setting has a default, so `segue-server` runs with no file at all against a local broker.
Secrets come from the environment (`OPENAI_API_KEY`, `SEGUE_MQTT_PASSWORD`) or the file; they are
never logged (the dataclasses hide them from repr).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from icp.machine import EngineSettings
from icp.settings import MqttSettings, SettingsError, apply_broker_url
from icp.strategies import STRATEGIES
from servicekit.settings import read_toml, structure

__all__ = ["ConfigError", "MqttSettings", "ServerSettings", "apply_broker_url", "from_dict", "load"]


ConfigError = SettingsError  # a setting is wrong; the message says which and what to do


@dataclass(frozen=True)
class LlmSettings:
    base_url: str = "http://127.0.0.1:8080/v1"
    model: str = "smollm2"
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    temperature: float | None = None
    # Replies streamed at once by one worker (a thread each, from a pool started with the engine); more
    # wait their turn. A thread started per reply cost the engine's loop ~5% at 500 devices.
    max_streams: int = 128


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
    # redis://HOST:PORT/DB: conversation state shared by several workers (docs/fleet-scale.md); it
    # replaces `backend`. Empty: one worker, state in `backend`.
    url: str = ""


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
    metrics_port: int = 0  # Prometheus metrics on this port (0: off)
    # Where LLM streams and TTS run: "process" (a child process; the engine's loop keeps its GIL) or
    # "threads" (this process). docs/fleet-scale.md has the figures.
    replies: str = "process"
    # The reply process's nice value (0-19): above 0 the engine's loop wins the CPU when both want it,
    # so interrupts and state changes keep their latency under load and replies take the wait.
    reply_niceness: int = 0


def from_dict(data: dict[str, Any]) -> ServerSettings:
    """Settings from a parsed TOML document; `ConfigError` names the first bad key."""
    settings = structure(data, ServerSettings)
    if settings.storage.url and not settings.storage.url.startswith("redis://"):
        raise ConfigError(f"storage.url must be redis://HOST:PORT/DB, got {settings.storage.url!r}")
    if settings.llm.max_streams < 1:
        raise ConfigError(f"llm.max_streams must be at least 1, got {settings.llm.max_streams}")
    if settings.replies not in ("process", "threads"):
        raise ConfigError(f"replies must be process or threads, got {settings.replies!r}")
    if not 0 <= settings.reply_niceness <= 19:
        raise ConfigError(f"reply_niceness must be 0-19, got {settings.reply_niceness}")
    if settings.strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {settings.strategy!r}")
    return settings


def load(path: str | Path | None, env: dict[str, str] | None = None) -> ServerSettings:
    env = dict(os.environ) if env is None else env
    settings = from_dict(read_toml(path) if path is not None else {})
    if env.get("OPENAI_API_KEY"):
        settings = replace(settings, llm=replace(settings.llm, api_key=env["OPENAI_API_KEY"]))
    if env.get("SEGUE_MQTT_PASSWORD"):
        settings = replace(settings, mqtt=replace(settings.mqtt, password=env["SEGUE_MQTT_PASSWORD"]))
    return settings
