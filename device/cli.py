"""`segue-device`: run the device process (settings from a TOML file, overridable by flags)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from typing import Optional

from device import config as cfgmod

HELP = """\
Settings (TOML, every key optional; flags below override the file):
  [mqtt]    host, port (1883), username, password, ca (CA file; enables TLS), cert, key (client cert),
            topic_root ("segue"), keepalive_s (30), reconnect_min_s (1), reconnect_max_s (30)
  [device]  id (^[a-z0-9][a-z0-9_-]{0,62}$), software
  [audio]   backend: portaudio (the sound card) | virtual (simulated card, for demos and tests);
            sample_rate (16000), buffer_ms (20), input_device / output_device (PortAudio indices);
            virtual only: output_latency_ms (100), jitter_ms (0), echo_gain (0), echo_delay_ms (20), seed
  [aec]     backend: speex (libspeexdsp, default) | webrtc (aec-audio-processing) | none;
            frame_ms (10), filter_ms (200: echo tail modelled), ref_lead_ms (10)
  [vad]     backend: webrtc (default) | silero; aggressiveness (0-3), frame_ms (10/20/30), threshold,
            onset_frames (3: consecutive speech frames for an onset), offset_frames (25)
  [bargein] enabled (true), min_rms (150), echo_margin (2.5: speech must be this many times louder
            than the expected residual echo)
  [machine] heartbeat_s (1.0: playback heartbeats while speaking), listen_timeout_s (8)
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
    return cfg


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = resolve(args)
    except (ValueError, OSError) as e:
        print(f"segue-device: {e}", file=sys.stderr)
        return 2
    from device.app import DeviceApp

    app = DeviceApp(cfg)
    signal.signal(signal.SIGTERM, lambda *_: app.stop())
    app.start()
    try:
        app.serve()
    except KeyboardInterrupt:
        pass
    finally:
        app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
