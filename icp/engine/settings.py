"""The engine machine's settings and the small records it keeps about work in progress."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from icp.context import DEFAULT_SYSTEM_PROMPT
from icp.segmenter import SegmenterSettings
from icp.words import WordTiming


class AutoResume(StrEnum):
    AUTO = "auto"  # after a side answer, resume the held thread when the user stays quiet
    ASK = "ask"  # ask whether to go back; a yes resumes
    OFF = "off"  # wait for "go back"


@dataclass(frozen=True, slots=True)
class EngineSettings:
    heard_threshold: float = 0.5  # a word is heard when more than this fraction of it has played
    lookahead_ms: float = 4000.0  # audio synthesised/sent ahead of the heard cursor
    auto_resume: AutoResume = AutoResume.AUTO
    auto_resume_delay_s: float = 2.5
    interrupt_timeout_s: float = 8.0  # no news of an interruption's words (final or partial) this long: ABSORB
    listen_timeout_s: float = 15.0  # a wake or words, then no final utterance: back to idle
    classify_timeout_s: float = 3.0
    bridge: str = "Right, as I was saying,"
    ask_phrase: str = "Shall I go back to what I was saying?"
    failure_phrase: str = "Sorry, I could not answer that just now."
    max_tokens: int = 400
    background_max_words: int = 250  # a held parent's generation may finish this far past its cursor
    lost_audio_s: float = 3.0  # audio sent this long ago that an idle device never played was lost
    # A CANCEL or MODIFY may have been a misreading: "go back" undoes it while the agent has been idle
    # for less than this (and the user said nothing else in between). 0: dispositions are final.
    undo_window_s: float = 20.0
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    segmenter: SegmenterSettings = SegmenterSettings()
    # Acting on partial utterances (issue 12). `early_absorb`: a partial the classifier calls ABSORB
    # this confidently resumes the paused reply at once (the final may still revise it). The lexical
    # rules give backchannels 0.97; the embedding blend gives prefixes such as "so" or "wait" 0.8-0.92,
    # which should wait for more words. False: wait for the final (the baseline).
    early_absorb: bool = True
    early_absorb_confidence: float = 0.95
    # A later partial of an early-absorbed utterance that the classifier calls anything else with this
    # confidence pauses the reply again (the user went on: "All right." was "Wait, what is...").
    repause_confidence: float = 0.6
    # A final revising an early ABSORB pauses the device and waits this long for its `paused` report
    # (the cursor of what it handed to the card) before the context is built from the heard words.
    late_cursor_wait_s: float = 0.5
    # `speculate`: a partial the classifier calls NEW (idle) or BRANCH/MODIFY (interrupted) this
    # confidently starts the answer's generation before the final; adopted when the final says the
    # same words and the same disposition, cancelled otherwise. False: generate after the final.
    speculate: bool = True
    speculate_confidence: float = 0.7
    # `speculate_audio`: a speculation also synthesises its first segment while waiting for the final
    # (held back, never sent unless adopted), so adoption sends audio at once instead of after one TTS
    # call (piper: ~100-200 ms). False: the first segment is synthesised at adoption.
    speculate_audio: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.heard_threshold < 1.0:
            raise ValueError("heard_threshold must be in [0, 1)")
        if self.lookahead_ms <= 0:
            raise ValueError("lookahead_ms must be positive")
        if self.undo_window_s < 0:
            raise ValueError("undo_window_s must be >= 0")
        for name in ("early_absorb_confidence", "speculate_confidence", "repause_confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")


@dataclass
class Generation:
    id: str
    item: str


@dataclass
class PendingSegment:
    id: int
    item: str
    first_word: int
    text: str
    bridge_words: int = 0
    samples: int = 0
    sample_rate: int = 0
    words: tuple[WordTiming, ...] = ()
    attempts: int = 0


@dataclass
class Undo:
    """What "go back" would bring back after a CANCEL or MODIFY that may have been a misreading.

    Why a record and not a thread status: a MODIFY keeps its thread active (the correction's answer
    goes on in it), so what is undoable is an item and its first word not fully heard, exactly what
    a held thread keeps. Its generation is stopped as before (a stop stops spending); the text
    generated so far is kept in the item. `expires` is set when the machine is next idle (the window
    does not run while the reply to the misreading plays).
    """

    disposition: str  # "CANCEL" or "MODIFY": the disposition that may be undone
    thread: str  # the thread the resumed item goes into
    item: str  # the item to resume
    word: int  # its first word not fully heard
    expires: float | None = None  # engine time the window closes; None: not counting yet


@dataclass
class PartialRequest:
    """The latest partial utterance sent to the classifier: only its answer counts (an older one's
    is stale), and only while its utterance is still undecided."""

    id: str  # the classify request id (`<utterance>~p<n>`: never an utterance id)
    utterance: str
    text: str
    speaking: bool


@dataclass
class Speculation:
    """An answer generated from a partial before the final: its text is buffered here, never in the
    conversation and never sent, until the final adopts it (same words, same disposition) or not.

    `held`: its first segment, synthesised ahead (`speculate_audio`) under an id of the session's
    counter; `samples` > 0 once its audio is back. Adoption hands it to the pipeline (ready, or still
    in flight) when the reply's first segment is the same text; otherwise its audio is discarded.
    `held_failed`: its synthesis failed, so the first segment is synthesised at adoption as usual."""

    generation: str  # the LLM request's id (not in `generations`: nothing of it is in the tree)
    utterance: str
    key: str  # the partial's normalised text (`normalise`)
    disposition: str  # the disposition it was started for (a `Disposition` value)
    messages: tuple[dict[str, str], ...]  # the request it was started with
    text: str = ""
    finished: bool = False
    failed: bool = False
    held: PendingSegment | None = None
    held_failed: bool = False
