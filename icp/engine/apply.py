"""Dispositions: what an utterance does to the conversation once it is decided.

`_apply` maps what the classifier (or a hint, or a timeout) said to what fits the moment, through the
strategy policy; one handler per disposition then carries it out. A disposition that stops or resumes
the device's audio says so in the `control` message's `disposition` field.
"""

from __future__ import annotations

from collections.abc import Callable

from icp import commands as C
from icp.classifier import is_bare_stop
from icp.conversation import AssistantItem, Thread, ThreadStatus
from icp.dispositions import Disposition
from icp.engine.core import normalise
from icp.engine.pipeline import Pipeline
from icp.engine.settings import Undo
from icp.engine.table import Deadline, State, Step
from icp.messages.playback import Action
from icp.words import split_words

S = State
D = Disposition
# A disposition that does not fit the moment is mapped to the nearest one that does.
WHILE_SPEAKING = {D.RESUME: D.ABSORB, D.DROP: D.CANCEL, D.NEW: D.CANCEL}
WHILE_IDLE = {D.BRANCH: D.NEW, D.MODIFY: D.NEW, D.ABSORB: D.NEW}


class Apply(Pipeline):
    def _apply(self, utterance_id: str, text: str, classified: Disposition, applied: Disposition | None,
               confidence: float, source: str, now: float) -> None:
        speaking = self.classify_speaking if self.state is S.CLASSIFYING else self.state is S.INTERRUPTED
        self.classify_id = None
        self.utterance_hint = None
        self.awaiting_yes = False
        self.partial = None  # the utterance is decided: a partial's answer still on its way is stale
        d = self._decide(classified, applied, speaking, text)
        if d in (D.BRANCH, D.NEW, D.DROP):
            self._close_undo()  # the user moved on: what was cancelled is gone (see `Undo`)
        self._emit(C.DispositionApplied(utterance_id, text, classified, d, confidence, source))
        spec, self.speculation = self.speculation, None
        if spec is not None and (spec.utterance, spec.key, spec.disposition) == (utterance_id, normalise(text), d.value):
            self.adopting = spec  # `_new_generation` reuses it (or cancels it if the request differs)
        elif spec is not None:
            self._emit(C.CancelGeneration(spec.generation))
        DISPOSITIONS[d](self, text)
        if self.adopting is not None:  # the disposition started no reply after all
            self._emit(C.CancelGeneration(self.adopting.generation))
            self.adopting = None
        self._persist()

    def _decide(self, classified: Disposition, applied: Disposition | None, speaking: bool, text: str) -> Disposition:
        """What is done: the strategy's mapping of what was said, fitted to the moment (pure; the
        speculation asks it too, so that a partial's disposition is compared like for like)."""
        d = applied or self.strategy.apply(classified, speaking)
        undoing = d is D.RESUME and self.undo is not None  # "go back" undoes even over a reply
        if not undoing:
            d = WHILE_SPEAKING.get(d, d) if speaking else WHILE_IDLE.get(d, d)
        if not speaking and d is D.CANCEL:
            d = D.DROP if is_bare_stop(text) else D.NEW
        if d is D.RESUME and not undoing and self.conv.nearest_held(self.active_thread) is None:
            d = D.NEW
        return d

    # -- undo -------------------------------------------------------------------------------------
    def _undo_allowed(self) -> bool:
        return self.settings.undo_window_s > 0 and self.strategy.undo

    def _open_undo(self, disposition: Disposition, item: AssistantItem | None) -> None:
        """Keep `item` resumable from its first word not fully heard. Its generation was stopped all
        the same (a stop stops spending): an undone reply that the model had not finished goes on
        from what was heard once its generated rest has been heard (`Pipeline._maybe_reply_done`)."""
        if item is not None and self._undo_allowed():
            self.undo = Undo(disposition.value, item.thread, item.id, self.strategy.resume_word(self.conv, item))

    def _close_undo(self) -> None:
        """The undo window closed: what was cancelled is gone, as if the undo had never been kept."""
        self.undo = None
        self.deadlines.pop(Deadline.UNDO, None)

    def _do_absorb(self, text: str) -> None:
        self._emit(C.DeviceControl(Action.RESUME, "ABSORB", D.ABSORB))
        self._step(Step.ABSORBED_PLAYING if self.conv.playing_item() or self.ready else Step.ABSORBED_WAITING)

    def _do_branch(self, text: str) -> None:
        parent_id = self.active_thread
        self._stop_voice(hold=True, reason="BRANCH", disposition=D.BRANCH)
        child = self.conv.new_thread(parent_id)
        self.active_thread = child.id
        self._start_reply(child.id, text)

    def _do_modify(self, text: str) -> None:
        thread = self.active_thread or self.conv.new_thread(None).id
        self._close_undo()
        stopped = self._stop_voice(hold=False, reason="MODIFY", disposition=D.MODIFY)
        self._cancel_all_for_thread(thread)
        self._open_undo(D.MODIFY, stopped)
        self.active_thread = thread
        self._start_reply(thread, text)

    def _do_cancel(self, text: str) -> None:
        self._close_undo()
        if self.active_thread:
            stopped = self._stop_voice(hold=False, reason="CANCEL", disposition=D.CANCEL)
            self._cancel_all_for_thread(self.active_thread)
            self.conv.threads[self.active_thread].status = ThreadStatus.CANCELLED
            self._open_undo(D.CANCEL, stopped)
        if is_bare_stop(text):
            self.active_thread = None
            self._step(Step.STOPPED)
        else:
            thread = self.conv.new_thread(None)
            self.active_thread = thread.id
            self._start_reply(thread.id, text)

    def _do_new(self, text: str) -> None:
        if self.active_thread and self.conv.threads[self.active_thread].status is ThreadStatus.ACTIVE:
            self.conv.threads[self.active_thread].status = ThreadStatus.DONE
        thread = self.conv.new_thread(None)
        self.active_thread = thread.id
        self._start_reply(thread.id, text)

    def _do_drop(self, text: str) -> None:
        for thread in self.conv.held_threads():
            thread.status = ThreadStatus.CANCELLED
            self._cancel_all_for_thread(thread.id)
        self._step(Step.STOPPED)

    def _do_resume(self, text: str) -> None:
        self.deadlines.pop(Deadline.AUTO_RESUME, None)
        undo = self.undo
        if undo is not None:
            # Undo a CANCEL/MODIFY: what was said since (the answer to the misreading) stays in the
            # context as heard; the undone reply resumes exactly as a held one would.
            self.undo = None
            self.deadlines.pop(Deadline.UNDO, None)
            if self.voice_item is not None:
                self._stop_voice(hold=False, reason="UNDO", disposition=D.CANCEL)
            return self._resume(self.conv.threads[undo.thread], self.conv.item(undo.item), undo.word)
        thread = self.conv.nearest_held(self.active_thread)
        if thread is None or thread.held_item is None:
            return self._do_new(text)
        self._resume(thread, self.conv.item(thread.held_item), thread.resume_word)

    def _resume(self, thread: Thread, held: AssistantItem, word: int) -> None:
        """Bridge phrase + `held`'s text from `word` (its first word not fully heard), in `thread`."""
        # Threads nested under the one resumed are finished.
        for t in self.conv.threads.values():
            if t.status is ThreadStatus.ACTIVE and t.id != thread.id:
                t.status = ThreadStatus.DONE
        remainder = held.text_from_word(word)
        thread.status = ThreadStatus.ACTIVE
        self.active_thread = thread.id
        gen = self._generation_for(held.id)
        if not remainder.strip() and gen is None:
            # Nothing generated is left unheard: let the model continue from what was heard.
            item = self.conv.add_item(thread.id)
            self._voice(item)
            self._new_generation(item)
            self._step(Step.REPLY)
            return
        bridge = self.settings.bridge.strip()
        item = self.conv.add_item(thread.id, f"{bridge} {remainder}" if bridge else remainder,
                                  bridge_words=len(split_words(bridge)), resumes=held.id)
        item.complete = gen is None
        item.truncated = gen is None and held.truncated  # the model had more to say: see `_maybe_reply_done`
        if gen is not None:
            gen.item = item.id  # the parent's generation goes on into the resumed item
        self._emit(C.ResumePlanned(thread.id, held.id, word, item.id))
        self._voice(item)
        self._segment(item)
        self._step(Step.REPLY)

    def _start_reply(self, thread: str, text: str) -> None:
        self.conv.add_user_turn(thread, text)
        item = self.conv.add_item(thread)
        self._voice(item)
        self._new_generation(item)
        self._step(Step.REPLY)


DISPOSITIONS: dict[Disposition, Callable[[Apply, str], None]] = {
    D.ABSORB: Apply._do_absorb, D.BRANCH: Apply._do_branch, D.MODIFY: Apply._do_modify, D.CANCEL: Apply._do_cancel,
    D.NEW: Apply._do_new, D.DROP: Apply._do_drop, D.RESUME: Apply._do_resume,
}
