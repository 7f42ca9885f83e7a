"""`segue-demo`: watch segue keep track of what was heard through a side question and a go-back.

Everything runs offline on this machine: a Mosquitto broker, the segue server (ICP engine, espeak-ng
TTS) with the embedded LLM (SmolLM2-135M under llama.cpp's server), and a simulated device on the
virtual sound card whose "ear" records exactly what the listener heard. A virtual user asks for an
explanation, interrupts with a side question, and says "okay, go back". The transcript shows what
was generated, what was heard, each interruption with its disposition and the resume point, then the
metrics. `--scripted` uses scripted replies instead of the LLM; `--real-audio` runs the device on the
real sound card (PortAudio) and lets you be the user.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from evaluation.scenario import Scenario, loads

EXPLANATION = (
    "Transformers are neural networks that read a whole sentence at once. They turn every word into a "
    "vector of numbers, and then attention lets each word look at every other word to decide what matters "
    "most. After attention, small feed forward layers refine each position on its own. Many such layers "
    "are stacked on top of each other, so the model builds up meaning step by step. Training needs a huge "
    "amount of text and a lot of patience."
)
SIDE = "Attention is a weighted average: each word scores the others and mixes in the ones that score highest."

SCENARIO = f"""
name: demo-go-back
description: ask for an explanation, interrupt with a side question, then go back
seed: 1
llm:
  - match: "transformers"
    reply: "{EXPLANATION}"
  - match: "attention"
    reply: "{SIDE}"
  - default: "Sorry, I do not know that one."
turns:
  - say: "Explain how transformers work."
  - after: {{heard_words: {{interrupt_at}}}}
    say: "Wait, what's attention?"
    expect: BRANCH
  - after: {{reply_done: true}}
    say: "Okay, go back."
    expect: RESUME
  - after: {{reply_done: true}}
"""


def demo_scenario(interrupt_at: int) -> Scenario:
    return loads(SCENARIO.replace("{interrupt_at}", str(interrupt_at)))


def _print(text: str) -> None:
    print(text, flush=True)


def _heard_summary(trace: object) -> None:
    from evaluation.harness.trace import item_heard

    _print("\nwhat each reply generated vs what the listener heard:")
    for item, (thread, text) in trace.items.items():  # type: ignore[attr-defined]
        words = text.split()
        if not words:
            continue
        heard = item_heard(trace, item, float("inf"), content_only=False)  # type: ignore[arg-type]
        _print(f"  {item} [{thread}] generated {len(words)} words, heard {heard}")
        _print(f"     heard:      {' '.join(words[:heard]) or '-'}")
        if heard < len(words):
            _print(f"     not heard:  {' '.join(words[heard:])}")


def run_simulated(args: argparse.Namespace) -> int:
    from evaluation.broker import Mosquitto
    from evaluation.harness import RunOptions, run_scenario
    from evaluation.metrics import evaluate

    with ExitStack() as stack:
        _print("starting the MQTT broker (mosquitto) ...")
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="segue-demo-"))
        broker = stack.enter_context(Mosquitto(Path(workdir)))
        llm_url, model, interrupt_at = None, "scripted", 30
        if args.scripted:
            _print("using scripted LLM replies (--scripted)")
        else:
            from server.llama_server import LlamaServer, LlamaServerError

            _print("starting the embedded LLM (SmolLM2-135M under llama.cpp's server; this takes a few seconds) ...")
            started = time.monotonic()
            try:
                llm = stack.enter_context(LlamaServer())
            except LlamaServerError as exc:
                _print(f"segue-demo: {exc}\n(run scripts/setup.sh, or try `segue-demo --scripted`)")
                return 1
            _print(f"LLM ready at {llm.base_url} after {time.monotonic() - started:.1f} s")
            llm_url, model, interrupt_at = llm.base_url, llm.alias, 12
        _print("starting the segue server and a simulated device on the virtual sound card ...\n")
        options = RunOptions(broker_url=broker.url, strategy=args.strategy, llm_base_url=llm_url, llm_model=model,
                             speed=args.speed, on_event=_print)
        scenario = demo_scenario(interrupt_at)
        trace = run_scenario(scenario, options)
    result = evaluate(trace, scenario.audio.buffer_ms, scenario.audio.jitter_ms)
    _heard_summary(trace)
    rep = result.report
    _print("\nmetrics (ground truth: the virtual listener's ear):")
    for d in rep["dispositions"]:
        _print(f"  turn {d['turn']}: expected {d['expected']}, engine chose {d['got']}")
    for g in rep["go_back"]:
        _print(f"  go-back (turn {g['turn']}): {g['verdict'].upper()} - skipped {g['skipped_words']} words, "
               f"replayed {g['replayed_words']}")
    _print(f"  phantom words: {rep['phantom_words']}   lost words: {rep['lost_words']}   cursor error: "
           f"{rep['cursor_error_ms']['max']} ms / {rep['cursor_error_words']['max']} words   first audio p50: "
           f"{rep['first_audio_ms']['p50']} ms (simulated time, x{args.speed:g})")
    for err in rep["errors"]:
        _print(f"  error: {err}")
    _print(f"\nsegue-demo: {'PASS' if result.passed else 'FAIL'} ({args.strategy})")
    return 0 if result.passed or args.strategy != "icp" else 1


def run_real_audio(args: argparse.Namespace) -> int:  # pragma: no cover - needs a sound card and a human
    """The device on the real sound card (PortAudio); you are the user. Ctrl-C ends it."""
    import dataclasses

    from device.app import DeviceApp
    from device.config import AudioSettings, DeviceConfig, with_broker
    from evaluation.broker import Mosquitto
    from evaluation.harness.world import RunOptions, server_settings
    from evaluation.openai_server import ScriptedLLMServer
    from icp import commands as C
    from server.app import ServerApp

    with ExitStack() as stack:
        _print("starting the MQTT broker (mosquitto) ...")
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="segue-demo-"))
        broker = stack.enter_context(Mosquitto(Path(workdir)))
        if args.scripted:
            llm_url, model = stack.enter_context(ScriptedLLMServer(demo_scenario(30).llm_rules())).base_url, "scripted"
        else:
            from server.llama_server import LlamaServer

            _print("starting the embedded LLM (SmolLM2-135M; a few seconds) ...")
            llm = stack.enter_context(LlamaServer())
            llm_url, model = llm.base_url, llm.alias
        options = RunOptions(broker_url=broker.url, strategy=args.strategy, llm_base_url=llm_url, llm_model=model)
        server = ServerApp(server_settings(options, llm_url, "segue"))

        def show(_device: str, cmd: object) -> None:
            if isinstance(cmd, C.SendSegment):
                _print(f"generated  {cmd.segment.text}")
            elif isinstance(cmd, C.DispositionApplied):
                _print(f"engine     {cmd.text!r} -> {cmd.applied.value}")
            elif isinstance(cmd, C.ResumePlanned):
                _print(f"resume     {cmd.item_id} from word {cmd.resume_word}")

        server.engine.observers.append(show)
        server.start()
        stack.callback(server.stop)
        cfg = with_broker(DeviceConfig(), broker.url)
        cfg = dataclasses.replace(cfg, audio=AudioSettings(backend="portaudio"))
        device = DeviceApp(cfg)
        device.start()
        stack.callback(device.stop)
        _print("press the talk button (Enter) and speak; Ctrl-C ends the demo")
        try:
            while True:
                input()
                device.wake("button")
        except (KeyboardInterrupt, EOFError):
            return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="segue-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scripted", action="store_true", help="scripted LLM replies instead of SmolLM2")
    parser.add_argument("--real-audio", action="store_true", help="the real sound card (PortAudio); you talk")
    parser.add_argument("--strategy", default="icp",
                        choices=("icp", "cancel-restart", "truncate-clear", "generated-as-heard"),
                        help="run the same conversation under a baseline to see it fail")
    parser.add_argument("--speed", type=float, default=4.0, help="simulated seconds per wall second")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if args.real_audio:
        return run_real_audio(args)
    return run_simulated(args)


if __name__ == "__main__":
    sys.exit(main())
