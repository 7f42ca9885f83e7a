"""High-precision rules that run before the model.

They cover what must never be wrong (the device hint) and what a lexicon decides better than a few
hundred examples (pure backchannels, bare stops, bare "go back"). Anything else goes to the model.
"""

from __future__ import annotations

from icp.dispositions import ClassifyRequest, Disposition, Hint

from .cues import _strip_phrases, is_backchannel, is_bare_stop, matches, words
from .lexicon import ASIDE_CUES, STOP_PHRASES, VOCATIVES

RESUME_PHRASES: tuple[str, ...] = (
    "go back",
    "go on",
    "continue",
    "keep going",
    "carry on",
    "where were you",
    "where were we",
    "where was i",
    "what were you saying",
    "you were saying",
    "resume",
    "pick up where you left off",
    "let's continue",
    "please continue",
)
RESUME_PADDING: frozenset[str] = frozenset(
    "okay alright right so yeah yes please now then thanks thank you sorry and um uh well ok let's".split()
)


def _addressed_elsewhere(ws: list[str]) -> bool:
    padded = " " + " ".join(ws) + " "
    return bool(ws) and (ws[0] in VOCATIVES or ws[-1] in VOCATIVES or bool(matches(padded, ASIDE_CUES)))


def decide(request: ClassifyRequest) -> tuple[Disposition, float] | None:
    """A (disposition, confidence) when a rule is sure, else None."""
    if request.hint is Hint.CANCEL:
        return Disposition.CANCEL, 1.0
    ws = words(request.utterance)
    if request.speaking:
        if is_backchannel(request.utterance):
            return Disposition.ABSORB, 0.97
        if is_bare_stop(request.utterance) and not _addressed_elsewhere(ws):
            rest = _strip_phrases(ws, STOP_PHRASES)
            if len(rest) <= 2:
                return Disposition.CANCEL, 0.96
        return None
    if not ws:
        return None
    padded = " " + " ".join(ws) + " "
    if matches(padded, RESUME_PHRASES):
        rest = _strip_phrases(ws, RESUME_PHRASES)
        if all(w in RESUME_PADDING for w in rest):
            return Disposition.RESUME, 0.95
    if is_bare_stop(request.utterance):
        rest = _strip_phrases(ws, STOP_PHRASES)
        if len(rest) <= 2:
            return Disposition.DROP, 0.95
    return None
