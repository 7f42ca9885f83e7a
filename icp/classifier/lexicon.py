"""Hand-written cue lists: they carry what a few hundred training examples cannot.

Each list is a set of phrases matched on whole words of the normalised utterance. They feed the
linear model as features (so their weight is learned) and drive a few high-precision rules.
"""

from __future__ import annotations

from .text import FILLERS, NOISE, content_tokens, tokens

# Whole utterances made only of these are backchannels (ABSORB) while the agent speaks.
BACKCHANNEL_WORDS: frozenset[str] = frozenset(
    """
    yeah yes yess okay alright right sure mm hmm huh uh ah oh ooh ohh aha ahh wow whoa woah cool
    nice neat great awesome interesting totally exactly true indeed gotcha gotchu fair sweet
    haha hahaha lol heh hah yum yummy ouch yikes jeez geez gosh damn dang wild crazy amazing
    fascinating lovely good fine go on keep going see i makes sense got it uhhuh mhm
    continue understood ok yah sounds perfect really definitely absolutely cute funny
    """.split()
)

BACKCHANNEL_PHRASES: tuple[str, ...] = (
    "uh huh",
    "mm hmm",
    "i see",
    "got it",
    "go on",
    "keep going",
    "makes sense",
    "no way",
    "no kidding",
    "oh really",
    "for real",
    "that's wild",
    "that's cool",
    "that's crazy",
    "that's interesting",
    "that's funny",
    "that explains it",
    "i didn't know that",
    "i know right",
    "fair enough",
    "good to know",
    "sounds good",
    "oh no",
    "oh my god",
    "oh my gosh",
    "you don't say",
    "tell me about it",
    "i get it",
    "ok cool",
    "that makes sense",
    "i knew it",
    "i know",
    "oh nice",
    "all right",
)

# A request to stop with nothing else in it.
STOP_PHRASES: tuple[str, ...] = (
    "stop",
    "stop it",
    "stop talking",
    "stop that",
    "please stop",
    "cancel",
    "cancel that",
    "cancel it",
    "shut up",
    "be quiet",
    "quiet",
    "silence",
    "hush",
    "that's enough",
    "enough",
    "enough already",
    "i've heard enough",
    "never mind",
    "nevermind",
    "forget it",
    "forget about it",
    "forget that",
    "abort",
    "halt",
    "pause",
    "end",
    "no more",
    "that's it",
    "that'll do",
    "that will do",
    "okay stop",
    "alright stop",
    "no stop",
    "quit",
    "turn it off",
    "shush",
    "stop please",
    "enough thanks",
    "drop it",
    "skip it",
    "forget",
    "i'm done",
    "we're done",
)

# Words that make what surrounds a stop phrase a new request ("forget it, what's the weather").
REQUEST_WORDS: frozenset[str] = frozenset(
    """
    what what's who who's whom where where's when why how how's which tell play set show give
    find let's talk put call text order read remind instead can could would will should
    explain say start open check look search add book weather time news joke about
    """.split()
)

CORRECTION_CUES: tuple[str, ...] = (
    "i meant",
    "i mean",
    "i said",
    "i asked",
    "i was asking",
    "i wanted",
    "i want",
    "i need",
    "i'd rather",
    "i would rather",
    "instead",
    "rather than",
    "not the",
    "actually",
    "make it",
    "can you make",
    "make that",
    "change it",
    "change that",
    "switch to",
    "skip the",
    "leave out",
    "without",
    "only the",
    "just the",
    "just give me",
    "shorter",
    "longer",
    "simpler",
    "slower",
    "faster",
    "louder",
    "quieter",
    "slow down",
    "speed up",
    "more detail",
    "less detail",
    "short version",
    "in metric",
    "in celsius",
    "in fahrenheit",
    "in miles",
    "in kilometers",
    "didn't i",
    "did i not",
    "that's not what",
    "wrong",
    "i have a",
    "i don't have",
    "we don't have",
    "i'm allergic",
    "allergic",
    "vegetarian",
    "vegan",
    "gluten",
    "dairy",
    "for kids",
    "year old",
    "please",
    "use",
    "swap",
    "replace",
    "like i'm",
    "explain it",
    "not so",
    "too",
    "less",
    "more",
    "no i",
    "no not",
    "no the",
    "no it's",
    "no we",
)

QUESTION_STARTS: frozenset[str] = frozenset(
    """
    what what's whats who who's whom whose which when where where's why how how's is are was were
    do does did can could would will should isn't aren't doesn't didn't wasn't huh
    """.split()
)

CLARIFY_CUES: tuple[str, ...] = (
    "what's a",
    "what's an",
    "what is a",
    "what is an",
    "what does",
    "what do you mean",
    "meaning what",
    "what's that",
    "what is that",
    "who is",
    "who was",
    "who's",
    "how do you spell",
    "spell that",
    "spell it",
    "repeat",
    "say that again",
    "come again",
    "say again",
    "one more time",
    "what was that",
    "sorry what",
    "wait what",
    "hold on what",
    "wait why",
    "wait how",
    "wait who",
    "wait where",
    "wait so",
    "hang on",
    "hold on",
    "how is that different",
    "what's the difference",
    "difference between",
    "why is",
    "why does",
    "why do",
    "why did",
    "how come",
    "how does",
    "how do",
    "how many",
    "how much",
    "how long",
    "which one",
    "is that",
    "is it",
    "are they",
    "does that",
    "does it",
    "even if",
    "what about",
    "as in",
    "you mean",
    "again",
    "meaning",
    "what",
)

CLOSE_CUES: tuple[str, ...] = (
    "thanks bye",
    "bye",
    "goodbye",
    "good night",
    "goodnight",
    "that's all",
    "that's it",
    "all set",
    "i'm done",
    "i'm good",
    "we're done",
    "i'm all set",
    "i got it from here",
    "from here",
    "no thanks",
    "don't care",
    "not interested",
    "boring",
    "something else",
    "change the subject",
    "different topic",
    "talk about",
    "forget",
    "never mind",
    "nevermind",
    "enough",
    "stop",
    "cancel",
    "shut up",
    "quiet",
    "nobody asked",
    "google it",
    "look it up myself",
    "not answering",
    "waste of time",
    "turn it off",
    "turn off",
    "for today",
    "for tonight",
    "later",
    "another time",
)

# Requests a smart speaker serves on their own: a redirect when they cut into an unrelated answer.
COMMAND_CUES: tuple[str, ...] = (
    "set an alarm",
    "set a timer",
    "set alarm",
    "set timer",
    "timer for",
    "alarm for",
    "remind me",
    "reminder",
    "play some",
    "play the",
    "play my",
    "play music",
    "put on some",
    "turn on",
    "turn off",
    "turn up",
    "turn down",
    "the lights",
    "volume",
    "what time",
    "what day",
    "what's the date",
    "the weather",
    "weather",
    "forecast",
    "my calendar",
    "calendar",
    "call mom",
    "call my",
    "text my",
    "send a message",
    "order me",
    "order a",
    "add to my",
    "shopping list",
    "add milk",
    "the news",
    "tell me a joke",
    "a joke",
    "how tall",
    "who won",
    "did the",
    "score",
    "traffic",
    "thermostat",
    "lock the",
    "open the garage",
    "spotify",
    "podcast",
    "radio",
)

VOCATIVES: frozenset[str] = frozenset(
    """
    honey hon babe baby sweetie sweetheart darling dear love mom mommy mum mama dad daddy papa
    grandma grandpa nana kids guys boys girls buddy bud dude kiddo sis bro son kid
    max sam bella buddy charlie luna lucy daisy rocky cooper bailey molly sophie emma jake ben
    tom tim anna jack lily olivia noah liam ava mia ella leo oscar rosie milo toby jess jen mike
    dave john mark sarah kate katie emily josh alex chris matt nick ryan zoe chloe ethan dan
    """.split()
)

# Phrases people say to someone else in the room; they are not addressed to the speaker.
ASIDE_CUES: tuple[str, ...] = (
    "be right there",
    "coming",
    "just a sec",
    "one sec",
    "in a minute",
    "in five",
    "keep it down",
    "stop barking",
    "get down",
    "sit",
    "dinner's ready",
    "dinner is ready",
    "grab the door",
    "get the door",
    "someone's at the door",
    "your shoes",
    "brush your teeth",
    "go to bed",
    "put that down",
    "don't touch",
    "leave your brother",
    "leave your sister",
    "stop hitting",
    "stop fighting",
    "stop running",
    "stop it you two",
    "where are my keys",
    "have you seen",
    "did you feed",
    "can you pass",
    "pass the",
    "the dog",
    "the cat",
    "on the phone",
    "i'm on the phone",
    "hang on honey",
    "no not you",
    "wasn't talking to you",
    "not talking to you",
    "bad dog",
    "good boy",
    "good girl",
)


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
