"""Building the device's parts from its settings: the audio backend, the wake word, the recogniser, GPIO.

Hardware and models behind factories (as gpiozero does): the app asks for a part by its settings and
never names the class; the virtual card and the mock pin factory never show in library code.
"""

from __future__ import annotations

from device.audio.base import AudioBackend
from device.audio.virtual import VirtualCard, VirtualCardSettings
from device.config import AudioSettings, DeviceConfig


def make_backend(audio: AudioSettings) -> AudioBackend:
    if audio.backend == "virtual":
        return VirtualCard(VirtualCardSettings(
            sample_rate=audio.sample_rate, buffer_ms=audio.buffer_ms, output_latency_ms=audio.output_latency_ms,
            jitter_ms=audio.jitter_ms, echo_gain=audio.echo_gain, echo_delay_ms=audio.echo_delay_ms, seed=audio.seed,
        ), realtime=audio.realtime)
    if audio.backend == "portaudio":
        from device.audio.portaudio import PortAudioBackend, PortAudioSettings

        return PortAudioBackend(PortAudioSettings(audio.sample_rate, audio.buffer_ms, audio.input_device,
                                                  audio.output_device, duplex=audio.duplex,
                                                  stall_s=audio.stall_s))
    raise ValueError(f"unknown audio backend {audio.backend!r} (portaudio, virtual)")


def build_wakeword(config: DeviceConfig):
    from pathlib import Path

    from device.wakeword import WakeWordDetector, WakeWordSettings

    w = config.wakeword
    return WakeWordDetector(WakeWordSettings(models=tuple(w.models), threshold=w.threshold,
                                             refractory_s=w.refractory_s,
                                             model_dir=Path(w.model_dir) if w.model_dir else None,
                                             onnx_threads=w.onnx_threads))


def build_asr(config: DeviceConfig):
    from pathlib import Path

    from device.asr import ASRSettings, WhisperSettings, create_asr
    from device.models import ModelSettings

    a = config.asr
    lang = a.language.lower()
    models = ModelSettings(models_dir=Path(a.models_dir) if a.models_dir else None,
                           vosk_models={lang: Path(a.vosk_model)} if a.vosk_model else {},
                           whisper_model=Path(a.whisper_model) if a.whisper_model else None)
    whisper = WhisperSettings(cpu_threads=a.whisper_threads, partials=a.partials,
                              partial_interval_s=a.partial_interval_s, quick_partials=a.quick_partials,
                              over_speech_prompt=a.over_speech_prompt)
    return create_asr(a.backend, ASRSettings(language=lang, models=models, whisper=whisper))


def build_turn_model(config: DeviceConfig):
    """The audio end-of-turn model (Smart Turn v3.2, unpacked by scripts/setup.sh into models/smart_turn)."""
    from pathlib import Path

    from device.models import ModelSettings, smart_turn_model_path
    from device.turn_audio import SmartTurn

    a = config.asr
    return SmartTurn(smart_turn_model_path(ModelSettings(models_dir=Path(a.models_dir) if a.models_dir else None)))


def gpio_settings(config: DeviceConfig):
    from device.gpio import GpioSettings

    g = config.gpio
    return GpioSettings(orb_pins=tuple(g.orb_pins) if g.orb_pins else None, orb_active_high=g.orb_active_high,
                        orb_pwm=g.orb_pwm, orb_brightness=g.orb_brightness, mute_pin=g.mute_pin,
                        talk_pin=g.talk_pin, button_pull_up=g.button_pull_up, bounce_time_s=g.bounce_time_s,
                        hold_time_s=g.hold_time_s)
