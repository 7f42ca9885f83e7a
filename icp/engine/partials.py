"""Acting on partial utterances (issue 12): early ABSORB and speculative generation.

The device sends the whole hypothesis so far as a partial `utterance` long before the final (which
waits for the end-of-turn silence and the recogniser). Two things are decided from a partial:

- **Early ABSORB.** While interrupted, a partial the classifier calls ABSORB confidently enough
  (`early_absorb_confidence`; never under a CANCEL hint) resumes the paused reply at once
  (`Step.ABSORBED_EARLY`): a backchannel costs a short gap instead of the final's second or so. The
  utterance is *provisionally* absorbed: its final is still classified, without pausing; ABSORB then
  changes nothing, anything else pauses the device and is applied as if decided late
  (`Step.DECIDED_LATE`), from the heard cursor at that moment (the words played meanwhile were heard:
  the decision waits for the device's `paused` report, `Deadline.LATE_CURSOR`).
  A later partial of that utterance is classified too: anything but a confident ABSORB
  (`repause_confidence`) pauses again at once and the final is awaited as for any interruption.
- **Speculation.** A partial the classifier calls NEW (idle) or BRANCH/MODIFY (interrupted)
  confidently enough (`speculate_confidence`) starts that answer's LLM request at once, built exactly
  as applying the disposition would build it (on a copy of the session), while nothing is added to
  the conversation and nothing is sent to the device: its text waits in a `Speculation`. The final
  adopts it when its words (`normalise`) and its disposition are the same and the request it would
  make is the same (`core.same_request`); otherwise the speculation is cancelled and never seen.
- **Held first segment.** While waiting for the final, the speculation also synthesises its first
  segment (`speculate_audio`; cut as the reply's first segment would be, and only while nothing of
  the current reply is being synthesised), held back in `Speculation.held`. Adoption hands it to the
  pipeline as the reply's first segment (ready: sent in the final's own step; still synthesising:
  it is the reply's synthesis in flight), cut where it was cut (`_hand_over`); a cancelled
  speculation's held audio is discarded (`DiscardAudio`). A failed synthesis just drops it (the
  first segment is synthesised at adoption, as without it). Its id comes from the session's counter when the synthesis starts, so a cancelled speculation
  leaves a gap in the ids: the device only needs them rising, and its `prev` chain names the segment
  sent before, not "id - 1". Nothing can be sent while a speculation lives (interrupted or deciding:
  the pump is stopped; idle or listening: nothing is voiced), so every id sent before it is lower,
  and a BRANCH or MODIFY that adopts it discards the stopped reply's later ids before it is sent.

Partial classifications use request ids `<utterance>~p<n>` (never an utterance id); only the latest
partial's answer counts, and none once the utterance is decided.
"""

from __future__ import annotations

import copy

from icp import commands as C
from icp import events as E
from icp.classifier.text import content_tokens, tokens
from icp.dispositions import ClassifyRequest, Disposition, Hint
from icp.conversation import AssistantItem
from icp.engine.core import normalise
from icp.engine.settings import PartialRequest, PendingSegment, Speculation
from icp.engine.speech import AFFIRMATIVE, Speech
from icp.engine.table import Deadline, State, Step
from icp.messages.playback import Action, PlaybackEvent
from icp.segmenter import next_cut
from icp.words import split_words

S = State
D = Disposition
PARTIAL_MARK = "~p"  # in a partial's classify request id
SPECULATIVE = {True: (D.BRANCH, D.MODIFY), False: (D.NEW,)}  # by `speaking`: what starts an answer


def is_partial_request(request_id: str) -> bool:
    return PARTIAL_MARK in request_id


# Words that open an interruption as often as a backchannel: a partial of nothing else ("I", "Uh",
# "So") is too early to resume on (live mode: "I" of "I wait, what is magma?" was absorbed early).
# "go", "keep", "got" and "makes" are backchannel words to the rules only as the start of a phrase
# ("go on", "got it"); alone they as often open an interruption: tiny.en's first look at "Go back to
# the start." read "Go." ("see" is not one: "I see" is a backchannel and both words would be openings).
OPENINGS = frozenset({"i", "uh", "um", "er", "so", "and", "but", "well", "oh", "hey", "you",
                      "go", "keep", "got", "makes"})


def _only_openings(text: str) -> bool:
    words = content_tokens(tokens(text))
    return all(w in OPENINGS for w in words)


class Partials(Speech):
    # -- partials in --------------------------------------------------------------------------------
    def _on_partial(self, ev: E.UtterancePartial) -> None:
        if ev.utterance_id == self.provisional:
            # Already resumed on an earlier partial: the final decides, unless the words went on and
            # are no longer a backchannel (`_recheck_provisional`).
            if ev.hint is not None:
                self.utterance_hint = ev.hint
            self._recheck_provisional(ev)
            return
        spec = self.speculation
        if spec is not None and (spec.utterance, spec.key) != (ev.utterance_id, normalise(ev.text)):
            self._cancel_speculation()  # newer words: that answer was for something else
        super()._on_partial(ev)
        self._classify_partial(ev)

    def _classify_partial(self, ev: E.UtterancePartial) -> None:
        text, hint = ev.text.strip(), self.utterance_hint
        if not text or hint is Hint.CANCEL:
            return
        if self.state is S.INTERRUPTED and ev.utterance_id == self.utterance_id:
            speaking = True
            if not (self.settings.early_absorb or self.settings.speculate):
                return
        elif self.state in (S.IDLE, S.LISTENING):
            speaking = False
            if not self.settings.speculate or (self.awaiting_yes and AFFIRMATIVE.match(text)):
                return
        else:
            return
        if self._is_undo(text, speaking):
            return  # decided from the final's words alone (`Speech._on_final`)
        self._ask_partial(ev.utterance_id, text, speaking, hint)

    def _ask_partial(self, uid: str, text: str, speaking: bool, hint: Hint | None) -> None:
        """Classify a partial's words (request id `<utterance>~p<n>`), unless they are being already."""
        if self.partial is not None and (self.partial.utterance, self.partial.text) == (uid, text):
            return  # the same words are being (or were) classified
        self.partial_seq += 1
        request_id = f"{uid}{PARTIAL_MARK}{self.partial_seq}"
        self.partial = PartialRequest(request_id, uid, text, speaking)
        self._emit(C.Classify(request_id, ClassifyRequest(text, self._last_heard_sentence(), speaking, hint)))

    def _on_interrupt(self, ev: E.InterruptReported) -> None:
        if ev.utterance_id == self.provisional:  # a late or repeated report of the absorbed speech
            if ev.cursor is not None:
                self.conv.apply_cursor(ev.cursor.segment, ev.cursor.sample, self.settings.heard_threshold)
            return
        super()._on_interrupt(ev)

    # -- the classifier's answers ---------------------------------------------------------------
    def _on_classified(self, ev: E.Classified) -> None:
        if is_partial_request(ev.request_id):
            self._on_partial_classified(ev)
        elif self.late_id is not None and ev.request_id == self.late_id:
            self._on_late_classified(ev)
        elif self.state is not S.CLASSIFYING:
            self._ignore(ev, f"stale classification for {ev.request_id!r}")
        else:
            super()._on_classified(ev)

    def _on_classify_failed(self, ev: E.ClassifyFailed) -> None:
        if is_partial_request(ev.request_id):
            self._ignore(ev, f"partial not classified ({ev.error}); the final decides")
        elif self.late_id is not None and ev.request_id == self.late_id:
            self._ignore(ev, f"classifier failed ({ev.error}); the early ABSORB stands")
            self._late_absorb(ev.request_id, self.late_text, D.ABSORB, 0.0, "failed")
        else:
            super()._on_classify_failed(ev)

    def _recheck_provisional(self, ev: E.UtterancePartial) -> None:
        """A partial of the utterance resumed on an earlier one: the user is still talking. Live mode: a
        first look misread "Wait," as "All right." (ABSORB), and the reply then played over "Wait, what
        is the crust?" for 2.9 s until the final. New words are classified again; anything but an
        ABSORB at `repause_confidence` pauses again (`_on_partial_classified`)."""
        text = ev.text.strip()
        if text and self.state in (S.THINKING, S.SPEAKING) and self.utterance_hint is not Hint.CANCEL:
            self._ask_partial(ev.utterance_id, text, True, self.utterance_hint)

    def _on_partial_classified(self, ev: E.Classified) -> None:
        req = self.partial
        if req is None or ev.request_id != req.id:
            self._ignore(ev, f"stale partial classification for {ev.request_id!r}")
            return
        if req.utterance == self.provisional:
            d = self._decide(ev.disposition, None, True, req.text)
            if (d is not D.ABSORB and ev.confidence >= self.settings.repause_confidence
                    and self.state in (S.THINKING, S.SPEAKING)):
                self._repause(req)
            return
        if req.speaking and (self.state is not S.INTERRUPTED or self.utterance_id != req.utterance):
            self._ignore(ev, f"partial classification for {ev.request_id!r} after the interruption")
            return
        if not req.speaking and self.state not in (S.IDLE, S.LISTENING):
            self._ignore(ev, f"partial classification for {ev.request_id!r} after the utterance")
            return
        d = self._decide(ev.disposition, None, req.speaking, req.text)
        if (d is D.ABSORB and req.speaking and self.settings.early_absorb and not _only_openings(req.text)
                and ev.confidence >= self.settings.early_absorb_confidence and self.utterance_hint is not Hint.CANCEL):
            self._absorb_early(req)
        elif d in SPECULATIVE[req.speaking] and self.settings.speculate and ev.confidence >= self.settings.speculate_confidence:
            self._speculate(req, d)

    # -- early ABSORB ---------------------------------------------------------------------------
    def _absorb_early(self, req: PartialRequest) -> None:
        self._cancel_speculation()
        self.provisional = req.utterance
        self.deadlines.pop(Deadline.INTERRUPT, None)
        self._emit(C.DeviceControl(Action.RESUME, "ABSORB (partial)", D.ABSORB))
        self._step(Step.ABSORBED_EARLY if self.conv.playing_item() or self.ready else Step.ABSORBED_WAITING)

    def _repause(self, req: PartialRequest) -> None:
        """The early ABSORB was wrong and the user is still talking: pause now and wait for the final as
        for any interruption (its cursor comes with the device's `paused` report, before the final)."""
        self.provisional = None
        self._begin_interruption(E.UtterancePartial, req.utterance, self.utterance_hint, self.now)
        self._emit(C.DeviceControl(Action.PAUSE, "speech went on after an early ABSORB"))

    def _on_final(self, ev: E.UtteranceFinal) -> None:
        if self.late_decision is not None:
            self._apply_late_decision()  # the earlier utterance's decision first, with the cursor known
        self.partial = None  # the final's own classification decides from here
        if self.provisional is not None and ev.utterance_id == self.provisional:
            self._final_after_early_absorb(ev)
            return
        self.provisional = None
        spec = self.speculation
        if spec is not None and (spec.utterance, spec.key) != (ev.utterance_id, normalise(ev.text)):
            self._cancel_speculation()
        super()._on_final(ev)  # every way it decides goes through `_apply`, which adopts or cancels

    def _final_after_early_absorb(self, ev: E.UtteranceFinal) -> None:
        """The final of an utterance resumed on a partial: classified without pausing first."""
        uid, text, hint = ev.utterance_id, ev.text.strip(), ev.hint or self.utterance_hint
        self.provisional = None
        self.utterance_hint = None
        if self.state not in (S.THINKING, S.SPEAKING, S.IDLE):
            self._ignore(ev, "final of an early-absorbed utterance after another one began: the ABSORB stands")
            return
        if hint is Hint.CANCEL:
            self._decide_late(uid, text, D.CANCEL, D.CANCEL, 1.0, "hint")
        elif not text:
            self._late_absorb(uid, text, D.ABSORB, 1.0, "empty")
        else:
            self.late_id, self.late_text = uid, text
            self._emit(C.Classify(uid, ClassifyRequest(text, self._last_heard_sentence(), True, hint)))

    def _on_late_classified(self, ev: E.Classified) -> None:
        self.late_id = None
        d = self._decide(ev.disposition, None, True, self.late_text)
        if d is D.ABSORB:
            self._late_absorb(ev.request_id, self.late_text, ev.disposition, ev.confidence, ev.source)
        else:
            self._decide_late(ev.request_id, self.late_text, ev.disposition, d, ev.confidence, ev.source)

    def _apply_late_decision(self) -> None:
        """Apply the decision `_decide_late` held for the device's paused cursor (come, or waited for)."""
        pending, self.late_decision = self.late_decision, None
        self.deadlines.pop(Deadline.LATE_CURSOR, None)
        if pending is not None and self.state is S.INTERRUPTED:
            self._apply(*pending, self.now)

    def _on_playback_reported(self, ev: E.PlaybackReported) -> None:
        super()._on_playback_reported(ev)
        if self.late_decision is not None and ev.event is PlaybackEvent.PAUSED:
            self._apply_late_decision()

    def _late_absorb(self, uid: str, text: str, classified: Disposition, confidence: float, source: str) -> None:
        """The final confirms the early ABSORB: nothing more to do (no second resume, no gap)."""
        self.late_id = None
        self._emit(C.DispositionApplied(uid, text, classified, D.ABSORB, confidence, f"{source}, early"))

    def _decide_late(self, uid: str, text: str, classified: Disposition, d: Disposition, confidence: float,
                     source: str) -> None:
        """The final revises the early ABSORB: pause now and apply as if interrupted here."""
        if self.state in (S.THINKING, S.SPEAKING):
            # The words played since the early ABSORB were heard, and the cursor known here is the last
            # report's (a heartbeat: up to a second old): the context waits for the `paused` report.
            self._emit(C.DeviceControl(Action.PAUSE, f"{d.value} decided late"))
            self._step(Step.DECIDED_LATE)
            self.late_decision = (uid, text, classified, d, confidence, source)
            self.deadlines[Deadline.LATE_CURSOR] = self.now + self.settings.late_cursor_wait_s
        elif self.state is S.IDLE and d in (D.BRANCH, D.MODIFY):
            self._apply(uid, text, classified, d, confidence, source, self.now)  # the reply ended: answer it
        else:
            self._late_absorb(uid, text, classified, confidence, f"{source}, reply over")

    # -- speculation ----------------------------------------------------------------------------
    def _speculate(self, req: PartialRequest, d: Disposition) -> None:
        key = normalise(req.text)
        if self.speculation is not None:
            if (self.speculation.utterance, self.speculation.key) == (req.utterance, key):
                return
            self._cancel_speculation()
        messages = self._speculative_request(req, d)
        if messages is None:
            return
        spec = Speculation(f"g{req.id}", req.utterance, key, d.value, messages)
        self.speculation = spec
        self._emit(C.StartGeneration(spec.generation, messages, self.settings.max_tokens))

    def _speculative_request(self, req: PartialRequest, d: Disposition) -> tuple[dict[str, str], ...] | None:
        """The LLM request applying `d` to the partial's words would make, from a throwaway copy of
        the session: the same code builds it, and the real session is not touched."""
        shadow = copy.deepcopy(self)
        shadow._out, shadow.speculation, shadow.adopting, shadow.partial = [], None, None, None
        shadow._apply(req.utterance, req.text, d, d, 1.0, "speculation", self.now)
        starts = [c for c in shadow._out if isinstance(c, C.StartGeneration)]
        return starts[0].messages if len(starts) == 1 else None

    def _on_generation_text(self, ev: E.GenerationText) -> None:
        spec = self.speculation
        if spec is not None and ev.generation_id == spec.generation:
            spec.text += ev.text
            return
        super()._on_generation_text(ev)

    def _on_generation_finished(self, ev: E.GenerationFinished) -> None:
        spec = self.speculation
        if spec is not None and ev.generation_id == spec.generation:
            spec.finished = True
            return
        super()._on_generation_finished(ev)

    def _on_generation_failed(self, ev: E.GenerationFailed) -> None:
        spec = self.speculation
        if spec is not None and ev.generation_id == spec.generation:
            spec.failed = True
            return
        super()._on_generation_failed(ev)

    def _forget_partials(self) -> None:
        """The utterance in progress is gone (a restarted device, a listen timeout)."""
        self._cancel_speculation()
        self.partial, self.provisional, self.late_id, self.late_decision = None, None, None, None

    # -- the held first segment -----------------------------------------------------------------
    def _pump(self) -> None:
        super()._pump()
        self._synthesise_ahead()

    def _synthesise_ahead(self) -> None:
        """Synthesise the speculation's first segment once its text has one (`next_cut`, as `_segment`
        cuts an item's first segment), if nothing of the current reply is being synthesised."""
        spec = self.speculation
        if (spec is None or spec.held is not None or spec.held_failed or spec.failed or self.in_flight is not None
                or not self.settings.speculate_audio or self.state is S.OFFLINE):
            return
        cut = next_cut(spec.text, True, spec.finished, self.settings.segmenter)
        words = split_words(spec.text[:cut]) if cut is not None else []
        if not words:
            return
        spec.held = PendingSegment(self.next_segment, "", 0, " ".join(words))
        self.next_segment += 1
        self._emit(C.Synthesise(spec.held.id, spec.held.text))

    def _held(self, segment_id: int) -> PendingSegment | None:
        spec = self.speculation
        held = spec.held if spec is not None else None
        return held if held is not None and held.id == segment_id else None

    def _on_segment_synthesised(self, ev: E.SegmentSynthesised) -> None:
        held = self._held(ev.segment_id)
        if held is None:
            super()._on_segment_synthesised(ev)  # the reply's (or a dropped speculation's: discarded there)
        elif len(ev.words) != len(split_words(held.text)) or ev.samples <= 0:
            self._emit(C.DiscardAudio((ev.segment_id,)))
            self._held_failed(ev, "its word timings do not match its words")
        else:
            held.samples, held.sample_rate, held.words = ev.samples, ev.sample_rate, tuple(ev.words)

    def _on_synthesis_failed(self, ev: E.SynthesisFailed) -> None:
        if self._held(ev.segment_id) is None:
            super()._on_synthesis_failed(ev)
        else:
            self._held_failed(ev, ev.error)

    def _held_failed(self, ev: E.SegmentSynthesised | E.SynthesisFailed, why: str) -> None:
        """Drop the held segment; the adopted reply's first segment is synthesised as usual."""
        assert self.speculation is not None
        self.speculation.held, self.speculation.held_failed = None, True
        self._ignore(ev, f"speculative segment {ev.segment_id} could not be synthesised ({why}); "
                     "it will be synthesised at adoption")

    def _adopt(self, item: AssistantItem, messages: tuple[dict[str, str], ...]) -> bool:
        spec = self.adopting
        if not super()._adopt(item, messages):
            return False
        if spec is not None and spec.held is not None:
            self._hand_over(spec, spec.held, item)
        return True

    def _hand_over(self, spec: Speculation, held: PendingSegment, item: AssistantItem) -> None:
        """Make the held segment the adopted reply's first, in the stage it has reached.

        Its cut is kept even where `_segment`, seeing more text now, cut elsewhere (a 10-word cut
        that is now a whole sentence; a short sentence cut once the text is complete): it is the cut
        the reply would have had streaming, any cut at a word boundary is a valid one, and dropping
        it would lose the audio in the common case. So the item is re-cut after the held words (the
        ids `_segment` just took are left unused: gaps, like those of any discarded segment).
        Anything else (other words, a bridge, another reply's audio queued or in flight) keeps the
        ordinary path; `_apply` then discards the held audio."""
        n = len(split_words(held.text))
        if (item.bridge_words or item.words[:n] != split_words(held.text) or self.in_flight is not None
                or self.ready or any(s.item != item.id for s in self.to_synth)
                or (self.conv.segments and self.conv.segments[-1].id > held.id)):
            return
        spec.held = None
        self.to_synth = []
        item.segmented_words, item.segmented_chars = n, self.conv.word_offset(item, n)
        held.item = item.id
        if held.samples > 0:
            self.ready.append(held)
        else:
            self.in_flight = held  # `_on_segment_synthesised` takes it as the reply's own
        self._segment(item)

    def _apply(self, utterance_id: str, text: str, classified: Disposition, applied: Disposition | None,
               confidence: float, source: str, now: float) -> None:
        spec = self.speculation  # adopted (its held segment handed over) or cancelled by the decision
        super()._apply(utterance_id, text, classified, applied, confidence, source, now)
        if spec is not None:
            self._discard_held(spec)

    def _cancel_speculation(self) -> None:
        spec = self.speculation
        super()._cancel_speculation()
        if spec is not None:
            self._discard_held(spec)

    def _discard_held(self, spec: Speculation) -> None:
        """A speculation's held audio that was not handed over is never sent. One still being
        synthesised is discarded again when it arrives (`Pipeline._on_segment_synthesised`)."""
        if spec.held is not None:
            self._emit(C.DiscardAudio((spec.held.id,)))
            spec.held = None
