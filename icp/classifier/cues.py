"""Matching the cue lists of `lexicon` against an utterance: whole-word phrase tests and the two
high-precision shapes (a pure backchannel, a bare stop)."""

from __future__ import annotations

from .lexicon import BACKCHANNEL_PHRASES, BACKCHANNEL_WORDS, REQUEST_WORDS, STOP_PHRASES
from .text import FILLERS, NOISE, content_tokens, tokens


LEADING_CONJUNCTIONS: frozenset[str] = frozenset({"and", "so", "but"})


def words(text: str) -> list[str]:
    """Content tokens of an utterance (fillers, noise, stutters removed)."""
    return content_tokens(tokens(text))


def has_phrase(padded: str, phrase: str) -> bool:
    """`padded` is `" " + " ".join(words) + " "`, so whole-word matching is a substring test."""
    return f" {phrase} " in padded


def matches(padded: str, phrases: tuple[str, ...]) -> list[str]:
    return [p for p in phrases if f" {p} " in padded]


def _strip_phrases(ws: list[str], phrases: tuple[str, ...]) -> list[str]:
    """Remove every occurrence of the phrases (longest first) and return what is left."""
    text = " " + " ".join(ws) + " "
    for phrase in sorted(phrases, key=len, reverse=True):
        needle = f" {phrase} "
        while needle in text:
            text = text.replace(needle, " ")
    return text.split()


def is_backchannel(text: str) -> bool:
    """Only backchannel words and phrases (or only noise/fillers): nothing that asks for anything."""
    raw = tokens(text)
    if not raw:
        return True
    ws = content_tokens(raw)
    if not ws:
        return True
    rest = _strip_phrases(ws, BACKCHANNEL_PHRASES)
    # A leading "and"/"so"/"but" before nothing but backchannel words asks for nothing either
    # ("and mm", "so yeah"); it is also what the echo canceller's residue of the reply's last
    # word turns into at the start of a hum (audio mode heard "Mm hmm" as "and m-m-m-m.").
    while len(rest) > 1 and rest[0] in LEADING_CONJUNCTIONS:
        rest = rest[1:]
    return all(w in BACKCHANNEL_WORDS for w in rest)


def is_bare_stop(text: str) -> bool:
    """A stop/cancel with no new request: the engine closes the thread and needs no new answer.

    True for "stop", "um shut up", "okay that's enough thanks", "never mind", "forget it";
    false for "forget it what's the weather tomorrow" (a redirect that needs an answer) and for
    anything without a stop phrase at all.
    """
    ws = [w for w in tokens(text) if w not in FILLERS and w != NOISE]
    if not ws:
        return False
    padded = " " + " ".join(ws) + " "
    if not matches(padded, STOP_PHRASES):
        return False
    rest = _strip_phrases(ws, STOP_PHRASES)
    return not any(w in REQUEST_WORDS for w in rest)
