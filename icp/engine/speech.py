"""The user talking: wake, partial and final utterances, interruptions, and the classifier's answer.

These handlers decide which utterance is classified and which is decided at once (empty, a cancel
hint, a "yes" to the ask phrase); what a disposition then does is `icp.engine.apply`.
"""

from __future__ import annotations

import re

from icp import commands as C
from icp import events as E
from icp.conversation import AssistantItem
from icp.dispositions import ClassifyRequest, Disposition, Hint
from icp.engine.apply import Apply
from icp.engine.table import Deadline, State, Step
from icp.messages.playback import Action

S = State
AFFIRMATIVE = re.compile(r"^\W*(yes|yeah|yep|sure|please|ok(ay)?|go ahead|go on)\b", re.I)
# "Go back" right after a CANCEL/MODIFY that may have been a misreading ("no, I was just asking, go
# back"): an undo, whatever else the sentence holds. Only consulted while an undo is open (`Undo`),
# and only when the sentence ends on it, so "does the universe continue" or "don't go back" are not.
# ("carried on", "carry going", "carry gone": tiny.en's readings of "carry on" in live and audio runs.)
GO_BACK = re.compile(
    r"(?<!not )(?<!n't )(?<!never )\b(go(ing)? back|carr(y|ied) on|carry go(ing|ne)|keep going|go on|continue|as you were|"
    r"where were (we|you)|you were saying)( to (it|that|what you were saying|the \w+))?"
    r"(,? (then|please|thanks|thank you))?\W*$", re.I)
UNDO_MAX_WORDS = 12
# A heard sentence shorter than this is given to the classifier with the sentence before it.
CONTEXT_MIN_WORDS = 6
# Over the answer to the misreading, "go on" / "keep going" alone asks for more of *that* answer: only
# "go back" (or a "no" first: "no, carry on") undoes there.
UNDO_OVER_A_REPLY = re.compile(
    r"^\W*(no|nope|nah)\b|\bgo(ing)? back\b|\bwhere were (we|you)\b|\byou were saying\b", re.I)


class Speech(Apply):
    def _on_wake(self, ev: E.WakeDetected) -> None:
        self.deadlines.pop(Deadline.AUTO_RESUME, None)
        self.deadlines[Deadline.LISTEN] = ev.now + self.settings.listen_timeout_s
        self._step(E.WakeDetected)

    def _on_partial(self, ev: E.UtterancePartial) -> None:
        self.deadlines.pop(Deadline.AUTO_RESUME, None)
        if self.state in (S.IDLE, S.LISTENING):
            self.deadlines[Deadline.LISTEN] = ev.now + self.settings.listen_timeout_s
            self._step(E.UtterancePartial)
        elif self.state in (S.THINKING, S.SPEAKING):
            # Speech the device did not flag as an interruption (no barge-in there): pause it now.
            self._begin_interruption(E.UtterancePartial, ev.utterance_id, ev.hint, ev.now)
            self._emit(C.DeviceControl(Action.PAUSE, "speech while speaking"))
        elif (self.state is S.INTERRUPTED and ev.utterance_id == self.utterance_id
              and Deadline.INTERRUPT in self.deadlines):
            # The user is still talking (the device captures up to 15 s): the timeout that treats a
            # silent interruption as a backchannel runs from the device's latest word, not its first,
            # or a long correction would have the reply resume over the user's own voice.
            self.deadlines[Deadline.INTERRUPT] = max(self.deadlines[Deadline.INTERRUPT],
                                                     ev.now + self.settings.interrupt_timeout_s)
        if ev.hint is not None:
            self.utterance_hint = ev.hint

    def _on_interrupt(self, ev: E.InterruptReported) -> None:
        if ev.cursor is not None:
            self.conv.apply_cursor(ev.cursor.segment, ev.cursor.sample, self.settings.heard_threshold)
        if self.state is S.INTERRUPTED:
            if ev.hint is not None:
                self.utterance_hint = ev.hint
            return  # a duplicate or a refinement of the same interruption
        self._begin_interruption(E.InterruptReported, ev.utterance_id, ev.hint, ev.now)

    def _begin_interruption(self, trigger: type[E.Event], utterance_id: str, hint: Hint | None, now: float) -> None:
        self.utterance_id = utterance_id
        self.utterance_hint = hint
        self.deadlines[Deadline.INTERRUPT] = now + self.settings.interrupt_timeout_s
        self._step(trigger)

    def _on_final(self, ev: E.UtteranceFinal) -> None:
        self.deadlines.pop(Deadline.AUTO_RESUME, None)
        hint = ev.hint or self.utterance_hint
        speaking = self.state in (S.THINKING, S.SPEAKING, S.INTERRUPTED)
        if self.state in (S.THINKING, S.SPEAKING):
            self._begin_interruption(E.UtteranceFinal, ev.utterance_id, hint, ev.now)
            self._emit(C.DeviceControl(Action.PAUSE, "speech while speaking"))
        self.deadlines.pop(Deadline.INTERRUPT, None)
        text = ev.text.strip()
        if not text and hint is None:
            # Noise the VAD took for speech, or nothing recognised.
            if speaking:
                self._apply(ev.utterance_id, "", Disposition.ABSORB, Disposition.ABSORB, 1.0, "empty", ev.now)
            else:
                self._step(Step.HEARD_NOTHING)
            return
        if hint is Hint.CANCEL:
            d = Disposition.CANCEL if speaking else Disposition.DROP
            self._apply(ev.utterance_id, text, d, d, 1.0, "hint", ev.now)
            return
        if self._is_undo(text, speaking):
            self._apply(ev.utterance_id, text, Disposition.RESUME, Disposition.RESUME, 1.0, "undo", ev.now)
            return
        if not speaking and self.awaiting_yes and AFFIRMATIVE.match(text):
            self._apply(ev.utterance_id, text, Disposition.RESUME, Disposition.RESUME, 1.0, "ask", ev.now)
            return
        self.classify_id = ev.utterance_id
        self.classify_text = text
        self.classify_speaking = speaking
        self.deadlines[Deadline.CLASSIFY] = ev.now + self.settings.classify_timeout_s
        self._step(Step.CLASSIFY)
        self._emit(C.Classify(ev.utterance_id, ClassifyRequest(text, self._last_heard_sentence(), speaking, hint)))

    def _is_undo(self, text: str, speaking: bool) -> bool:
        """An explicit "go back" while a CANCEL/MODIFY can still be undone (see `GO_BACK`)."""
        if self.undo is None or len(text.split()) > UNDO_MAX_WORDS or not GO_BACK.search(text):
            return False
        return not speaking or UNDO_OVER_A_REPLY.search(text) is not None

    def _last_heard_sentence(self) -> str:
        """The classifier's context: the last sentence the user heard, as much of it as they heard. A
        sentence cut a few words in says almost nothing ("The temperature will"), so under
        `CONTEXT_MIN_WORDS` the sentence before it comes too: audio mode heard "No, I meant the day
        after tomorrow." as "No, I'm at the day after tomorrow.", which against "The temperature will"
        alone was a coin toss between CANCEL and MODIFY (0.51 / 0.47), and with "Tomorrow will be
        sunny ..." before it a MODIFY (0.84)."""
        for entry in reversed(self.conv.log):
            if isinstance(entry, AssistantItem) and entry.heard:
                heard = " ".join(entry.words[: entry.heard])
                parts = re.split(r"(?<=[.!?])\s+", heard)
                if len(parts) > 1 and len(parts[-1].split()) < CONTEXT_MIN_WORDS:
                    return f"{parts[-2]} {parts[-1]}"
                return parts[-1]
        return ""

    def _on_classified(self, ev: E.Classified) -> None:
        if ev.request_id != self.classify_id:
            self._ignore(ev, f"stale classification for {ev.request_id!r}")
            return
        self.deadlines.pop(Deadline.CLASSIFY, None)
        self._apply(ev.request_id, self.classify_text, ev.disposition, None, ev.confidence, ev.source, ev.now)

    def _on_classify_failed(self, ev: E.ClassifyFailed) -> None:
        """Fall back at once, as the classify deadline would have (but without 3 s of silence)."""
        if self.state is not S.CLASSIFYING or ev.request_id != self.classify_id:
            self._ignore(ev, f"stale classifier failure for {ev.request_id!r}")
            return
        self.deadlines.pop(Deadline.CLASSIFY, None)
        self._ignore(ev, f"classifier failed ({ev.error}); falling back")
        self._classify_fallback("failed")

    def _classify_fallback(self, source: str) -> None:
        fallback = Disposition.ABSORB if self.classify_speaking else Disposition.NEW
        self._apply(self.classify_id or source, self.classify_text, fallback, fallback, 0.0, source, self.now)
