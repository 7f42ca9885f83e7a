"""Normalising ASR text into tokens the rules and the linear model agree on.

ASR output arrives in many shapes (lowercase or cased, with or without punctuation, "mm-hmm",
"[cough]", stutters like "from from"). Everything downstream sees one canonical token list.
"""

from __future__ import annotations

import re

NOISE = "<noise>"

# Hesitations that carry no intent. "hmm" and "ah" are NOT here: alone they are backchannels.
FILLERS: frozenset[str] = frozenset({"um", "umm", "uh", "uhh", "uhm", "er", "erm", "eh"})

_NOISE_RE = re.compile(r"[\[(<][^\])>]*[\])>]")
_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|<noise>")
_CONTRACTIONS = {
    "whats": "what's",
    "wheres": "where's",
    "whos": "who's",
    "hows": "how's",
    "thats": "that's",
    "dont": "don't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "im": "i'm",
    "ive": "i've",
    "youre": "you're",
    "isnt": "isn't",
    "cant": "can't",
    "wont": "won't",
    "lets": "let's",
    "ok": "okay",
    "k": "okay",
    "kay": "okay",
    "mhm": "mm",
    "mmhmm": "mm",
    "hmm": "hmm",
    "hm": "hmm",
    "hmmm": "hmm",
    "yep": "yeah",
    "yup": "yeah",
    "ya": "yeah",
    "yea": "yeah",
    "nope": "no",
}


def tokens(text: str) -> list[str]:
    """Lowercased word tokens; bracketed non-speech becomes `<noise>`; contractions unified."""
    lowered = text.lower().replace("\u2019", "'").replace("`", "'")
    lowered = _NOISE_RE.sub(f" {NOISE} ", lowered)
    lowered = lowered.replace("-", " ")
    out: list[str] = []
    for tok in _TOKEN_RE.findall(lowered):
        out.append(_CONTRACTIONS.get(tok, tok))
    return out


def content_tokens(toks: list[str]) -> list[str]:
    """Tokens without fillers, noise or immediate repeats ("from from" -> "from")."""
    out: list[str] = []
    for tok in toks:
        if tok in FILLERS or tok == NOISE:
            continue
        if out and out[-1] == tok:
            continue
        out.append(tok)
    return out


def stem(word: str) -> str:
    """A crude suffix stripper: enough to match "expand"/"expands", "calculate"/"calculated"."""
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    if "'" in word:
        return word.split("'", 1)[0]
    return word
