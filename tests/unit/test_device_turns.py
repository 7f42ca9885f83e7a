"""Turn taking in the device machine: the optimistic pause, the minimum interruption (the baseline's
rule), and the end of a turn decided by its words as well as its silence."""

from __future__ import annotations

from device import machine as m
from device.vad import OnsetDetector, SpeechDismiss, SpeechOffset, SpeechOnset, SpeechPause, SpeechResume, SpeechSuspect


def types(cmds):
    return [type(c) for c in cmds]


def speaking(**settings) -> m.Machine:
    mc = m.Machine(settings=m.MachineSettings(**settings), online=True)
    mc.handle(m.SegmentQueued(1), 0.0)
    assert mc.state is m.State.SPEAKING
    return mc


# ---- the VAD's finer events ----
def test_onset_detector_suspects_on_the_first_frame_and_dismisses_a_broken_run():
    d = OnsetDetector(onset_frames=3, offset_frames=10, pause_frames=2, dismiss_frames=1)
    f = 0.02
    assert d.update(True, 0.0, f) == SpeechSuspect(0.0)
    assert d.update(True, 0.02, f) is None
    assert d.update(False, 0.04, f) == SpeechDismiss(0.0, 2)
    assert d.update(True, 0.06, f) == SpeechSuspect(0.06)
    assert d.update(True, 0.08, f) is None
    assert d.update(True, 0.10, f) == SpeechOnset(0.06)
    assert d.update(False, 0.12, f) is None
    pause = d.update(False, 0.14, f)
    assert isinstance(pause, SpeechPause) and abs(pause.at - 0.12) < 1e-9  # the end of the last speech frame
    assert d.update(True, 0.16, f) == SpeechResume(0.16)
    events = [d.update(False, 0.18 + i * f, f) for i in range(10)]
    assert [type(e) for e in events if e is not None] == [SpeechPause, SpeechOffset]
    assert all(abs(e.at - 0.18) < 1e-9 for e in events if e is not None)


def test_a_suspicious_frame_suspects_before_the_vad_and_quiet_must_last_to_dismiss():
    d = OnsetDetector(onset_frames=2, dismiss_frames=3)
    f = 0.02
    assert d.update(False, 0.0, f, suspect=True) == SpeechSuspect(0.0)  # loud, not (yet) speech
    assert d.update(False, 0.02, f, suspect=False) is None
    assert d.update(False, 0.04, f, suspect=True) is None  # one run: no second suspicion
    assert d.update(True, 0.06, f, suspect=True) is None
    assert d.update(True, 0.08, f, suspect=True) == SpeechOnset(0.06)
    d.reset()
    d.update(False, 1.0, f, suspect=True)
    assert [d.update(False, 1.02 + i * f, f, suspect=False) for i in range(3)] == [None, None, SpeechDismiss(1.0, 1)]


def test_onset_frames_one_makes_an_onset_with_no_suspicion_first():
    d = OnsetDetector(onset_frames=1)
    assert d.update(True, 0.5, 0.02) == SpeechOnset(0.5)


# ---- the optimistic pause ----
def test_a_suspicion_pauses_without_reporting_and_a_dismissal_resumes_and_is_counted():
    mc = speaking()
    cmds = mc.handle(m.SpeechSuspected(1.00), 1.02)
    assert types(cmds) == [m.PausePlayback]  # nothing on the wire
    assert mc.state is m.State.SPEAKING
    cmds = mc.handle(m.SpeechDismissed(1.00, 2), 1.06)
    assert types(cmds) == [m.ResumePlayback]
    assert mc.false_pauses == 1 and abs(mc.false_pause_s - 0.04) < 1e-9


def test_a_confirmed_onset_turns_the_pause_into_a_barge_in_at_the_onset_time():
    mc = speaking()
    mc.handle(m.SpeechSuspected(1.00), 1.02)
    cmds = mc.handle(m.SpeechStarted(1.00), 1.06)
    interrupts = [c for c in cmds if isinstance(c, m.SendInterrupt)]
    assert len(interrupts) == 1 and interrupts[0].onset_s == 1.00
    assert mc.state is m.State.PAUSED and mc.false_pauses == 0
    assert m.ResumePlayback not in types(mc.handle(m.SpeechDismissed(1.5, 1), 1.5))  # a later run: not ours


def test_a_suspicion_nobody_settles_is_dropped_after_suspect_max_s():
    mc = speaking(suspect_max_s=0.3)
    mc.handle(m.SpeechSuspected(1.0), 1.0)
    assert m.ResumePlayback not in types(mc.handle(m.Tick(), 1.2))
    assert m.ResumePlayback in types(mc.handle(m.Tick(), 1.31))
    assert mc.false_pauses == 1


def test_no_optimistic_pause_when_off_idle_or_muted():
    assert mc_cmds(speaking(optimistic_pause=False)) == []
    idle = m.Machine(online=True)
    assert m.PausePlayback not in types(idle.handle(m.SpeechSuspected(0.1), 0.1))
    muted = speaking()
    muted.handle(m.MuteSet(True), 0.05)
    assert m.PausePlayback not in types(muted.handle(m.SpeechSuspected(0.1), 0.1))


def mc_cmds(mc: m.Machine) -> list:
    return [c for c in mc.handle(m.SpeechSuspected(1.0), 1.0) if not isinstance(c, m.Ignored)]


def test_an_engine_flush_during_a_suspicion_is_not_undone_by_the_dismissal():
    mc = speaking()
    mc.handle(m.SpeechSuspected(1.0), 1.0)
    mc.handle(m.ControlReceived("flush"), 1.01)
    assert m.ResumePlayback not in types(mc.handle(m.SpeechDismissed(1.0, 1), 1.04))
    assert mc.false_pauses == 0


# ---- the minimum interruption (the baseline's rule) ----
def test_min_interruption_waits_for_speech_to_last_and_ignores_short_speech():
    mc = speaking(min_interruption_s=0.5)
    assert m.SendInterrupt not in types(mc.handle(m.SpeechStarted(1.0), 1.2))
    assert m.SendInterrupt not in types(mc.handle(m.Tick(), 1.4))
    cmds = mc.handle(m.Tick(), 1.51)
    assert m.PausePlayback in types(cmds)
    assert [c.onset_s for c in cmds if isinstance(c, m.SendInterrupt)] == [1.0]

    short = speaking(min_interruption_s=0.5)
    short.handle(m.SpeechStarted(1.0), 1.2)
    short.handle(m.SpeechPaused(1.3), 1.4)  # "yeah": over before it lasted 0.5 s
    assert m.SendInterrupt not in types(short.handle(m.Tick(), 1.6))
    assert short.state is m.State.SPEAKING


def test_min_interruption_never_pauses_optimistically():
    mc = speaking(min_interruption_s=0.5)
    assert m.PausePlayback not in types(mc.handle(m.SpeechSuspected(1.0), 1.0))


def test_only_a_barge_in_capture_is_marked_over_speech():
    """The recogniser is told a capture interrupts the agent (it then listens for a hum), and only then."""
    mc = m.Machine(settings=m.MachineSettings(asr=True), online=True)
    mc.handle(m.SegmentQueued(1), 0.0)
    starts = [c for c in mc.handle(m.SpeechStarted(1.0), 1.0) if isinstance(c, m.StartCapture)]
    assert [c.over_speech for c in starts] == [True]
    fresh = m.Machine(settings=m.MachineSettings(asr=True), online=True)
    starts = [c for c in fresh.handle(m.TalkPressed(0.0), 0.0) + fresh.handle(m.SpeechStarted(0.5), 0.5)
              if isinstance(c, m.StartCapture)]
    assert starts and not any(c.over_speech for c in starts)


# ---- the end of a turn ----
def listening_capture(**settings) -> tuple[m.Machine, str]:
    mc = m.Machine(settings=m.MachineSettings(asr=True, **settings), online=True)
    mc.handle(m.TalkPressed(0.0), 0.0)
    cmds = mc.handle(m.SpeechStarted(0.5), 0.5)
    start = [c for c in cmds if isinstance(c, m.StartCapture)]
    if start:
        return mc, start[0].utterance_id
    assert mc.capture is not None
    return mc, mc.capture


def finished(cmds) -> bool:
    """The turn ended: the capture went to the recogniser's final pass, or the quick transcript was the final."""
    return m.FinishCapture in types(cmds) or any(isinstance(c, m.SendUtterance) and c.final for c in cmds)


def test_a_pause_asks_for_a_quick_transcript_and_complete_words_end_the_turn_soon():
    mc, uid = listening_capture()
    cmds = mc.handle(m.SpeechPaused(2.0), 2.1)
    assert [c for c in cmds if isinstance(c, m.QuickTranscript)] == [m.QuickTranscript(uid)]
    sent = mc.handle(m.AsrPartial(uid, "What causes the tides?", audio_ms=2100.0, quick=True), 2.15)
    assert any(isinstance(c, m.SendUtterance) and not c.final for c in sent)  # the engine may act on it
    assert not finished(mc.handle(m.Tick(), 2.2))
    assert finished(mc.handle(m.Tick(), 2.26))  # eot_complete_silence_s = 0.25 after the speech's end


def test_words_sent_before_their_end_of_turn_look_are_not_sent_twice():
    """The recogniser sends the quick pass's words as a plain partial before the audio model's
    verdict: the engine gets them once, and the verdict that follows still ends the turn."""
    mc, uid = listening_capture()
    mc.handle(m.SpeechPaused(2.0), 2.1)
    first = mc.handle(m.AsrPartial(uid, "What causes the tides?", audio_ms=2100.0), 2.15)
    assert [c.text for c in first if isinstance(c, m.SendUtterance)] == ["What causes the tides?"]
    again = mc.handle(m.AsrPartial(uid, "What causes the tides?", audio_ms=2100.0, quick=True, turn_audio=0.9), 2.2)
    assert not any(isinstance(c, m.SendUtterance) and not c.final for c in again)
    assert finished(mc.handle(m.Tick(), 2.26))


def test_unfinished_words_wait_for_the_long_silence():
    mc, uid = listening_capture()
    mc.handle(m.SpeechPaused(2.0), 2.1)
    mc.handle(m.AsrPartial(uid, "Tell me about the", audio_ms=2100.0, quick=True), 2.15)
    assert not finished(mc.handle(m.Tick(), 2.8))  # past the ordinary 0.7 s: the user is thinking
    assert not finished(mc.handle(m.Tick(), 3.5))
    assert finished(mc.handle(m.Tick(), 3.61))


def test_speech_again_clears_the_judgement_and_a_stale_transcript_does_not_count():
    mc, uid = listening_capture()
    mc.handle(m.SpeechPaused(2.0), 2.1)
    mc.handle(m.SpeechResumed(2.4), 2.4)
    mc.handle(m.SpeechPaused(3.0), 3.1)
    # the answer to the first pause (audio up to 2.0 s) arrives after the second pause began
    mc.handle(m.AsrPartial(uid, "What causes the tides?", audio_ms=2100.0, quick=True), 3.12)
    assert mc._eot is None
    assert not finished(mc.handle(m.Tick(), 3.3))
    assert finished(mc.handle(m.Tick(), 3.71))  # the ordinary silence


def test_without_semantic_eot_the_silence_alone_ends_the_turn():
    mc, uid = listening_capture(semantic_eot=False, end_silence_s=0.8)
    cmds = mc.handle(m.SpeechPaused(2.0), 2.1)
    assert m.QuickTranscript not in types(cmds)
    mc.handle(m.AsrPartial(uid, "What causes the tides?", audio_ms=2100.0, quick=True), 2.15)
    assert not finished(mc.handle(m.Tick(), 2.7))
    assert finished(mc.handle(m.Tick(), 2.81))


def test_complete_words_send_their_quick_transcript_as_the_final_without_a_second_pass():
    mc, uid = listening_capture()
    mc.handle(m.SpeechPaused(2.0), 2.1)
    mc.handle(m.AsrPartial(uid, "What causes the tides?", audio_ms=2100.0, quick=True), 2.15)
    cmds = mc.handle(m.Tick(), 2.26)
    assert m.FinishCapture not in types(cmds) and m.CancelCapture(uid) in cmds
    finals = [c for c in cmds if isinstance(c, m.SendUtterance) and c.final]
    assert [(f.utterance_id, f.text) for f in finals] == [(uid, "What causes the tides?")]
    assert mc.state is m.State.THINKING and mc.capture is None


def test_without_final_from_quick_the_recogniser_makes_the_final():
    mc, uid = listening_capture(final_from_quick=False)
    mc.handle(m.SpeechPaused(2.0), 2.1)
    mc.handle(m.AsrPartial(uid, "What causes the tides?", audio_ms=2100.0, quick=True), 2.15)
    assert [c.utterance_id for c in mc.handle(m.Tick(), 2.26) if isinstance(c, m.FinishCapture)] == [uid]


# ---- the final pass started in the silence ----
def test_a_silence_that_does_not_end_the_turn_at_once_starts_the_final_pass_ahead_of_its_end():
    """Unsure words wait the ordinary 0.7 s: the pass starts 0.45 s before that, and the final may be it."""
    mc, uid = listening_capture(final_lead_s=0.45)
    mc.handle(m.SpeechPaused(2.0), 2.1)
    mc.handle(m.AsrPartial(uid, "who wrote Romeo and Juliet", audio_ms=2100.0, quick=True), 2.15)
    assert m.PrepareFinal not in types(mc.handle(m.Tick(), 2.22))
    assert [c for c in mc.handle(m.Tick(), 2.26) if isinstance(c, m.PrepareFinal)] == [m.PrepareFinal(uid)]
    assert m.PrepareFinal not in types(mc.handle(m.Tick(), 2.4))  # once per silence
    cmds = mc.handle(m.Tick(), 2.71)
    assert [c for c in cmds if isinstance(c, m.FinishCapture)] == [m.FinishCapture(uid, prepared=True)]


def test_speech_after_the_final_pass_began_makes_the_final_a_new_pass():
    mc, uid = listening_capture(final_lead_s=0.45, max_utterance_s=5.0)
    mc.handle(m.SpeechPaused(2.0), 2.1)
    mc.handle(m.AsrPartial(uid, "Tell me about the moon.", audio_ms=2100.0, quick=True), 2.15)
    assert m.PrepareFinal(uid) in mc.handle(m.Tick(), 2.3)
    mc.handle(m.SpeechResumed(2.5), 2.5)  # "... and its phases": the pass missed these words
    cmds = mc.handle(m.Tick(), 5.0)  # still talking when the capture's time is up
    assert [c for c in cmds if isinstance(c, m.FinishCapture)] == [m.FinishCapture(uid, prepared=False)]


def test_a_new_silence_prepares_again_and_only_its_pass_may_be_the_final():
    mc, uid = listening_capture(final_lead_s=0.45)
    mc.handle(m.SpeechPaused(2.0), 2.1)
    mc.handle(m.AsrPartial(uid, "Tell me about the moon.", audio_ms=2100.0, quick=True), 2.15)
    mc.handle(m.Tick(), 2.3)
    mc.handle(m.SpeechResumed(2.5), 2.5)
    mc.handle(m.SpeechPaused(3.0), 3.1)
    assert m.PrepareFinal not in types(mc.handle(m.Tick(), 3.3))  # its quick transcript is still coming
    mc.handle(m.AsrPartial(uid, "Tell me about the moon and its phases.", audio_ms=3100.0, quick=True), 3.32)
    assert m.PrepareFinal(uid) in mc.handle(m.Tick(), 3.34)
    assert m.FinishCapture(uid, prepared=True) in mc.handle(m.Tick(), 3.71)


def test_no_final_pass_is_started_for_words_that_end_the_turn_as_the_final_or_when_off():
    mc, uid = listening_capture(final_lead_s=0.45)
    mc.handle(m.SpeechPaused(2.0), 2.1)
    cmds = mc.handle(m.AsrPartial(uid, "What causes the tides?", audio_ms=2100.0, quick=True), 2.15)
    cmds += mc.handle(m.Tick(), 2.2) + mc.handle(m.Tick(), 2.26)
    assert m.PrepareFinal not in types(cmds) and finished(cmds)  # the quick words are the final
    off, uid2 = listening_capture(final_lead_s=0.0)
    off.handle(m.SpeechPaused(2.0), 2.1)
    cmds = off.handle(m.AsrPartial(uid2, "who wrote Romeo and Juliet", audio_ms=2100.0, quick=True), 2.15)
    cmds += off.handle(m.Tick(), 2.4) + off.handle(m.Tick(), 2.71)
    assert m.PrepareFinal not in types(cmds) and m.FinishCapture(uid2, prepared=False) in cmds


def test_speech_over_a_paused_reply_prepares_its_final_without_a_quick_transcript():
    mc = speaking(asr=True, final_lead_s=0.45)
    cmds = mc.handle(m.SpeechStarted(1.0), 1.02)
    uid = next(c.utterance_id for c in cmds if isinstance(c, m.StartCapture))
    assert m.QuickTranscript not in types(mc.handle(m.SpeechPaused(1.5), 1.6))
    assert m.PrepareFinal(uid) in mc.handle(m.Tick(), 1.76)
    assert m.FinishCapture(uid, prepared=True) in mc.handle(m.Tick(), 2.21)


def test_a_loop_behind_the_audio_does_not_end_a_turn_on_silence_it_has_not_heard():
    """Live mode, loaded machine: "Wait, what does that mean?" over a paused reply ended at the comma.
    The loop ran ~0.5 s behind the mic, so at a tick the VAD's pause after "Wait," was 0.7 s old by the
    clock while only 0.2 s of audio after it had been analysed; the rest of the sentence, still
    queued, was never captured. The silence is now counted on the analysed audio (`Tick.audio_until`)."""
    mc = speaking(asr=True, final_lead_s=0.45)
    cmds = mc.handle(m.SpeechStarted(1.0), 1.02)
    uid = next(c.utterance_id for c in cmds if isinstance(c, m.StartCapture))
    mc.handle(m.SpeechPaused(1.5), 1.6)
    late = mc.handle(m.Tick(audio_until=1.6), 2.3)  # 0.8 s by the clock, 0.1 s of analysed silence
    assert m.PrepareFinal(uid) not in late and not finished(late)
    mc.handle(m.SpeechResumed(1.75), 2.31)  # the queued audio: the user went on
    mc.handle(m.SpeechPaused(2.6), 2.62)
    assert not finished(mc.handle(m.Tick(audio_until=3.0), 3.4))
    assert m.FinishCapture(uid, prepared=True) in mc.handle(m.Tick(audio_until=3.3), 3.41)
    assert mc.capture is None
    # A lag within the tolerance (the mic's own delivery delay) costs nothing: the clock decides.
    quick = speaking(asr=True, final_lead_s=0.45)
    quick.handle(m.SpeechStarted(1.0), 1.02)
    quick.handle(m.SpeechPaused(1.5), 1.6)
    assert finished(quick.handle(m.Tick(audio_until=2.15), 2.21))


def test_the_audio_model_can_veto_complete_words_but_not_rescue_unfinished_ones():
    mc, uid = listening_capture()
    mc.handle(m.SpeechPaused(2.0), 2.1)
    mc.handle(m.AsrPartial(uid, "I would like to know.", audio_ms=2100.0, quick=True, turn_audio=0.2), 2.15)
    assert not finished(mc.handle(m.Tick(), 2.3))  # sounded unfinished: the ordinary silence
    cmds = mc.handle(m.Tick(), 2.71)
    # not a "complete" verdict: the recogniser's final pass
    assert [c.utterance_id for c in cmds if isinstance(c, m.FinishCapture)] == [uid]

    agree, uid2 = listening_capture()
    agree.handle(m.SpeechPaused(2.0), 2.1)
    agree.handle(m.AsrPartial(uid2, "What causes the tides?", audio_ms=2100.0, quick=True, turn_audio=0.9), 2.15)
    assert finished(agree.handle(m.Tick(), 2.26))

    unfinished, uid3 = listening_capture()
    unfinished.handle(m.SpeechPaused(2.0), 2.1)
    unfinished.handle(m.AsrPartial(uid3, "Tell me about the", audio_ms=2100.0, quick=True, turn_audio=0.99), 2.15)
    assert not finished(unfinished.handle(m.Tick(), 3.0))


def test_a_barge_in_capture_does_not_end_on_a_short_silence_after_an_opening():
    mc = m.Machine(settings=m.MachineSettings(asr=True), online=True)
    mc.handle(m.SegmentQueued(1), 0.0)
    mc.handle(m.SpeechStarted(1.0), 1.0)  # barge-in: paused, capture open
    uid = mc.capture
    assert uid is not None and mc.state is m.State.PAUSED
    mc.handle(m.SpeechPaused(1.4), 1.5)
    mc.handle(m.AsrPartial(uid, "Wait.", audio_ms=1600.0, quick=True, turn_audio=0.9), 1.55)
    assert not finished(mc.handle(m.Tick(), 1.7))  # not the 0.25 s of a question to an idle device
    assert finished(mc.handle(m.Tick(), 2.11))  # the ordinary 0.7 s


def test_a_complete_looking_statement_waits_the_ordinary_silence_a_question_does_not():
    mc, uid = listening_capture()
    mc.handle(m.SpeechPaused(2.0), 2.1)
    mc.handle(m.AsrPartial(uid, "Tell me about the moon.", audio_ms=2100.0, quick=True), 2.15)
    assert not finished(mc.handle(m.Tick(), 2.3))  # often extended: "... and its phases"
    assert finished(mc.handle(m.Tick(), 2.71))
    question, uid1 = listening_capture()
    question.handle(m.SpeechPaused(2.0), 2.1)
    question.handle(m.AsrPartial(uid1, "How far away is the moon?", audio_ms=2100.0, quick=True), 2.15)
    assert finished(question.handle(m.Tick(), 2.26))
    anything, uid3 = listening_capture(eot_fast_questions_only=False)
    anything.handle(m.SpeechPaused(2.0), 2.1)
    anything.handle(m.AsrPartial(uid3, "Tell me about the moon.", audio_ms=2100.0, quick=True), 2.15)
    assert finished(anything.handle(m.Tick(), 2.26))


def test_a_short_command_outlasts_a_pause_between_two_sentences():
    """Live mode cut "Thanks." from "Thanks. So what is a vector, exactly?": espeak-ng pauses 300-340
    ms between sentences, longer than a question's 0.25 s."""
    short, uid = listening_capture()
    short.handle(m.SpeechPaused(2.0), 2.1)
    short.handle(m.AsrPartial(uid, "Thanks.", audio_ms=2100.0, quick=True), 2.15)
    assert not finished(short.handle(m.Tick(), 2.35))  # past the question's 0.25 s: still listening
    short.handle(m.SpeechResumed(2.34), 2.36)  # "So what is a vector, exactly?"
    assert short.capture == uid and not finished(short.handle(m.Tick(), 2.8))
    done, uid2 = listening_capture()
    done.handle(m.SpeechPaused(2.0), 2.1)
    done.handle(m.AsrPartial(uid2, "Okay, go back.", audio_ms=2100.0, quick=True), 2.15)
    assert not finished(done.handle(m.Tick(), 2.45))
    assert finished(done.handle(m.Tick(), 2.51))  # eot_command_silence_s = 0.5: still sooner than 0.7


def test_after_an_early_resume_the_capture_ends_at_the_first_complete_pause():
    """Once the reply plays again its echo is in the air: the backchannel's capture must not go on
    recording it for the ordinary silence (audio mode: "Uh-huh. Good sleep starts ..." became BRANCH)."""
    mc = m.Machine(settings=m.MachineSettings(asr=True), online=True)
    mc.handle(m.SegmentQueued(1), 0.0)
    mc.handle(m.SpeechStarted(1.0), 1.0)
    uid = mc.capture
    mc.handle(m.ControlReceived("resume"), 1.3)  # the engine resumed on a partial (early ABSORB)
    assert mc.state is m.State.SPEAKING and mc.capture == uid
    mc.handle(m.SpeechPaused(1.5), 1.6)
    mc.handle(m.AsrPartial(uid, "Uh-huh, got it.", audio_ms=1800.0, quick=True), 1.65)
    assert finished(mc.handle(m.Tick(), 1.76))


def test_a_question_is_known_by_its_mark_or_its_first_word():
    from icp.turn_end import is_question, is_short_command

    assert is_question("How far away is the moon?")
    assert is_question("who wrote Romito and Juliet.")  # read flatly, written with a full stop
    assert is_short_command("Stop.") and is_short_command("Okay, go back.") and not is_question("Stop.")
    assert not is_question("What?") and not is_short_command("What?")  # often the first word of a question
    assert not is_question("Tell me about the moon.") and not is_short_command("Tell me about the moon.")
    assert not is_short_command("")


def test_speech_after_an_interruptions_capture_ended_is_captured_not_dropped():
    """Live mode: "Wait, ... what is the crust?" with a pause after "Wait," longer than the turn's
    silence. The capture of "Wait," ended; the machine, paused and waiting for that final, ignored the
    next onset, and "what is the crust?" was never sent. It is now a new utterance over the paused
    reply, announced at once."""
    mc = speaking(asr=True, final_lead_s=0.45)
    cmds = mc.handle(m.SpeechStarted(1.0), 1.02)
    first = next(c.utterance_id for c in cmds if isinstance(c, m.StartCapture))
    mc.handle(m.SpeechPaused(1.4), 1.45)
    assert [c.utterance_id for c in mc.handle(m.Tick(audio_until=2.11), 2.11) if isinstance(c, m.FinishCapture)] == [first]
    assert mc.state is m.State.PAUSED and mc.capture is None
    cmds = mc.handle(m.SpeechStarted(2.3), 2.31)
    starts = [c for c in cmds if isinstance(c, m.StartCapture)]
    assert len(starts) == 1 and starts[0].utterance_id != first and starts[0].over_speech
    second = starts[0].utterance_id
    assert [(c.utterance_id, c.text, c.final) for c in cmds if isinstance(c, m.SendUtterance)] == [(second, "", False)]
    # the first one's final still goes out, and the new capture stays open
    out = mc.handle(m.AsrFinal(first, "Wait.", ()), 2.5)
    assert [(c.utterance_id, c.final) for c in out if isinstance(c, m.SendUtterance)] == [(first, True)]
    assert mc.capture == second and mc.state is m.State.PAUSED
    mc.handle(m.AsrPartial(second, "what is the crust", audio_ms=800.0), 2.9)
    mc.handle(m.SpeechPaused(3.2), 3.25)
    assert [c.utterance_id for c in mc.handle(m.Tick(audio_until=3.91), 3.91) if isinstance(c, m.FinishCapture)] == [second]
