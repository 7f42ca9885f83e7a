"""Turn taking in the device machine (issue 12): the optimistic pause and the end of a turn by its words.

A mixin of `DeviceMachine` (state lives on the machine), beside `Captures`. The optimistic pause:
playback pauses on the first suspicious frame while speaking and nothing is sent; a confirmed onset
makes it the barge-in (`DeviceMachine._on_speech_started`), a dismissal resumes at the exact sample
and is counted. The end of a turn: at a pause inside the user's speech the machine asks for a quick
transcript and judges it (`_judge`); `Captures._turn_silence` picks the silence from the verdict.
docs/turns.md has the why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from icp.device import commands as C
from icp.device import events as E
from icp.device.table import State, Step
from icp.turn_end import end_of_turn, is_question, is_short_command

if TYPE_CHECKING:
    from icp.device.machine import DeviceMachine


class Turns:
    """Optimistic pause and end-of-turn handlers for `DeviceMachine`."""

    def _on_speech_suspected(self: "DeviceMachine", ev: E.SpeechSuspected, now: float) -> None:
        """Pause on the first speech-like frame: what is handed to the card after it would play over
        the user. Nothing is sent: only a confirmed onset is an `interrupt`."""
        st = self.settings
        if (self.muted or self.state is not State.SPEAKING or not st.bargein or not st.optimistic_pause
                or st.min_interruption_s > 0 or self._suspect_at is not None):
            return
        self._suspect_at = now
        self._go(Step.SUSPECT)
        self._emit(C.PausePlayback())

    def _on_speech_dismissed(self: "DeviceMachine", ev: E.SpeechDismissed, now: float) -> None:
        if self._suspect_at is not None:
            self._dismiss(now)

    def _dismiss(self: "DeviceMachine", now: float) -> None:
        """Not speech after all: play on from the exact sample the pause kept (a gap, no lost audio)."""
        since, self._suspect_at = self._suspect_at, None
        if self.state is not State.SPEAKING or since is None:
            return
        self.false_pauses += 1
        self.false_pause_s += max(0.0, now - since)
        self._go(Step.DISMISS)
        self._emit(C.ResumePlayback())

    def _on_speech_paused(self: "DeviceMachine", ev: E.SpeechPaused, now: float) -> None:
        self._barge_pending = None  # too short to interrupt (min_interruption_s)
        if self.capture is None:
            return
        self._speech_quiet(ev.at)
        # (Speech over a paused reply ends on the ordinary silence with the recogniser's final pass: the
        # engine resumes a backchannel from the partials, and an opening such as "Wait," looks complete.)
        if self._looks_at_words():
            self._eot = None
            self._emit(C.QuickTranscript(self.capture))

    def _judge(self: "DeviceMachine", text: str, turn_audio: Optional[float]) -> float:
        """How complete the turn looks: its words (`icp.turn_end`); when an audio model also listened,
        a "complete" needs it to agree (words alone are fooled by Whisper's confident full stop on a
        cut sentence), else the turn counts as unsure (the ordinary silence)."""
        st = self.settings
        score = end_of_turn(text).complete
        unsure = (st.turn_end.complete_at + st.turn_end.incomplete_below) / 2
        if turn_audio is not None and score >= st.turn_end.complete_at and turn_audio < st.audio_complete_at:
            return unsure
        fast = is_question(text) or is_short_command(text)
        if st.eot_fast_questions_only and score >= st.turn_end.complete_at and not fast:
            # A statement or request ("Tell me about the moon.") is often extended after a breath ("...
            # and its phases"); Whisper's "?" on a question is the stronger sign of a closed turn. Chosen
            # after `segue-bench turns` showed such cut-offs (not a held-out decision).
            return unsure
        return score

    def _on_speech_resumed(self: "DeviceMachine", ev: E.SpeechResumed, now: float) -> None:
        if self.capture is not None:
            self._run_start = ev.at
            self._silence_since = None
            self._eot = None
