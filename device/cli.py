"""`segue-device`: run the device process (settings from a TOML file, overridable by flags).

Exit codes: 0 stopped (SIGTERM, Ctrl-C); 2 bad settings; `[device] restart_exit_code` (75) after a
dashboard restart or a claim enrollment that may succeed later (systemd starts the process again);
78 enrollment refused or credential unusable (a person has to act; the unit does not restart on it);
74 the sound card was lost and could not be reopened within [audio] give_up_s (systemd restarts it).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import time
from typing import Optional

from device import config as cfgmod
from servicekit.systemd import Notifier

EXIT_CONFIG = 78  # EX_CONFIG

HELP = """\
Settings (TOML, every key optional; flags below override the file; device/example.toml is a Pi's):
  [mqtt]     host, port (1883), username, password, ca (CA file; enables TLS), cert, key (client cert),
             client_id ("segue-<id>"), topic_root ("segue"), keepalive_s (30), reconnect_min_s (1),
             reconnect_max_s (30)
  [device]   id (^[a-z0-9][a-z0-9_-]{0,62}$), software; restart: what down/restart PRESS does:
             exit (default: exit with restart_exit_code (75), systemd starts it again) | exec (re-exec)
  [audio]    backend: portaudio (the sound card) | virtual (simulated card, for demos and tests);
             sample_rate (16000; any 8000..48000, the mic path resamples to 16 kHz), buffer_ms (20),
             input_device / output_device (PortAudio indices); duplex: separate (default: input and
             output streams of their own, no capture lag) | full; stall_s (3: a stream with no audio
             callback this long = card lost), retry_s (1: reopen attempts), give_up_s (30: then exit 74);
             virtual only: output_latency_ms (100), jitter_ms (0), echo_gain (0), echo_delay_ms (20), seed
  [aec]      backend: speex (libspeexdsp, default) | webrtc (aec-audio-processing) | none;
             frame_ms (10), filter_ms (200: echo tail modelled), ref_lead_ms (10),
             track_delay (true: find the echo's delay in the audio, so a timing jump of the card
             after an underrun does not make the speaker's own voice a barge-in)
  [vad]      backend: webrtc (default) | silero; aggressiveness (0-3), frame_ms (10/20/30), threshold,
             onset_frames (3: consecutive speech frames for an onset), offset_frames (25),
             pause_frames (5: quiet frames inside speech at which the turn's end is considered)
  [bargein]  enabled (true), min_rms (150), echo_margin (2.5: speech must be this many times louder
             than the expected residual echo), suspect_margin (3.0: a frame this far above the echo's
             typical level pauses playback optimistically, before the VAD's onset)
  [machine]  heartbeat_s (1.0: playback heartbeats while speaking), listen_timeout_s (8: no speech
             after a wake -> idle)
  [turns]    optimistic_pause (true: pause on the first speech-like frame, resume at the exact sample
             if no onset follows), min_interruption_ms (0: the onset interrupts; 500 = LiveKit's
             default), semantic_eot (true: a turn whose words look complete ends after
             eot_complete_silence_ms (250), one that looks unfinished after eot_incomplete_silence_ms
             (1600), otherwise after [asr] end_silence_ms); audio_eot (true: "complete" also needs
             the audio model Smart Turn, models/smart_turn, to agree); final_from_quick (true: such a
             turn's quick transcript is its final, no second Whisper pass); eot_fast_questions_only
             (true: the short silence only for a question; a complete command of <= 3 words waits
             eot_command_silence_ms (500), a statement the ordinary silence); docs/turns.md
  [wakeword] enabled (false), models (["hey_jarvis"]: names in model_dir or .onnx paths),
             threshold (0.5), refractory_s (2.0), model_dir (default models/openwakeword or
             $SEGUE_OPENWAKEWORD_DIR), while_speaking (false: a wake word while speaking interrupts
             like a barge-in), onnx_threads (1)
  [asr]      backend: none (default; no recogniser) | auto (vosk if a model for the language is at
             hand, else faster-whisper) | vosk | faster-whisper; language ("en"), models_dir,
             vosk_model (dir), whisper_model (CTranslate2 dir; default the bundled tiny.en),
             whisper_threads (2), partials (true), quick_partials (true: 60 ms short-context partials
             every 0.25 s; false: a full pass every partial_interval_s (1.0)), over_speech_prompt
             (" Mm-hmm. Uh-huh.": what Whisper is told came before a barge-in, so hums read as hums;
             "" = none), end_silence_ms (700:
             silence that ends an utterance), max_utterance_s (15), min_speech_ms (300), preroll_ms (300)
  [gpio]     enabled (false), orb_pins ([17, 27, 22] BCM red/green/blue; [] = no orb),
             orb_active_high (true; false for common anode), orb_pwm (true), orb_brightness (1.0),
             mute_pin (23; -1 = none), talk_pin (24; -1 = none), button_pull_up (true),
             bounce_time_s (0.02), hold_time_s (1.0: talk held this long = cancel)
  [telemetry] interval_s (30; 0 = off), thermal_path (/sys/class/thermal/thermal_zone0/temp)
  [claim]    bundle (factory claim bundle; enables first-boot enrollment), serial, serial_file,
             credential (/var/lib/segue/device.toml: written once, then read at every start),
             timeout_s (20), host (override the broker host the fleet names)

Dashboard commands: <root>/<id>/down/mute ON|OFF, <root>/<id>/down/restart PRESS (plain text).
Exit codes: 0 stopped; 2 bad settings; 75 restart requested / enrollment to retry; 78 enrollment refused.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="segue-device", description="The segue device process (Raspberry Pi).",
                                epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="TOML settings file")
    p.add_argument("--broker", metavar="URL", help="mqtt://host:port or mqtts://host:port (overrides [mqtt])")
    p.add_argument("--id", help="device id (overrides [device] id)")
    p.add_argument("--audio", choices=("portaudio", "virtual"), help="audio backend (overrides [audio] backend)")
    p.add_argument("--aec", choices=("speex", "webrtc", "none"), help="echo canceller (overrides [aec] backend)")
    p.add_argument("--vad", choices=("webrtc", "silero"), help="VAD (overrides [vad] backend)")
    p.add_argument("--no-bargein", action="store_true", help="never pause on speech while speaking")
    p.add_argument("--wakeword", action="store_true", help="enable the wake word (overrides [wakeword] enabled)")
    p.add_argument("--asr", choices=("none", "auto", "vosk", "faster-whisper"),
                   help="speech recogniser (overrides [asr] backend)")
    p.add_argument("--gpio", action="store_true", help="enable the orb and buttons (overrides [gpio] enabled)")
    p.add_argument("--telemetry-interval", type=float, metavar="S",
                   help="seconds between telemetry messages, 0 = off (overrides [telemetry] interval_s)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ...")
    return p


def resolve(args: argparse.Namespace) -> cfgmod.DeviceConfig:
    cfg = cfgmod.load(args.config)
    r = dataclasses.replace
    if args.broker:
        cfg = cfgmod.with_broker(cfg, args.broker)
    if args.id:
        cfg = r(cfg, device=r(cfg.device, id=args.id))
    if args.audio:
        cfg = r(cfg, audio=r(cfg.audio, backend=args.audio))
    if args.aec:
        cfg = r(cfg, aec=r(cfg.aec, backend=args.aec))
    if args.vad:
        cfg = r(cfg, vad=r(cfg.vad, backend=args.vad))
    if args.no_bargein:
        cfg = r(cfg, bargein=r(cfg.bargein, enabled=False))
    if getattr(args, "wakeword", False):
        cfg = r(cfg, wakeword=r(cfg.wakeword, enabled=True))
    if getattr(args, "asr", None):
        cfg = r(cfg, asr=r(cfg.asr, backend=args.asr))
    if getattr(args, "gpio", False):
        cfg = r(cfg, gpio=r(cfg.gpio, enabled=True))
    if getattr(args, "telemetry_interval", None) is not None:
        cfg = r(cfg, telemetry=r(cfg.telemetry, interval_s=args.telemetry_interval))
    return cfgmod._check(cfg)


def restart_argv(argv: list[str]) -> list[str]:
    """The command line that starts this process again (for `[device] restart = "exec"`)."""
    return [sys.executable, "-m", "device.cli", *argv]


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = resolve(args)
    except (ValueError, OSError) as e:
        print(f"segue-device: {e}", file=sys.stderr)
        return 2
    if cfg.claim.bundle:
        from device.enroll import EnrollmentError, ensure_credential

        try:
            cfg = ensure_credential(cfg)
        except EnrollmentError as e:
            print(f"segue-device: {e}", file=sys.stderr)
            if e.retry:
                time.sleep(5)  # the fleet may be unreachable for a while: do not hammer it
                return cfg.device.restart_exit_code
            return EXIT_CONFIG
    from device.app import DeviceApp

    try:
        app = DeviceApp(cfg)
    except (ValueError, OSError) as e:  # a missing model, a bad sound card index, ...
        print(f"segue-device: {e}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: app.request_stop())
    app.start()
    try:
        app.serve(notifier=Notifier())
    except KeyboardInterrupt:
        pass
    finally:
        app.stop()
    if app.exit_code is not None:  # the sound card stayed lost: systemd restarts us
        return app.exit_code
    if app.restart_requested:
        logging.getLogger("segue-device").warning("restarting (%s)", cfg.device.restart)
        if cfg.device.restart == "exec":
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(sys.executable, restart_argv(argv))
        return cfg.device.restart_exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
