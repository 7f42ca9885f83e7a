"""The segment pipeline: reply text -> segments -> synthesis -> sent within the lookahead -> heard;
and lost-audio recovery, which re-sends from the heard cursor when audio never reached the ear.

Why one module: flow control, stopping a voice and recovering lost audio all edit the same three
queues (`to_synth`, `in_flight`, `ready`) and the `prev` chain; keeping them together keeps the
invariant visible (a segment is in exactly one place; once sent it is in `conv.segments`).
"""

from __future__ import annotations

from icp import commands as C
from icp import events as E
from icp.conversation import AssistantItem, SentSegment, ThreadStatus
from icp.dispositions import Disposition
from icp.engine.core import SessionCore
from icp.engine.settings import AutoResume, Generation, PendingSegment
from icp.engine.table import Deadline, State, Step
from icp.messages.playback import Action, PlaybackEvent, Segment
from icp.segmenter import next_cut
from icp.words import split_words

S = State


class Pipeline(SessionCore):
    # -- voicing --------------------------------------------------------------------------------
    def _voice(self, item: AssistantItem) -> None:
        self.voice_item = item.id

    def _stop_voice(self, hold: bool, reason: str, disposition: Disposition | None = None) -> AssistantItem | None:
        """Stop the audio of the current reply at the heard cursor; hold its thread or not. Returns
        the item that was being voiced, if any (an undoable CANCEL/MODIFY keeps it)."""
        item_id = self.voice_item
        self._flush(reason, disposition)
        dropped = self.conv.drop_unplayed()
        discard = dropped + [s.id for s in self.ready] + [s.id for s in self.to_synth]
        if self.in_flight is not None:
            discard.append(self.in_flight.id)
        self.to_synth, self.ready, self.in_flight = [], [], None
        self.voice_item = None
        if discard:
            self._emit(C.DiscardAudio(tuple(discard)))
        if item_id is None:
            return None
        item = self.conv.item(item_id)
        if item.heard < len(item.words) or not item.complete:
            item.cut = True
        thread = self.conv.threads[item.thread]
        if hold:
            thread.status = ThreadStatus.HELD
            thread.held_item = item.id
            thread.resume_word = self.strategy.resume_word(self.conv, item)
            gen = self._generation_for(item.id)
            if gen is not None and len(item.words) - thread.resume_word >= self.settings.background_max_words:
                self._cancel_generation(item.id)
        else:
            self._cancel_generation(item.id)
        return item

    def _flush(self, reason: str, disposition: Disposition | None = None) -> None:
        self._emit(C.DeviceControl(Action.FLUSH, reason, disposition))
        self.last_sent = 0

    def _segment(self, item: AssistantItem) -> None:
        while True:
            rest = item.text[item.segmented_chars :]
            first = item.segmented_words == 0
            cut = next_cut(rest, first, item.complete, self.settings.segmenter)
            if cut is None:
                return
            chunk = rest[:cut]
            words = split_words(chunk)
            item.segmented_chars += cut
            if not words:
                continue
            bridge = max(0, min(item.bridge_words - item.segmented_words, len(words)))
            self.to_synth.append(PendingSegment(self.next_segment, item.id, item.segmented_words, " ".join(words), bridge))
            self.next_segment += 1
            item.segmented_words += len(words)

    def _pump(self) -> None:
        """Synthesise and send within the lookahead of the heard cursor."""
        if self.state is S.OFFLINE or self.state in (S.INTERRUPTED, S.CLASSIFYING):
            return
        ahead = self.conv.unheard_ms() + sum(s.samples * 1000.0 / s.sample_rate for s in self.ready)
        if self.in_flight is None and self.to_synth and ahead < self.settings.lookahead_ms:
            self.in_flight = self.to_synth.pop(0)
            self._emit(C.Synthesise(self.in_flight.id, self.in_flight.text))
        while self.ready and self.conv.unheard_ms() < self.settings.lookahead_ms:
            if self.last_sent is None:
                self._flush("SYNC")
            seg = self.ready.pop(0)
            item = self.conv.item(seg.item)
            self.conv.segments.append(
                SentSegment(seg.id, seg.item, seg.first_word, seg.words, seg.samples, seg.sample_rate,
                            sent_at=self.now)
            )
            self._emit(C.SendSegment(Segment(seg.id, item.id, item.thread, seg.text, seg.words, seg.bridge_words,
                                             seg.sample_rate, seg.samples, prev=self.last_sent or 0)))
            self.last_sent = seg.id
            if self.state is S.THINKING:
                self._step(Step.AUDIO_SENT)
        self._maybe_reply_done()

    def _maybe_reply_done(self) -> None:
        if self.state not in (S.SPEAKING, S.THINKING) or self.voice_item is None:
            return
        item = self.conv.item(self.voice_item)
        if not item.complete or item.text[item.segmented_chars :].strip():
            return
        if self.to_synth or self.ready or self.in_flight or self.conv.playing_item() is not None:
            return
        self.voice_item = None
        if item.resumes is not None and item.truncated:
            # A resumed reply whose generation had been stopped (a CANCEL/MODIFY undone, a held
            # thread's background limit): all of it is heard now, so the model goes on from there.
            item.truncated = False
            more = self.conv.add_item(item.thread)
            self._voice(more)
            self._new_generation(more)
            self._step(Step.REPLY_DONE)
            self._step(Step.REPLY)
            self._persist()
            return
        thread = self.conv.threads[item.thread]
        parent = self.conv.threads.get(thread.parent) if thread.parent else None
        if parent is not None and parent.status is ThreadStatus.HELD:
            thread.status = ThreadStatus.DONE
            self.active_thread = parent.id
            self._step(Step.REPLY_DONE)
            if self.settings.auto_resume is AutoResume.AUTO and self.strategy.auto_resume:
                self.deadlines[Deadline.AUTO_RESUME] = self.now + self.settings.auto_resume_delay_s
            elif self.settings.auto_resume is AutoResume.ASK:
                self.awaiting_yes = True
                ask = self.conv.add_item(parent.id, self.settings.ask_phrase)
                ask.complete = True
                self._voice(ask)
                self._segment(ask)
                self._step(Step.REPLY)
        else:
            self._step(Step.REPLY_DONE)
        self._emit(C.DeviceControl(Action.LISTEN, "reply done"))
        self._persist()

    # -- generation -------------------------------------------------------------------------------
    def _running(self, ev: E.GenerationText | E.GenerationFinished | E.GenerationFailed) -> Generation | None:
        """The event's generation, or None (and an `Ignored`) when it is no longer running."""
        gen = self.generations.get(ev.generation_id)
        if gen is None:
            self._ignore(ev, f"generation {ev.generation_id!r} is not running")
        return gen

    def _on_generation_text(self, ev: E.GenerationText) -> None:
        gen = self._running(ev)
        if gen is None:
            return
        item = self.conv.item(gen.item)
        item.text += ev.text
        if item.id == self.voice_item:
            self._segment(item)
            self._pump()
        else:
            thread = self.conv.threads[item.thread]
            if thread.status is ThreadStatus.HELD and thread.held_item == item.id:
                if len(item.words) - thread.resume_word >= self.settings.background_max_words:
                    self._cancel_generation(item.id)

    def _on_generation_finished(self, ev: E.GenerationFinished) -> None:
        gen = self._running(ev)
        if gen is None:
            return
        del self.generations[gen.id]
        item = self.conv.item(gen.item)
        item.complete = True
        if item.id == self.voice_item:
            if not item.words:
                item.text = self.settings.failure_phrase
            self._segment(item)
        self._persist()

    def _on_generation_failed(self, ev: E.GenerationFailed) -> None:
        gen = self._running(ev)
        if gen is None:
            return
        del self.generations[gen.id]
        item = self.conv.item(gen.item)
        item.complete = True
        if item.id == self.voice_item and not item.words:
            item.text = self.settings.failure_phrase
        if item.id == self.voice_item:
            self._segment(item)

    # -- synthesis ------------------------------------------------------------------------------
    def _on_segment_synthesised(self, ev: E.SegmentSynthesised) -> None:
        seg = self.in_flight
        if seg is None or seg.id != ev.segment_id:
            self._ignore(ev, f"segment {ev.segment_id} is not being synthesised")
            self._emit(C.DiscardAudio((ev.segment_id,)))
            return
        if len(ev.words) != len(split_words(seg.text)) or ev.samples <= 0:
            self._emit(C.DiscardAudio((ev.segment_id,)))
            self._synthesis_failed(ev, "its word timings do not match its words")
            return
        self.in_flight = None
        seg.samples, seg.sample_rate, seg.words = ev.samples, ev.sample_rate, tuple(ev.words)
        self.ready.append(seg)

    def _on_synthesis_failed(self, ev: E.SynthesisFailed) -> None:
        if self.in_flight is None or self.in_flight.id != ev.segment_id:
            self._ignore(ev, f"segment {ev.segment_id} is not being synthesised")
            return
        self._synthesis_failed(ev, ev.error)

    def _synthesis_failed(self, ev: E.Event, why: str) -> None:
        """Try once more; then the reply stops before this segment. Its words are never skipped over
        (the heard timeline is a prefix: a later segment heard must not imply unspoken words heard)."""
        seg = self.in_flight
        assert seg is not None
        self.in_flight = None
        if seg.attempts < 1:
            seg.attempts += 1
            self.to_synth.insert(0, seg)
            self._ignore(ev, f"segment {seg.id} could not be synthesised ({why}); trying again")
            return
        self._ignore(ev, f"segment {seg.id} could not be synthesised ({why}); the reply stops before it")
        item = self.conv.item(seg.item)
        later = [s.id for s in self.to_synth if s.item == item.id]
        self.to_synth = [s for s in self.to_synth if s.item != item.id]
        if later:
            self._emit(C.DiscardAudio(tuple(later)))
        self._cancel_generation(item.id, truncate=False)
        item.cut = True
        item.segmented_chars = len(item.text)  # nothing more of it will be voiced

    # -- playback and lost audio ------------------------------------------------------------------
    def _on_playback_reported(self, ev: E.PlaybackReported) -> None:
        # A `flushed` report needs nothing more: the engine dropped what it flushed when it asked.
        if ev.cursor is not None:
            self.conv.apply_cursor(ev.cursor.segment, ev.cursor.sample, self.settings.heard_threshold)
        if ev.queued_ms == 0 and ev.event in (PlaybackEvent.IDLE, PlaybackEvent.HEARTBEAT, PlaybackEvent.FLUSHED):
            # Only a current report counts: one whose cursor is behind what is already known is stale.
            started = [s for s in self.conv.segments if s.heard_samples > 0]
            if not started or (ev.cursor is not None and ev.cursor.segment >= started[-1].id):
                self._recover_lost_audio()
        elif ev.queued_ms:
            self.deadlines.pop(Deadline.LOST_AUDIO, None)

    def _recover_lost_audio(self) -> None:
        """The device ran dry, yet audio sent long enough ago was never played: it was lost (a dropped
        connection, a gap, a segment whose last chunks never came). Flush whatever may still be in
        flight, and re-synthesise the reply from its first word not fully heard.

        Unplayed audio sent too recently to call lost may still be on its way; a device that ran dry
        reports nothing more (no heartbeats once idle), so `Deadline.LOST_AUDIO` looks again when
        that audio is old enough, unless a report in between says the device has audio queued.
        """
        unplayed = [s for s in self.conv.segments if not s.dropped and s.heard_samples < s.samples]
        if not unplayed:
            return
        if self.now - unplayed[0].sent_at < self.settings.lost_audio_s:
            self.deadlines[Deadline.LOST_AUDIO] = unplayed[0].sent_at + self.settings.lost_audio_s
            return
        self.deadlines.pop(Deadline.LOST_AUDIO, None)
        self._ignore("PlaybackReported", f"segments {[s.id for s in unplayed]} never played: "
                     "re-sending from the heard cursor")
        self._resend_from_heard(unplayed)

    def _on_segment_not_sent(self, ev: E.SegmentNotSent) -> None:
        """The I/O layer could not send a segment: the device will never play it, nor (its `prev`
        chain broken) anything after it. Recover at once, as for lost audio, without waiting for the
        device to go quiet."""
        sent = next((s for s in self.conv.segments if s.id == ev.segment_id), None)
        if sent is None or sent.dropped:
            self._ignore(ev, f"segment {ev.segment_id} is not awaiting playback")
            return
        unplayed = [s for s in self.conv.segments if not s.dropped and s.heard_samples < s.samples]
        self._ignore(ev, f"segment {ev.segment_id} was not sent ({ev.error}): re-sending from the heard cursor")
        self._resend_from_heard(unplayed)

    def _resend_from_heard(self, unplayed: list[SentSegment]) -> None:
        self._flush("RESEND")
        for seg in unplayed:
            seg.dropped = True
        for item_id in {seg.item for seg in unplayed} - {self.voice_item}:
            self.conv.item(item_id).cut = True
        if self.voice_item is None:
            return
        item = self.conv.item(self.voice_item)
        stale = [s.id for s in self.ready + self.to_synth]
        if self.in_flight is not None:
            stale.append(self.in_flight.id)
        self.ready, self.to_synth, self.in_flight = [], [], None
        if stale:
            self._emit(C.DiscardAudio(tuple(stale)))
        word = self.conv.resume_point(item)
        item.segmented_words = word
        item.segmented_chars = self.conv.word_offset(item, word)
        self._segment(item)
