"""`segue-bench`: cost and latency numbers measured on this machine with the real models.

    segue-bench device [--json OUT]
    segue-bench device --live [--duplex separate|full|both] [--trials N] [--json OUT]
    segue-bench server [--tts espeak|piper] [--runs N] [--json OUT]
    segue-bench engine --devices N --workers K --seconds S [--json OUT]
    segue-bench turns [--trials N] [--columns segue,baseline] [--json OUT]

`device` measures the always-on mic path (AEC + VAD + wake word) in CPU seconds per audio second,
and barge-in on the virtual sound card with real (espeak-ng) speech and echo: false barge-ins on the
device's own voice, and the pause latency from the user's first sample at the mic to the last agent
sample at the ear. One function per subcommand; add more beside `cmd_device`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Optional

import numpy as np

SR = 16000

AGENT_TEXTS = (
    "Transformers are a kind of neural network. They read a whole sentence at once and learn which words "
    "matter for each other word, which is called attention. This lets them model long texts well.",
    "The weather tomorrow will be mostly sunny in the morning, with clouds building in the afternoon and a "
    "chance of light rain in the evening. Temperatures stay mild, around eighteen degrees.",
    "To bake bread you mix flour, water, salt and yeast, knead the dough for about ten minutes, let it rise "
    "until it doubles, shape it, and bake it in a hot oven until the crust is deep brown.",
)
USER_TEXTS = ("Wait, what is attention?", "No, I meant tomorrow evening.", "Stop.", "Hang on a second.")


@lru_cache(maxsize=64)
def synth(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    """espeak-ng speech as 16 kHz mono int16, leading/trailing silence trimmed."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                         check=True, capture_output=True).stdout
    raw = subprocess.run(["sox", "-t", "wav", "-", "-r", str(SR), "-c", "1", "-b", "16", "-e", "signed-integer",
                          "-t", "raw", "-"], input=wav, check=True, capture_output=True).stdout
    pcm = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    loud = np.flatnonzero(np.abs(pcm) > 300)
    return pcm[loud[0] : loud[-1] + 1] if len(loud) else pcm


@dataclass(frozen=True)
class BargeInTrial:
    echo_gain: float
    agent_text: int
    user_at: Optional[float]      # None: echo only
    onset_at: Optional[float]     # first onset the detector reported
    stop_ms: Optional[float]      # user speech start at the mic -> last agent sample at the ear
    suspects: tuple[float, ...] = ()  # every suspicion (where an optimistic pause would start)


def bargein_trial(agent: np.ndarray, user: Optional[np.ndarray], user_at: Optional[float], echo_gain: float,
                  aec_backend: str = "speex", latency_ms: float = 100, echo_delay_ms: float = 30,
                  jitter_ms: float = 3, seed: int = 0, agent_index: int = 0) -> BargeInTrial:
    """Play `agent` on the virtual card with echo; say `user` at `user_at`; pause on the first onset."""
    from device.aec import AecSettings
    from device.audio import VirtualCard, VirtualCardSettings
    from device.bargein import MicPath
    from device.playback import Playback, SegmentInfo
    from device.vad import SpeechOnset, SpeechSuspect

    card = VirtualCard(VirtualCardSettings(echo_gain=echo_gain, echo_delay_ms=echo_delay_ms,
                                           output_latency_ms=latency_ms, jitter_ms=jitter_ms, seed=seed))
    pb = Playback()
    pb.add_segment(SegmentInfo(1, len(agent)))
    pb.add_audio(1, 0, agent, last=True)
    mic = MicPath(SR, AecSettings(backend=aec_backend))
    onsets: list[float] = []
    suspects: list[float] = []

    def callback(pcm_in, frames, times):
        pcm, spans = pb.render(frames, times.output_dac_time)
        mic.played(pcm, times.output_dac_time)
        for ev in mic.capture(pcm_in, times.input_adc_time):
            if isinstance(ev, SpeechSuspect):
                suspects.append(ev.at)
            if isinstance(ev, SpeechOnset) and not onsets:
                onsets.append(ev.at)
                pb.pause()  # what the device's state machine does, within the same frame
        return pcm, spans

    card.start(callback)
    if user is not None and user_at is not None:
        card.add_mic(user, user_at)
    card.run(len(agent) / SR + 0.6)
    stop_ms = None
    if user_at is not None and onsets:
        last = card.ear.last_agent_time()
        stop_ms = 1000.0 * (last + 1 / SR - user_at) if last is not None else 0.0
    return BargeInTrial(echo_gain, agent_index, user_at, onsets[0] if onsets else None, stop_ms, tuple(suspects))


def bargein_suite(gains=(0.1, 0.3, 0.5), user_times=(0.8, 1.5, 2.5, 4.0, 6.0), aec_backend: str = "speex",
                  agents: int = len(AGENT_TEXTS)) -> list[BargeInTrial]:
    trials = []
    for ai in range(agents):
        agent = synth(AGENT_TEXTS[ai])
        for gain in gains:
            trials.append(bargein_trial(agent, None, None, gain, aec_backend, agent_index=ai, seed=ai))
            for ui, at in enumerate(user_times):
                user = synth(USER_TEXTS[(ai + ui) % len(USER_TEXTS)], voice="en-gb+m3", speed=170)
                trials.append(bargein_trial(agent, user, at, gain, aec_backend, agent_index=ai, seed=ai * 10 + ui))
    return trials


def summarize_bargein(trials: list[BargeInTrial]) -> dict:
    echo = [t for t in trials if t.user_at is None]
    talk = [t for t in trials if t.user_at is not None]
    # an onset before the user started talking is a false barge-in too
    early = [t for t in talk if t.onset_at is not None and t.onset_at < t.user_at - 0.02]
    lat = sorted(t.stop_ms for t in talk if t.stop_ms is not None and t not in early)
    def pct(p):
        return round(float(np.percentile(lat, p)), 1) if lat else None
    return {
        "echo_only_runs": len(echo),
        "false_bargeins_on_echo": sum(1 for t in echo if t.onset_at is not None) + len(early),
        "user_runs": len(talk),
        "missed": sum(1 for t in talk if t.onset_at is None),
        "pause_latency_ms": {"p50": pct(50), "p95": pct(95), "max": lat[-1] if lat else None},
    }


def cpu_per_audio_second(seconds: float = 20.0, use_wakeword: bool = True) -> dict:
    """CPU seconds per audio second of the always-on chain on mic audio with echo."""
    from device.aec import AecSettings, EchoReference, EchoStage, make_canceller
    from device.vad import VadSettings, make_vad
    from device.audio.frames import Reframer

    agent = synth(AGENT_TEXTS[0])
    n = int(seconds * SR)
    ref = np.resize(agent, n)
    mic = (0.3 * np.concatenate([np.zeros(480), ref[:-480]])).astype(np.int16)
    out: dict = {"audio_s": seconds}

    reference = EchoReference(SR)
    stage = EchoStage(make_canceller(AecSettings(), SR), reference, 0.0)
    t0 = time.process_time()
    cleaned = []
    for i in range(0, n, 320):
        reference.write(ref[i : i + 320], i / SR)
        cleaned.extend(f for f, _ in stage.process(mic[i : i + 320], i / SR))
    out["aec_speex"] = (time.process_time() - t0) / seconds
    clean = np.concatenate(cleaned)

    vad = make_vad(VadSettings(), SR)
    framer = Reframer(vad.frame_samples, SR)
    t0 = time.process_time()
    for i in range(0, len(clean), 320):
        for f, _ in framer.push(clean[i : i + 320], i / SR):
            vad.probability(f)
    out["vad_webrtc"] = (time.process_time() - t0) / seconds

    total = out["aec_speex"] + out["vad_webrtc"]
    out["wakeword"] = None
    if use_wakeword:
        try:
            from device.wakeword import WakeWordDetector
        except ImportError as e:
            out["note"] = f"wake word not measured: {e}"
        else:
            det = WakeWordDetector()
            t0 = time.process_time()
            for i in range(0, len(clean), 320):
                det.feed(clean[i : i + 320])
            out["wakeword"] = (time.process_time() - t0) / seconds
            total += out["wakeword"]
    out["total"] = total
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in out.items()}


def cmd_device(args: argparse.Namespace) -> dict:
    if args.live:
        from evaluation import bench_live

        modes = ("full", "separate") if args.duplex == "both" else (args.duplex,)
        tracks = {"both": (False, True), "on": (True,), "off": (False,)}[args.track_delay]
        report = {}
        for mode in modes:  # side by side in one run: the capture delay a full-duplex stream costs
            for track in tracks:  # and what the echo delay tracker changes
                name = mode if len(tracks) == 1 else f"{mode}, delay tracking {'on' if track else 'off'}"
                print(f"[bench] device on PulseAudio, {name}: {args.echo_only_s:.0f} s of echo, then "
                      f"{args.trials} trials ...", file=sys.stderr, flush=True)
                report[name] = bench_live.run(trials=args.trials, echo_gain=args.echo_gain, duplex=mode,
                                              aec=args.aec, track_delay=track, echo_only_s=args.echo_only_s,
                                              progress=lambda line: print(line, file=sys.stderr, flush=True))
        return {"live": report}
    cpu = cpu_per_audio_second(args.seconds, use_wakeword=not args.no_wakeword)
    trials = bargein_suite(aec_backend=args.aec)
    summary = summarize_bargein(trials)
    report = {"cpu_per_audio_s": cpu["total"], "cpu_breakdown": cpu,
              "pause_latency_ms": summary.pop("pause_latency_ms"), "bargein": summary,
              "aec": args.aec, "virtual_card": {"output_latency_ms": 100, "buffer_ms": 20, "jitter_ms": 3,
                                                "echo_delay_ms": 30, "echo_gains": [0.1, 0.3, 0.5]}}
    if args.verbose:
        report["trials"] = [asdict(t) for t in trials]
    return report


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="segue-bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("device", help="always-on mic path CPU cost and barge-in pause latency")
    dev.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT")
    dev.add_argument("--seconds", type=float, default=20.0, help="audio seconds for the CPU measurement")
    dev.add_argument("--aec", default="speex", choices=("speex", "webrtc", "none"), help="echo canceller")
    dev.add_argument("--no-wakeword", action="store_true", help="leave the wake word out of the CPU figure")
    dev.add_argument("--verbose", action="store_true", help="include every barge-in trial")
    dev.add_argument("--live", action="store_true",
                     help="instead: the device on PortAudio over a private PulseAudio; capture delay, output "
                          "latency and barge-in stop measured from parec recordings of the speaker and the mic")
    dev.add_argument("--duplex", default="both", choices=("separate", "full", "both"),
                     help="--live: PortAudio stream layout (both: side by side in one run)")
    dev.add_argument("--trials", type=int, default=6, help="--live: trials per layout")
    dev.add_argument("--echo-gain", type=float, default=0.3, help="--live: speaker-to-mic echo level")
    dev.add_argument("--track-delay", default="on", choices=("on", "off", "both"),
                     help="--live: the echo delay tracker ([aec] track_delay); both: side by side in one run")
    dev.add_argument("--echo-only-s", type=float, default=20.0,
                     help="--live: seconds of the speaker's voice with nobody talking, before the trials "
                          "(false barge-ins and false pauses are counted there)")
    dev.set_defaults(func=cmd_device)
    from evaluation import bench_engine, bench_server, bench_turns

    bench_server.add_parser(sub)
    bench_engine.add_parser(sub)
    bench_turns.add_parser(sub)
    args = parser.parse_args(argv)
    report = args.func(args)
    text = json.dumps(report, indent=2)
    print(text)
    if getattr(args, "json", None):
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
