"""Sparse features for the linear model: words of the utterance plus cues from the context.

Lexicon hits and context overlap generalise across topics; word n-grams pick up phrasing the
lexicons miss. Feature names are plain strings so the weights file stays readable.
"""

from __future__ import annotations

from .lexicon import (
    ASIDE_CUES,
    CLARIFY_CUES,
    CLOSE_CUES,
    COMMAND_CUES,
    CORRECTION_CUES,
    QUESTION_STARTS,
    VOCATIVES,
)
from .cues import is_backchannel, is_bare_stop, matches
from .text import NOISE, content_tokens, stem, tokens

# Words too common to count as "the utterance talks about what was just said".
STOPWORDS: frozenset[str] = frozenset(
    """
    a an the and or but if of to in on at by for with from as is are was were be been being it its
    it's this that these those there here i me my you your we our they them their he she his her
    him do does did done can could would will should shall may might must have has had not no yes
    so then than too very just what what's who which when where why how about into over under up
    down out off again more most some any all each one two get got go going make made let let's
    okay yeah um uh oh well like really please wait sorry hold on hang actually now i'm you're
    that's don't didn't say said mean meant want wanted tell know see right thing things
    """.split()
)


def _length_bucket(n: int) -> str:
    if n <= 1:
        return "1"
    if n == 2:
        return "2"
    if n <= 4:
        return "3-4"
    if n <= 7:
        return "5-7"
    return "8+"


_SPEECH_GERUNDS = frozenset({"talking", "reading", "explaining", "speaking", "going", "rambling"})


def _stop_doing_something_else(ws: list[str]) -> bool:
    """ "(name) stop kicking my seat": telling someone in the room to stop an action, not us."""
    for a, b in zip(ws, ws[1:]):
        if a == "stop" and b.endswith("ing") and len(b) > 5 and b not in _SPEECH_GERUNDS:
            return True
    return False


def context_overlap(words: list[str], context: str) -> float:
    """Fraction of the utterance's content words (by stem) that appear in the heard sentence."""
    mine = {stem(w) for w in words if w not in STOPWORDS and len(w) > 2}
    if not mine:
        return 0.0
    theirs = {stem(w) for w in content_tokens(tokens(context)) if w not in STOPWORDS}
    prefixes = {t[:5] for t in theirs if len(t) >= 5}
    hits = sum(1 for w in mine if w in theirs or (len(w) >= 5 and w[:5] in prefixes))
    return hits / len(mine)


def extract(utterance: str, context: str) -> list[str]:
    """Active binary features for one utterance in its context."""
    raw = tokens(utterance)
    ws = content_tokens(raw)
    feats: list[str] = ["bias"]
    if NOISE in raw:
        feats.append("has_noise")
    if not ws:
        feats.append("empty")
        return feats
    feats.append(f"len:{_length_bucket(len(ws))}")
    stems = [stem(w) for w in ws]
    feats.extend(f"w:{s}" for s in dict.fromkeys(stems))
    seq = ["^", *stems, "$"]
    feats.extend(f"b:{a}_{b}" for a, b in dict.fromkeys(zip(seq, seq[1:])))
    feats.append(f"first:{stems[0]}")
    feats.append(f"last:{stems[-1]}")
    padded = " " + " ".join(ws) + " "

    question = ws[0] in QUESTION_STARTS or (len(ws) > 1 and ws[1] in QUESTION_STARTS)
    if question:
        feats.append("question")
    for name, cues in (
        ("clarify", CLARIFY_CUES),
        ("correct", CORRECTION_CUES),
        ("close", CLOSE_CUES),
        ("command", COMMAND_CUES),
        ("aside", ASIDE_CUES),
    ):
        hits = matches(padded, cues)
        if hits:
            feats.append(f"cue:{name}")
            if len(hits) > 1:
                feats.append(f"cue:{name}:many")
    if ws[0] in VOCATIVES or ws[-1] in VOCATIVES:
        feats.append("vocative")
    if _stop_doing_something_else(ws):
        feats.append("aside:stop_doing")
    if is_backchannel(utterance):
        feats.append("backchannel")
    else:
        # short, non-backchannel fragments ("the kitchen one", "for women") are mostly corrections
        feats.append(f"content_len:{_length_bucket(len(ws))}")
    if is_bare_stop(utterance):
        feats.append("bare_stop")
    if ws[0] == "no" or " not " in padded:
        feats.append("negation")

    overlap = context_overlap(ws, context)
    if overlap > 0:
        feats.append("ovl:any")
        feats.append("ovl:high" if overlap >= 0.5 else "ovl:low")
    else:
        feats.append("ovl:none")
    deictic = any(w in ("that", "it", "this", "those", "them", "there", "he", "she", "they") for w in ws)
    if question:
        feats.append("q:ovl" if overlap > 0 or deictic else "q:novl")
    if matches(padded, COMMAND_CUES):
        feats.append("cmd:ovl" if overlap > 0 else "cmd:novl")
    return feats


def _sound_key(word: str) -> str:
    """A crude spelling-to-sound key: ASR misspells by sound ("mew tex" for mutex, "a ban marry")."""
    w = word.replace("ph", "f").replace("ck", "k").replace("qu", "kw").replace("x", "ks")
    w = w.translate(str.maketrans("czy", "ksi"))
    out = [c for i, c in enumerate(w) if i == 0 or c != w[i - 1]]
    return "".join(out)


def sound_alike(utterance: str, context: str) -> float:
    """How closely a run of 1-3 utterance words, run together, sounds like a context word (0..1).

    "new tree nose" vs "neutrinos" scores high; a redirect shares no such run. Only context words
    of five letters or more count: short words match everything.
    """
    from difflib import SequenceMatcher

    targets = {_sound_key(w) for w in content_tokens(tokens(context)) if len(w) >= 5 and w not in STOPWORDS}
    ws = [w for w in content_tokens(tokens(utterance)) if w not in ("what", "what's", "sorry", "wait")]
    if not targets or not ws:
        return 0.0
    best = 0.0
    for n in (1, 2, 3):
        for i in range(len(ws) - n + 1):
            run = _sound_key("".join(ws[i : i + n]))
            if len(run) < 4:
                continue
            for t in targets:
                if abs(len(run) - len(t)) > max(2, len(t) // 2):
                    continue
                matcher = SequenceMatcher(None, run, t, autojunk=False)
                if matcher.real_quick_ratio() > best and matcher.quick_ratio() > best:  # upper bounds
                    best = max(best, matcher.ratio())
    return best
