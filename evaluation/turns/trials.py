"""The trials of `segue-bench turns` and what each measures (on the card's clock, at the ear and mic).

Every trial starts with the agent quiet and idle; the user wakes it with the talk button (as the
audio-mode harness does) where it needs waking. The user's speech is `synthesize_user` (piper joe),
its first and last loud samples (|x| > 300 at a peak of 20000) are "the user's first/last sample".
Phrases and timings come from a seeded `random.Random`, so both columns hear the same speech.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device import machine as dm
from evaluation.turns.ear import first_agent_after, first_audible_after, gaps, run_at, stop_after
from evaluation.turns.world import TurnWorld
from icp.messages import Utterance

LONG_REPLY = (
    "The ocean covers most of our planet and holds nearly all of its water. Its surface is always moving "
    "because the wind pushes waves across it for thousands of miles. Below the waves there are strong "
    "currents that carry warm water from the tropics toward the poles and bring cold water back. These "
    "currents shape the weather on land as well. Deep down the water is dark and cold and the pressure is "
    "enormous, yet many strange animals live there. Scientists think we have explored less than a quarter "
    "of the sea floor in any detail, so there is a great deal left to discover."
)
SHORT_REPLY = "That is a good question with a simple answer. It mostly comes down to light and distance."
RULES = [{"match": "story", "reply": LONG_REPLY}, {"default": SHORT_REPLY}]

PROMPTS = ("Please tell me a story about the ocean.", "Tell me a long story about the sea.",
           "Could you tell me a story about the ocean?")
BARGE_INS = ("Stop.", "Wait, what's that?", "Hold on, what do you mean?", "Sorry, can I ask something?",
             "No, stop there.", "Wait, go back a bit.")
BACKCHANNELS = ("Uh huh.", "Mm hmm.", "Yeah.", "Okay.", "Right, right.", "Yeah, go on.", "I see.", "Sure.")
QUESTIONS = ("What is the capital of France?", "How far away is the moon?", "Why is the sky blue?",
             "How do bees make honey?", "Who wrote Romeo and Juliet?", "What is the tallest mountain?")
SPLIT_QUESTIONS = (("Tell me about the moon", "and its phases."),
                   ("What's the difference between", "a virus and a bacterium?"),
                   ("Can you explain how", "a rainbow is formed?"),
                   ("I would like to know", "why leaves change colour in autumn."),
                   ("How long does it take", "to fly from London to Tokyo?"))
KINDS = ("question", "bargein", "backchannel", "cutoff")


@functools.lru_cache(maxsize=128)
def speech(text: str, sample_rate: int = 16000) -> np.ndarray:
    from evaluation.harness.voice import synthesize_user

    return synthesize_user(text, sample_rate)


def trim(pcm: np.ndarray, level: int = 300) -> np.ndarray:
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > level)
    return pcm[loud[0] : loud[-1] + 1] if len(loud) else pcm


@dataclass
class Trial:
    kind: str
    index: int
    say: str
    user_start: float = 0.0
    user_end: float = 0.0
    value_ms: float | None = None  # the trial's latency or gap (None: not measured; see `note`)
    paused: bool | None = None
    cutoff: bool | None = None
    finals: list[str] = field(default_factory=list)
    disposition: str | None = None
    note: str = ""

    def line(self) -> str:
        v = "-" if self.value_ms is None else f"{self.value_ms:.0f} ms"
        extra = f" paused={self.paused}" if self.paused is not None else ""
        extra += f" cutoff={self.cutoff} finals={self.finals}" if self.cutoff is not None else ""
        extra += f" [{self.disposition}]" if self.disposition else ""
        return f"{self.kind:<11} #{self.index} {self.say!r:<34} {v:>8}{extra}{'  ' + self.note if self.note else ''}"


def _wake(w: TurnWorld) -> None:
    w.device.wake("button")
    w.run_for(0.3)


def _finals(w: TurnWorld, since: float) -> list[tuple[float, str]]:
    return [(t, b.text) for t, b in w.sent if t >= since and isinstance(b, Utterance) and b.final]


def _pause_after(w: TurnWorld, t: float, until: float) -> float | None:
    return next((tc for tc, c in w.commands if t <= tc <= until and isinstance(c, dm.PausePlayback)), None)


def _disposition(w: TurnWorld, since: float) -> str | None:
    """The engine's dispositions since `since`, in order ("ABSORB>BRANCH": decided early, revised)."""
    seen = [d.applied.value for t, d in w.dispositions if t >= since]
    return ">".join(seen) if seen else None


def _agent_talking(w: TurnWorld, rng: random.Random, prompt: str) -> float | None:
    """Ask for the long reply and let `rng`-many seconds (1.5-3.5) of it reach the ear; returns the
    reply's first sample time, None if it never came."""
    _wake(w)
    _, end = w.say(trim(speech(prompt)))
    if not w.run_until(lambda: first_agent_after(w.card.ear, end) is not None, 20.0):
        return None
    start = first_agent_after(w.card.ear, end)
    assert start is not None
    until = start + rng.uniform(1.5, 3.5)  # drawn once: both columns interrupt at the same point
    w.run_until(lambda: w.now >= until, 10.0)
    return start


def question(w: TurnWorld, i: int, rng: random.Random) -> Trial:
    text = QUESTIONS[i % len(QUESTIONS)]
    tr = Trial("question", i, text)
    _wake(w)
    tr.user_start, tr.user_end = w.say(trim(speech(text)))
    if w.run_until(lambda: first_audible_after(w.card.ear, tr.user_start) is not None, 20.0):
        first = first_audible_after(w.card.ear, tr.user_start)
        assert first is not None
        tr.value_ms = 1000.0 * (first - tr.user_end)
    else:
        tr.note = "no reply within 20 s"
    w.settle()
    finals = _finals(w, tr.user_start)
    tr.finals = [x for _, x in finals]
    closed = next((t for t, c in w.commands if isinstance(c, dm.FinishCapture) and t >= tr.user_start), None)
    if closed is not None:  # where the time went: end of turn decided, ASR final, then engine, LLM, TTS, card
        tr.note = (tr.note + " " if tr.note else "") + f"turn closed +{1000 * (closed - tr.user_end):.0f} ms"
    if finals:
        tr.note = (tr.note + " " if tr.note else "") + f"final sent +{1000 * (finals[0][0] - tr.user_end):.0f} ms"
    last = next((t for t, b in reversed(w.sent) if tr.user_start <= t <= (finals[0][0] if finals else t)
                 and isinstance(b, Utterance) and not b.final), None)
    if last is not None:  # the partial the engine could speculate from (the final's words, if complete)
        tr.note += f" last partial +{1000 * (last - tr.user_end):.0f} ms"
    seg = next((t for t, _ in w.segment_sent if t >= tr.user_start), None)
    if seg is not None:  # the engine sent the reply's first segment (LLM and synthesis done)
        tr.note += f" segment +{1000 * (seg - tr.user_end):.0f} ms"
    return tr


def bargein(w: TurnWorld, i: int, rng: random.Random) -> Trial:
    text = BARGE_INS[i % len(BARGE_INS)]
    tr = Trial("bargein", i, text)
    if _agent_talking(w, rng, PROMPTS[i % len(PROMPTS)]) is None:
        tr.note = "the agent never started"
        w.settle()
        return tr
    tr.user_start, tr.user_end = w.say(trim(speech(text)))
    w.run_until(lambda: w.now >= tr.user_end + 2.5, 10.0)
    lat = w.spec.output_latency_ms / 1000
    if run_at(w.card.ear, tr.user_start) is None:
        tr.note = "the agent was not audible at the user's first sample"
    else:
        paused = _pause_after(w, tr.user_start - 0.1, tr.user_end + 2.5)
        stop = None if paused is None else stop_after(w.card.ear, paused)
        tr.paused = paused is not None
        if stop is None:
            tr.note = "the agent did not stop"
        else:
            # last agent sample at the ear - the user's first sample - the card's output latency
            last = stop - 1 / w.card.sample_rate
            tr.value_ms = 1000.0 * (last - tr.user_start - lat)
    tr.disposition = _disposition(w, tr.user_start)
    w.settle(timeout_s=0.5, quiet_s=3.0)  # the rest is not measured; 3 s outlasts an auto-resume (2.5 s)
    return tr


def backchannel(w: TurnWorld, i: int, rng: random.Random) -> Trial:
    text = BACKCHANNELS[i % len(BACKCHANNELS)]
    tr = Trial("backchannel", i, text)
    if _agent_talking(w, rng, PROMPTS[(i + 1) % len(PROMPTS)]) is None:
        tr.note = "the agent never started"
        w.settle()
        return tr
    tr.user_start, tr.user_end = w.say(trim(speech(text)))
    w.run_until(lambda: w.now >= tr.user_end + 4.0, 10.0)
    if run_at(w.card.ear, tr.user_start) is None:
        tr.note = "the agent was not audible at the user's first sample"
    else:
        paused = _pause_after(w, tr.user_start - 0.1, tr.user_end + 1.5)
        tr.paused = paused is not None
        if paused is None:
            tr.value_ms = 0.0
        else:
            gap = next(iter(gaps(w.card.ear, paused)), None)  # the first silence at the ear after the pause
            item = None if gap is None else w.segment_item.get(gap.before)
            if gap is None or item is None or w.segment_item.get(gap.after) != item:
                tr.note = "paused and never resumed the reply"
            else:
                tr.value_ms = gap.ms
    tr.disposition = _disposition(w, tr.user_start)
    # what the engine had to go on: the recogniser's partials (from the user's first sample) and the final
    heard = [(t, b.text, b.final) for t, b in w.sent if t >= tr.user_start and isinstance(b, Utterance)]
    tr.note = (tr.note + " " if tr.note else "") + " ".join(
        f"{'final' if final else 'partial'} +{1000 * (t - tr.user_start):.0f} {text!r}" for t, text, final in heard[:4])
    w.settle(timeout_s=0.5, quiet_s=3.0)  # the rest is not measured; 3 s outlasts an auto-resume (2.5 s)
    return tr


def cutoff(w: TurnWorld, i: int, rng: random.Random) -> Trial:
    first, second = SPLIT_QUESTIONS[i % len(SPLIT_QUESTIONS)]
    pause_s = rng.uniform(0.5, 1.0)
    sr = w.card.sample_rate
    pcm = np.concatenate([trim(speech(first)), np.zeros(int(pause_s * sr), dtype=np.int16), trim(speech(second))])
    tr = Trial("cutoff", i, f"{first} ... {second}")
    tr.note = f"pause {pause_s:.2f} s"
    _wake(w)
    tr.user_start, tr.user_end = w.say(pcm)
    w.run_until(lambda: w.now >= tr.user_end + 0.5, 10.0)
    w.settle()
    finals = [(t, x) for t, x in _finals(w, tr.user_start - 0.5) if x.strip()]
    tr.finals = [x for _, x in finals]
    # A final utterance sent before the user's last sample; or the device closed the capture before
    # it; or more than one final for the turn; or the final's words miss the second part.
    closed = [t for t, c in w.commands if isinstance(c, dm.FinishCapture) and tr.user_start <= t < tr.user_end]
    heard = set(_words(" ".join(tr.finals)))
    second_words = _words(second)
    missing = sum(1 for x in second_words if x not in heard) > len(second_words) / 2
    early = [t for t, _ in finals if t < tr.user_end]  # the engine had a final before the user finished
    tr.cutoff = bool(closed) or bool(early) or len(finals) > 1 or missing
    why = [r for r, c in (("final before the end", early), ("capture closed early", closed),
                          ("two finals", len(finals) > 1), ("second part missing", missing)) if c]
    tr.note += f"; {', '.join(why)}" if why else ""
    return tr


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


RUNNERS: dict[str, Any] = {"question": question, "bargein": bargein, "backchannel": backchannel, "cutoff": cutoff}
