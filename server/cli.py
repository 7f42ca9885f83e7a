"""`segue-server`: the ICP conversation engine."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading
from dataclasses import replace

from servicekit.systemd import Notifier
from server.config import ConfigError, ServerSettings, apply_broker_url, load

DESCRIPTION = """\
Run the ICP conversation engine: it takes what segue devices report over MQTT (utterances,
interruptions with the exact heard cursor, playback positions), keeps each device's conversation as a
tree of threads built from heard words only, streams replies from an OpenAI-compatible LLM endpoint,
synthesises them with word timings and sends them to the device within a bounded lookahead.
"""

SETTINGS_HELP = """\
settings (TOML file given with --config; every one has a default):

  strategy = "icp"                 icp | cancel-restart | truncate-clear | generated-as-heard
  allowed_devices = []             device ids to serve; empty = any device the broker lets in
  tick_s = 0.05                    how often timeouts are checked
  log_level = "INFO"

  [mqtt]   host = "127.0.0.1", port = 1883, tls = false, username, password (or env
           SEGUE_MQTT_PASSWORD), ca, cert, key (TLS client certificate), topic_root = "segue",
           group = "segue-engine" (shared subscription: workers in one group split the fleet),
           client_id, keepalive_s = 30
  [llm]    base_url = "http://127.0.0.1:8080/v1" (any OpenAI-compatible endpoint: OpenAI,
           llama.cpp's server, vLLM, Ollama), model = "smollm2", api_key (or env OPENAI_API_KEY),
           timeout_s = 30, temperature, max_streams = 128 (replies streamed at once; more wait)
  [tts]    backend = "auto" (best offline: piper, else espeak-ng) | piper | espeak | openai,
           sample_rate = 16000, voice, model
  [classifier] backend = "local" | llm | auto (local, and the LLM where it is unsure),
           threshold = 0.6, llm_timeout_s = 2
  [storage] state_dir = "state", backend = "sqlite" | memory, url = "redis://HOST:PORT/DB" (state in
           Redis: several workers split one fleet and take over a dead one's devices)
  metrics_port = 0                 Prometheus metrics on this port (0: off)
  replies = "process"              LLM streams and TTS in a child process (the engine's loop keeps
                                   its GIL), or "threads" (in this process)
  reply_niceness = 0               nice value of that process (0-19; higher: interrupts keep their
                                   latency on a loaded machine, replies wait; docs/fleet-scale.md)
  [engine] heard_threshold = 0.5 (a word is heard when more than this fraction played),
           lookahead_ms = 4000 (audio sent ahead of the heard cursor), auto_resume = "auto" | ask |
           off (after a side answer), auto_resume_delay_s = 2.5, interrupt_timeout_s = 8,
           classify_timeout_s = 3, bridge = "Right, as I was saying,", max_tokens = 400,
           background_max_words = 250 (how far a held parent may keep generating), system_prompt,
           undo_window_s = 20 (idle time during which "no, go back" undoes a CANCEL or MODIFY; 0: off),
           segmenter = {first_min_words, first_max_words, first_phrase_words = 4 (the first segment may
           end before "with", "because", "and"... after this many words; 0: off), min_words, max_words}

Secrets are read from the environment or the file and never logged.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segue-server", description=DESCRIPTION, epilog=SETTINGS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (see below)")
    parser.add_argument("--broker", metavar="URL", help="mqtt://host:port or mqtts://host:port (overrides [mqtt])")
    parser.add_argument("--llm-base-url", metavar="URL", help="OpenAI-compatible base URL (overrides [llm])")
    parser.add_argument("--llm-model", metavar="NAME", help="model name at that endpoint")
    parser.add_argument("--tts", metavar="BACKEND", help="auto, piper, espeak or openai")
    parser.add_argument("--state-dir", metavar="DIR", help="where conversations are kept (SQLite)")
    parser.add_argument("--store", metavar="URL",
                        help="redis://HOST:PORT/DB: keep conversations in Redis so several workers serve one fleet")
    parser.add_argument("--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics on this port")
    parser.add_argument("--strategy", help="icp (default) or a baseline, for comparison")
    parser.add_argument("--replies", choices=("process", "threads"),
                        help="where LLM streams and TTS run: a child process (default; the engine's loop "
                             "keeps its GIL) or this process's threads")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING")
    return parser


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    settings = load(args.config)
    if args.broker:
        settings = replace(settings, mqtt=apply_broker_url(settings.mqtt, args.broker))
    if args.llm_base_url:
        settings = replace(settings, llm=replace(settings.llm, base_url=args.llm_base_url))
    if args.llm_model:
        settings = replace(settings, llm=replace(settings.llm, model=args.llm_model))
    if args.tts:
        settings = replace(settings, tts=replace(settings.tts, backend=args.tts))
    if args.state_dir:
        settings = replace(settings, storage=replace(settings.storage, state_dir=args.state_dir))
    if args.store:
        if not args.store.startswith("redis://"):
            raise ConfigError(f"--store must be redis://HOST:PORT/DB, got {args.store!r}")
        settings = replace(settings, storage=replace(settings.storage, url=args.store))
    if args.metrics_port is not None:
        settings = replace(settings, metrics_port=args.metrics_port)
    if args.strategy:
        settings = replace(settings, strategy=args.strategy)
    if args.replies:
        settings = replace(settings, replies=args.replies)
    if args.log_level:
        settings = replace(settings, log_level=args.log_level.upper())
    return settings


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"segue-server: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from server.app import ServerApp
    from server.llm import LLMError, quiet_http_client
    from server.tts.base import TTSError

    quiet_http_client(settings.log_level)

    try:
        app = ServerApp(settings).start()
    except (ConnectionError, OSError, ValueError, TTSError, LLMError) as exc:  # each says what to do
        print(f"segue-server: {exc}", file=sys.stderr)
        return 1
    # The collector's full passes were the engine's latency tail: each walked every object the libraries
    # made at start-up (~150-200k: the LLM client's pydantic models, ...) with every thread stopped,
    # 50-130 ms several times a minute at 500 devices (segue-bench engine; docs/fleet-scale.md). Nothing
    # made so far is ever garbage: move it out of the collector's sight.
    gc.collect()
    gc.freeze()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # systemd (Type=notify): ready once connected to the broker (start() waited for it); the
    # watchdog is pinged only while the engine's loop keeps turning, so a wedged loop is restarted.
    notifier = Notifier()
    notifier.ready(f"serving {settings.mqtt.topic_root}/+ as {settings.mqtt.group}")
    period = min(1.0, notifier.watchdog_s / 4) if notifier.watchdog_s else 1.0
    while not stop.wait(period):
        if app.engine.loop_alive(max_age_s=max(2.0, 10 * settings.tick_s)):
            notifier.watchdog()
    notifier.stopping()
    app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
