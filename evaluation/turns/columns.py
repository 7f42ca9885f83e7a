"""The two columns of `segue-bench turns`: segue's defaults, and a baseline set like the common stacks.

The baseline is what Pipecat and LiveKit ship by default (checked in their sources: Pipecat's
`pipecat/audio/vad/vad_analyzer.py` has `VAD_START_SECS = 0.2`, `VAD_STOP_SECS = 0.8` as the
`VADParams` defaults; LiveKit Agents' `AgentSession(min_interruption_duration=0.5)`, in agents-js
`InterruptionConfig.minDuration` "Minimum speech length ... to register as an interruption", default 0.5 s):

- VAD start 0.2 s: Pipecat `VADParams.start_secs = 0.2` -> `VadSettings.onset_frames = 10` (20 ms frames).
- end-of-turn silence 0.8 s: Pipecat `VADParams.stop_secs = 0.8` -> `MachineSettings.end_silence_s = 0.8`
  (and `[asr] end_silence_ms = 800`, which is where the device app reads it today).
- minimum interruption 0.5 s: LiveKit Agents `min_interruption_duration = 0.5` ->
  `MachineSettings.min_interruption_s = 0.5`.
- no optimistic pause, no semantic end of turn, no early ABSORB, no speculative generation, no final
  pass started in the silence, Whisper partials as before (no quick short-context pass): the
  capabilities of issue 12 switched off.
- first audio segment = the first sentence (sentence aggregation before TTS, as both stacks do):
  the first segment is cut like every later one (`SegmenterSettings.first_* = min_words/max_words`,
  no phrase cut: `first_phrase_words = 0`).
  The bench's scripted replies have no comma in their first sentence, so that cut is the sentence end.

Several knobs are being added while this bench is written: a knob is applied only where the
settings class has that field (`dataclasses.fields`); `Column.missing` names the ones that were not,
and the bench prints them, so the bench runs today and picks the knobs up when they land.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

COLUMNS = ("segue", "baseline")

# (where, field, value): `where` names the settings object the bench builds (see `apply`).
BASELINE: tuple[tuple[str, str, Any], ...] = (
    ("vad", "onset_frames", 10),
    # Pinned (segue's default is the same today): in the baseline a pause only restarts the
    # minimum-interruption clock, so a shorter one would make it miss more barge-ins.
    ("vad", "pause_frames", 5),
    ("machine", "end_silence_s", 0.8),
    ("asr_config", "end_silence_ms", 800.0),
    ("machine", "min_interruption_s", 0.5),
    ("machine", "optimistic_pause", False),
    ("machine", "semantic_eot", False),
    ("engine", "early_absorb", False),
    ("engine", "speculate", False),
    ("machine", "final_lead_s", 0.0),  # no final pass before the silence is over (speculation too)
    ("asr_config", "quick_partials", False),
    ("whisper", "quick_partials", False),
    ("asr_config", "over_speech_prompt", ""),
    ("whisper", "over_speech_prompt", ""),
)
# The same knob in two places (the device config the app reads, and the object it builds): applied
# in either is applied.
EQUIVALENT = ((("machine", "end_silence_s"), ("asr_config", "end_silence_ms")),
              (("asr_config", "quick_partials"), ("whisper", "quick_partials")),
              (("asr_config", "over_speech_prompt"), ("whisper", "over_speech_prompt")))


@dataclass
class Column:
    name: str
    knobs: tuple[tuple[str, str, Any], ...]
    applied: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def changes(self, where: str) -> dict[str, Any]:
        return {f: v for w, f, v in self.knobs if w == where}

    def apply(self, where: str, obj: Any, also: tuple[str, ...] = ()) -> Any:
        """`obj` with this column's knobs for `where` that it has; the others are recorded as missing
        unless one of the `also` places (applied elsewhere) has them."""
        names = {f.name for f in dataclasses.fields(obj)}
        have = {k: v for k, v in self.changes(where).items() if k in names}
        for k, v in self.changes(where).items():
            label = f"{where}.{k}={v}"
            if k in have:
                if label not in self.applied:
                    self.applied.append(label)
                if label in self.missing:
                    self.missing.remove(label)
            elif label not in self.missing and label not in self.applied:
                self.missing.append(label)
        return dataclasses.replace(obj, **have) if have else obj

    def settle(self) -> None:
        """Drop a missing knob whose effect was applied in its other place (`EQUIVALENT`)."""
        def done(where: str, name: str) -> bool:
            return any(a.startswith(f"{where}.{name}=") for a in self.applied)

        for a, b in EQUIVALENT:
            if done(*a) or done(*b):
                self.missing = [m for m in self.missing
                                if not m.startswith(f"{a[0]}.{a[1]}=") and not m.startswith(f"{b[0]}.{b[1]}=")]


def column(name: str) -> Column:
    if name == "segue":
        return Column(name, ())
    if name == "baseline":
        return Column(name, BASELINE)
    raise ValueError(f"unknown column {name!r} (one of {', '.join(COLUMNS)})")


def baseline_segmenter(engine: Any) -> Any:
    """The engine settings with the first segment cut like the others (first sentence)."""
    seg = engine.segmenter
    names = {f.name for f in dataclasses.fields(seg)}
    if {"first_min_words", "first_max_words", "min_words", "max_words"} <= names:
        seg = dataclasses.replace(seg, first_min_words=seg.min_words, first_max_words=seg.max_words)
    if "first_phrase_words" in names:
        seg = dataclasses.replace(seg, first_phrase_words=0)
    return dataclasses.replace(engine, segmenter=seg)
