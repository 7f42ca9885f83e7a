"""Device settings: one TOML file, frozen dataclasses, every field with a default.

    [mqtt]     host, port, tls, username, password, ca, cert, key, client_id, topic_root, keepalive_s,
               reconnect_min_s, reconnect_max_s (`icp.settings.MqttSettings`, the engine's type too)
    [device]   id, software, restart ("exit" | "exec"), restart_exit_code
    [audio]    backend ("portaudio" | "virtual"), sample_rate, buffer_ms, input_device, output_device,
               plus the virtual card's output_latency_ms, jitter_ms, echo_gain, echo_delay_ms, seed
    [aec]      backend ("speex" | "webrtc" | "none"), frame_ms, filter_ms, ref_lead_ms
    [vad]      backend ("webrtc" | "silero"), aggressiveness, frame_ms, threshold, onset_frames, offset_frames
    [bargein]  enabled, min_rms, echo_margin
    [machine]  heartbeat_s, listen_timeout_s
    [turns]    optimistic_pause, min_interruption_ms, semantic_eot, eot_complete_silence_ms,
               eot_command_silence_ms, eot_incomplete_silence_ms, audio_eot, final_from_quick,
               eot_fast_questions_only (docs/turns.md)
    [wakeword] enabled, models, threshold, refractory_s, model_dir, while_speaking, onnx_threads
    [asr]      backend ("none" | "auto" | "vosk" | "faster-whisper"), language, models_dir, vosk_model,
               whisper_model, whisper_threads, partials, partial_interval_s, quick_partials, end_silence_ms,
               max_utterance_s, min_speech_ms, preroll_ms
    [gpio]     enabled, orb_pins, orb_active_high, orb_pwm, orb_brightness, mute_pin, talk_pin,
               button_pull_up, bounce_time_s, hold_time_s
    [telemetry] interval_s, thermal_path
    [claim]    bundle, serial, serial_file, credential, timeout_s, host

Everything added for the Pi (wake word, ASR, GPIO, claim) is off by default, so a `DeviceConfig()`
built in code (the evaluation harness, tests) is the cheap text-mode device; a Pi's
/etc/segue/device.toml turns them on (see device/example.toml). Telemetry is on (every 30 s; cheap).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from device.aec import AecSettings
from device.bargein import BargeInSettings
from device.vad import VadSettings
from icp.settings import MqttSettings, SettingsError, apply_broker_url
from servicekit.settings import read_toml, structure

__all__ = ["DeviceConfig", "MqttSettings", "SettingsError", "from_dict", "load", "with_broker"]


@dataclass(frozen=True)
class DeviceIdentity:
    id: str = "dev1"
    software: str = "segue-device 0.1"
    restart: str = "exit"        # down/restart: "exit" (with restart_exit_code; systemd starts it again) | "exec"
    restart_exit_code: int = 75  # EX_TEMPFAIL


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
    duplex: str = "separate"           # portaudio: separate input/output streams | full (one stream)
    stall_s: float = 3.0               # portaudio: a stream with no callback this long = card gone
    retry_s: float = 1.0               # a lost card is reopened this often...
    give_up_s: float = 30.0            # ...and the process exits 74 (systemd restarts it) after this long


@dataclass(frozen=True)
class MachineConfig:
    heartbeat_s: float = 1.0
    listen_timeout_s: float = 8.0


@dataclass(frozen=True)
class TurnsConfig:
    """Turn taking. The defaults are segue's; a baseline like Pipecat's and LiveKit's defaults is
    `optimistic_pause = false`, `min_interruption_ms = 500`, `semantic_eot = false`, `[vad] onset_frames = 10`
    and `[asr] end_silence_ms = 800` (what `segue-bench turns` runs beside segue)."""
    optimistic_pause: bool = True          # pause on the first speech-like frame; resume at the sample if no onset
    min_interruption_ms: float = 0.0       # speech must last this long to interrupt (0: the onset interrupts)
    semantic_eot: bool = True              # a turn ends by its words as well as its silence
    eot_complete_silence_ms: float = 250.0     # silence that ends a turn whose words look complete
    eot_command_silence_ms: float = 500.0      # ...a complete command or reply of <= 3 words ("Thanks.")
    eot_incomplete_silence_ms: float = 1600.0  # silence that ends one whose words look unfinished
    audio_eot: bool = True                 # ...and "complete" needs the audio model (Smart Turn) to agree
    final_from_quick: bool = True          # a turn ended by complete words sends their quick transcript as
    #                                        the final (no second Whisper pass on the answer's path)
    eot_fast_questions_only: bool = True   # the short silence only for a question ("?"); <= 3 words wait
    #                                        eot_command_silence_ms, other statements the ordinary silence
    final_lead_ms: float = 450.0           # the final pass starts this long before the silence ends a turn
    #                                        (in the silence; dropped if the user speaks again; 0: off)


@dataclass(frozen=True)
class WakeWordConfig:
    enabled: bool = False
    models: tuple[str, ...] = ("hey_jarvis",)  # names in model_dir, or .onnx paths
    threshold: float = 0.5
    refractory_s: float = 2.0                  # audio time after a detection with no other
    model_dir: Optional[str] = None            # default: device.models.openwakeword_dir()
    while_speaking: bool = False               # also listen while speaking (a wake then interrupts)
    onnx_threads: int = 1


ASR_BACKENDS = ("none", "auto", "vosk", "faster-whisper", "whisper")


@dataclass(frozen=True)
class AsrConfig:
    backend: str = "none"              # none (text mode) | auto | vosk | faster-whisper
    language: str = "en"
    models_dir: Optional[str] = None   # default $SEGUE_MODELS_DIR or models/
    vosk_model: Optional[str] = None   # a vosk model dir for `language`
    whisper_model: Optional[str] = None  # a faster-whisper (CTranslate2) model dir; default bundled tiny.en
    whisper_threads: int = 2
    partials: bool = True
    partial_interval_s: float = 1.0    # faster-whisper: audio between full-pass partials (quick_partials off)
    quick_partials: bool = True        # faster-whisper: partials from a short-context pass, 0.18 s after the
    #                                    first sound and every 0.25 s (~60 ms each instead of ~370 ms)
    # faster-whisper: the prompt for a barge-in over the agent's speech, where hums are expected
    # (tiny.en writes "Mm hmm" as "And then" without it); "" = none
    over_speech_prompt: str = " Mm-hmm. Uh-huh."
    end_silence_ms: float = 700.0      # silence after speech that ends the utterance
    max_utterance_s: float = 15.0
    min_speech_ms: float = 300.0       # speech still going at the wake shorter than this is its tail
    preroll_ms: float = 300.0          # audio before the onset handed to the recogniser

    @property
    def enabled(self) -> bool:
        return self.backend != "none"


@dataclass(frozen=True)
class GpioConfig:
    enabled: bool = False
    orb_pins: Optional[tuple[int, int, int]] = (17, 27, 22)  # BCM red, green, blue; [] or none: no orb
    orb_active_high: bool = True
    orb_pwm: bool = True
    orb_brightness: float = 1.0
    mute_pin: Optional[int] = 23   # -1: no mute button
    talk_pin: Optional[int] = 24   # -1: no talk button
    button_pull_up: bool = True
    bounce_time_s: Optional[float] = 0.02
    hold_time_s: float = 1.0       # talk button held this long: cancel


@dataclass(frozen=True)
class TelemetryConfig:
    interval_s: float = 30.0       # 0: no telemetry
    thermal_path: str = "/sys/class/thermal/thermal_zone0/temp"


@dataclass(frozen=True)
class ClaimConfig:
    bundle: Optional[str] = None       # the factory claim bundle; None: no claim enrollment
    serial: Optional[str] = None       # else serial_file, else the bundle's [claim] serial, else the Pi's serial
    serial_file: Optional[str] = None
    credential: str = "/var/lib/segue/device.toml"  # own credential: written by the claim, read at start
    timeout_s: float = 20.0
    host: Optional[str] = None         # override the broker host the fleet names


@dataclass(frozen=True)
class DeviceConfig:
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    device: DeviceIdentity = field(default_factory=DeviceIdentity)
    audio: AudioSettings = field(default_factory=AudioSettings)
    aec: AecSettings = field(default_factory=AecSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    bargein: BargeInSettings = field(default_factory=BargeInSettings)
    machine: MachineConfig = field(default_factory=MachineConfig)
    turns: TurnsConfig = field(default_factory=TurnsConfig)
    wakeword: WakeWordConfig = field(default_factory=WakeWordConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    claim: ClaimConfig = field(default_factory=ClaimConfig)


def _check(cfg: DeviceConfig) -> DeviceConfig:
    if cfg.asr.backend not in ASR_BACKENDS:
        raise SettingsError(f"[asr] backend must be one of {', '.join(ASR_BACKENDS)}, got {cfg.asr.backend!r}")
    if cfg.device.restart not in ("exit", "exec"):
        raise SettingsError(f"[device] restart must be exit or exec, got {cfg.device.restart!r}")
    if not 8000 <= cfg.audio.sample_rate <= 48000:
        raise SettingsError(f"[audio] sample_rate must be 8000..48000 (the mic path resamples to 16 kHz), "
                         f"got {cfg.audio.sample_rate}")
    if cfg.audio.duplex not in ("separate", "full"):
        raise SettingsError(f"[audio] duplex must be separate or full, got {cfg.audio.duplex!r}")
    if cfg.telemetry.interval_s < 0:
        raise SettingsError("[telemetry] interval_s must be >= 0")
    return cfg


def from_dict(doc: dict[str, Any]) -> DeviceConfig:
    """Settings from a parsed TOML document (`servicekit.settings`: unknown keys and bad values fail here,
    naming the key)."""
    doc = dict(doc)
    if isinstance(doc.get("gpio"), dict):  # TOML has no null: [] / -1 switch a part off
        doc["gpio"] = {k: (None if v in ([], -1) else v) for k, v in doc["gpio"].items()}
    return _check(structure(doc, DeviceConfig))


def load(path: Optional[str | Path]) -> DeviceConfig:
    if path is None:
        return DeviceConfig()
    return from_dict(read_toml(path))


def with_broker(cfg: DeviceConfig, url: str) -> DeviceConfig:
    """`--broker mqtt[s]://[user:password@]host:port` onto `[mqtt]` (mqtts turns TLS on; credentials kept)."""
    return dataclasses.replace(cfg, mqtt=apply_broker_url(cfg.mqtt, url))
