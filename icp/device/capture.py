"""Utterances and captures: when the recogniser hears the user, and when an utterance is over.

A mixin of `DeviceMachine` (state lives on the machine). With a recogniser (`settings.asr`), the
machine opens a *capture* (the app streams echo-cancelled mic audio into the ASR worker) after a
wake, a talk press, a barge-in onset, or an onset while the engine listens for a follow-up, and
closes it when the user has stopped talking (`end_silence_s` after the VAD's offset) or after
`max_utterance_s`. Partials and the final come back as `AsrPartial` / `AsrFinal` and leave as
`utterance` messages. Without one (text mode: the evaluation harness), `TextHeard` plays that role.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from icp.device import commands as C
from icp.device.table import Step
from icp.dispositions import Hint
from icp.messages.rules import MAX_TEXT, MAX_WORDS
from icp.turn_end import TurnEnd, is_question

if TYPE_CHECKING:
    from icp.device.machine import DeviceMachine


class Captures:
    """Capture and utterance bookkeeping for `DeviceMachine`."""

    def _new_utterance(self: "DeviceMachine", now: float) -> str:
        self._utterances += 1
        self.utterance_id = f"u{self._utterances}-{int(now * 1000)}"
        self.hint = None
        return self.utterance_id

    def _start_capture(self: "DeviceMachine", from_s: float, now: float, speech_at: Optional[float],
                       over_speech: bool = False) -> None:
        if not self.settings.asr or self.utterance_id is None:
            return
        if self.capture is not None:
            self._emit(C.CancelCapture(self.capture))
        self.capture = self.utterance_id
        self._capture_since = now
        self._run_start = speech_at
        self._silence_since = None
        self._prepared = None
        self._spoke = False
        self._eot, self._eot_text = None, ""
        self._capture_from = max(0.0, from_s)
        self._emit(C.StartCapture(self.capture, max(0.0, from_s), over_speech))

    def _finish_capture(self: "DeviceMachine") -> None:
        if self.capture is None:
            return
        self.finishing = self.capture
        # the prepared pass heard every word if the user has not spoken since it was asked for
        prepared = self._prepared is not None and self._prepared == self._silence_since and self._run_start is None
        self._emit(C.FinishCapture(self.capture, prepared=prepared))
        self.capture = None
        self._prepared = None

    def _utterance(self: "DeviceMachine", uid: str, text: str, final: bool, hint: Optional[Hint] = None,
                   words: Optional[tuple] = None) -> None:
        """An `utterance` within the wire's limits (text and word timings cut, never rejected)."""
        self._send(C.SendUtterance(uid, text[:MAX_TEXT], final, hint, tuple(words)[:MAX_WORDS] if words else None))

    def _abandon_utterance(self: "DeviceMachine") -> None:
        """Drop the capture; close the utterance with an empty final so the engine is not left waiting."""
        uid = self.capture or self.finishing
        if self.capture is not None:
            self._emit(C.CancelCapture(self.capture))
        self.capture = self.finishing = None
        if uid is not None:
            self._utterance(uid, "", True, self.hint)
            if self.utterance_id == uid:
                self.utterance_id = None
        self.hint = None

    def _final(self: "DeviceMachine", uid: str, text: str, words: Optional[tuple]) -> None:
        self._utterance(uid, text, True, self.hint, words)
        if self.utterance_id == uid:
            self.utterance_id = None
        self.hint = None
        self._go(Step.HEARD_WORDS if text.strip() else Step.HEARD_NOTHING)

    def _barge_in(self: "DeviceMachine", at: float, now: float, hint: Optional[Hint] = None) -> None:
        self._go(Step.BARGE_IN)
        self._emit(C.PausePlayback())
        uid = self._new_utterance(now)
        self.hint = hint
        self._interrupt_open = True
        self._send(C.SendInterrupt(uid, max(0.0, at), hint))
        self._start_capture(at - self.settings.preroll_s, now, speech_at=at, over_speech=True)

    def _wake(self: "DeviceMachine", source, score: Optional[float], now: float, at: Optional[float] = None) -> None:
        """Listen from the wake word's detection on. `at` is its audio time, earlier than `now` when the
        loop runs behind the audio; a question already under way when the detector fired (a speech run
        that began after the wake phrase ended) is captured from its onset."""
        self._go(Step.WAKE)
        self._listen_since = now
        self.utterance_id = None
        if self.capture is not None:
            self._emit(C.CancelCapture(self.capture))
            self.capture = None
        self._send(C.SendWake(source, score))
        self._event("wake")
        if not self.settings.asr:
            return
        self._new_utterance(now)
        start = now if at is None else min(now, at)
        speech_at = None
        on, off = self._speech_on, self._speech_off
        if (at is not None and on is not None and off is not None and on > off
                and at - off <= self.settings.wake_question_gap_s):
            start = max(off, on - self.settings.preroll_s)
            speech_at = on
        self._start_capture(start, now, speech_at=speech_at)
        self._capture_since = start  # audio time: SpeechEnded.at is compared with it

    def _verdict(self: "DeviceMachine") -> Optional[str]:
        """"complete", "incomplete" or "unsure" for the words before the current silence; None when
        they are not known (or the machine does not judge words)."""
        if not self.settings.semantic_eot or self._eot is None:
            return None
        return self.settings.turn_end.verdict(TurnEnd(self._eot, ""))

    def _quick_is_final(self: "DeviceMachine") -> bool:
        """Ending the turn now would send the quick transcript as the final (`_end_turn`)."""
        # (Not for speech over a paused reply: there the beam-search final reads a hum or an opening
        # better than the greedy quick pass, and a backchannel was resumed from the partials already.)
        return (self.settings.final_from_quick and self._verdict() == "complete" and bool(self._eot_text.strip())
                and self.state.value != "paused")

    def _looks_at_words(self: "DeviceMachine") -> bool:
        """A pause in this capture gets a quick transcript and an end-of-turn verdict (`Turns`)."""
        return self.settings.semantic_eot and self._spoke and self.state.value != "paused"

    def _judging(self: "DeviceMachine") -> bool:
        """A quick transcript of this silence is on its way (`Turns._on_speech_paused`): its verdict may
        end the turn at once with the quick words as the final, so no final pass is started before it."""
        return self._looks_at_words() and self._eot is None

    def _turn_silence(self: "DeviceMachine") -> float:
        """How long a silence ends the turn: short when the words before it look complete, long when
        they look unfinished (the user is thinking mid-sentence), the ordinary one when not known."""
        st = self.settings
        verdict = self._verdict()
        if verdict == "complete" and self.state.value != "paused":
            # (Not while the reply is paused on a barge-in: "Wait," or "Hold on," looks complete and is
            # an opening; cutting there would hand the classifier half an interruption. The engine
            # resumes a backchannel from the partials anyway, whatever the silence.)
            if st.eot_fast_questions_only and self.state.value != "speaking" and not is_question(self._eot_text):
                # A short command or reply ("Thanks.", "No, not you.") is often the first of two
                # sentences, and the pause between them (espeak-ng: 300-340 ms; people: more) is longer
                # than a question's short silence: live mode cut "Thanks." from "So what is a vector?".
                # (Not after an early resume: there the reply's echo is in the air.)
                return st.eot_command_silence_s
            return st.eot_complete_silence_s
        if verdict == "incomplete":
            return st.eot_incomplete_silence_s
        return st.end_silence_s

    def _end_turn(self: "DeviceMachine") -> None:
        """The silence after the user's words ended the turn. When the words looked complete, their
        quick transcript (which covers all the speech) is the final: a second pass of the recogniser
        would only delay the answer (and an equal final is what lets a speculative answer be adopted)."""
        uid, text = self.capture, self._eot_text.strip()
        if self._quick_is_final() and uid is not None:
            self._emit(C.CancelCapture(uid))
            self.capture = None
            self._final(uid, text, None)
        else:
            self._finish_capture()

    def _capture_tick(self: "DeviceMachine", now: float, heard: Optional[float] = None) -> None:
        """`heard`: how far the silence is known (`Tick.audio_until`); the capture's own clocks run on `now`."""
        st = self.settings
        heard = now if heard is None else heard
        if self.capture is not None:
            if (self._silence_since is not None and self._run_start is None
                    and heard - self._silence_since >= self._turn_silence()):
                self._end_turn()
            elif now - self._capture_since >= st.max_utterance_s:
                self._finish_capture()
            elif (not self._spoke and self._run_start is None and self.state.value == "listening"
                  and now - self._capture_since > st.listen_timeout_s):
                self._abandon_utterance()
                self._go(Step.HEARD_NOTHING)
            elif (st.final_lead_s > 0 and self._silence_since is not None and self._run_start is None
                  and self._prepared != self._silence_since and not self._judging() and not self._quick_is_final()
                  and heard - self._silence_since >= self._turn_silence() - st.final_lead_s):
                self._prepared = self._silence_since
                self._emit(C.PrepareFinal(self.capture))
