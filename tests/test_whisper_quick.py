"""The quick (short-context) Whisper pass: its words, its partial cadence, and the worker's `quick` op.

Real tiny.en and the user's synthesised voice (piper joe); the repetition cutter on its own first.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from device import machine as m
from device.asr.base import Partial
from device.asr.repeats import cut_repeats
from device.asr.whisper_asr import WhisperASR, WhisperSettings
from device.recognizer import AsrWorker
from icp.classifier.cues import is_backchannel
from evaluation.hearing import normalize
from tests.audio_fixtures import frames, noise, silence


@pytest.mark.parametrize("text, sound_s, want", [
    ("Stop. Stop.", 0.5, "Stop."),
    ("Yeah yeah yeah", 0.3, "Yeah"),
    ("What causes the tides? What causes", 1.5, "What causes the tides?"),
    ("what caused what caused what", 0.5, "what caused"),
    ("Hold on. What do you mean? Hold on. What do you", 1.6, "Hold on. What do you mean?"),
    ("Okay? OK. Ok...", 0.5, "Okay?"),
    ("Wait, what's that? What is the", 1.2, "Wait, what's that?"),
    # speech that only looks repetitive stays
    ("Right, right.", 0.9, "Right, right."),
    ("no, no, no", 1.0, "no, no, no"),
    ("I think I", 0.6, "I think I"),
    ("Tell me, tell me more", 1.5, "Tell me, tell me more"),
    ("Can you set a timer for 10 minutes?", 1.9, "Can you set a timer for 10 minutes?"),
])
def test_cut_repeats(text: str, sound_s: float, want: str) -> None:
    assert cut_repeats(text, sound_s) == want


@pytest.fixture(scope="module")
def voice():
    from evaluation.harness.voice import synthesize_user

    return lambda text: synthesize_user(text, 16000)


@pytest.fixture(scope="module")
def whisper() -> WhisperASR:
    return WhisperASR()


@pytest.mark.parametrize("text", ["What causes the tides?", "Hold on, what do you mean?", "Stop."])
def test_quick_transcribes_a_whole_utterance_without_repeating_itself(whisper, voice, text) -> None:
    pcm = voice(text)
    whisper.start()
    whisper.feed(pcm, partials=False)
    t0 = time.perf_counter()
    p = whisper.quick()
    took_ms = (time.perf_counter() - t0) * 1000
    whisper.finish()
    assert isinstance(p, Partial) and p.audio_ms == pytest.approx(len(pcm) / 16)
    assert normalize(p.text) == normalize(text), p.text
    assert took_ms < 1000  # ~20-150 ms on two cores; generous for a loaded test machine


@pytest.mark.parametrize("text", ["Mm hmm.", "Mhm.", "Uh huh."])
def test_a_barge_in_hears_a_hum_as_a_hum(whisper, voice, text) -> None:
    """Over the agent's speech the prompt makes tiny.en write a hum as one (unprompted: "And then,
    then." / "Nam, Nam, Nam."), in the final pass and in the quick pass at 0.3 s; the same audio
    outside a barge-in is transcribed as before (no prompt)."""
    pcm = voice(text)
    first = int(np.flatnonzero(np.abs(pcm.astype(np.int32)) >= 64)[0])
    whisper.start(over_speech=True)
    whisper.feed(pcm[:first + 4800], partials=False)
    quick = whisper.quick().text
    # the rest as a mic delivers it, with the room's faint noise, and the silence that ends the turn
    tail = pcm[first + 4800:].astype(np.int32) + noise(len(pcm[first + 4800:]) * 1000 // 16000 + 1, 40)[
        : len(pcm) - first - 4800]
    for chunk in frames(np.concatenate([tail.astype(np.int16), noise(800, 40)]), 320):
        whisper.feed(chunk, partials=False)
    final = whisper.finish().text
    # a hum, as the classifier's backchannel test reads it (it also takes "" for one: not here)
    assert normalize(quick) and is_backchannel(quick), quick
    assert normalize(final) and is_backchannel(final), final


@pytest.mark.parametrize("text", ["No, stop there.", "Wait, what's that?", "Sorry, can I ask something?"])
def test_a_barge_in_prompt_leaves_words_alone(whisper, voice, text) -> None:
    pcm = voice(text)
    whisper.start(over_speech=True)
    whisper.feed(pcm, partials=False)
    quick = whisper.quick().text
    final = whisper.finish().text
    assert normalize(quick) == normalize(text), quick
    assert normalize(final) == normalize(text), final


def test_quick_on_a_short_prefix_and_on_silence(whisper, voice) -> None:
    pcm = voice("Wait, what's that?")
    first = int(np.flatnonzero(np.abs(pcm.astype(np.int32)) >= 64)[0])
    whisper.start()
    whisper.feed(pcm[:first + 4800], partials=False)  # 0.3 s of sound
    words = normalize(whisper.quick().text)
    whisper.finish()
    assert words and words[0] == "wait" and len(words) <= 2, words
    whisper.start()
    with pytest.raises(Exception):
        WhisperASR().quick()  # not started
    whisper.feed(silence(800))
    assert whisper.quick() == Partial(text="", audio_ms=800)  # no "You" from digital silence
    whisper.finish()


def test_quick_partials_start_quick_first_s_after_the_first_sound(whisper, voice) -> None:
    pcm = np.concatenate([silence(200), voice("Tell me about the moon and its phases please.")])
    sound_ms = np.flatnonzero(np.abs(pcm.astype(np.int32)) >= 64)[0] / 16
    whisper.start()
    partials: list[Partial] = []
    for f in frames(pcm, 1280):  # 80 ms frames, as from the mic
        partials += whisper.feed(f)
    whisper.finish()
    assert partials, "no quick partials"
    first_ms = whisper.settings.quick_first_s * 1000
    assert sound_ms + first_ms <= partials[0].audio_ms <= sound_ms + first_ms + 80 + 1
    assert len(partials) >= 3  # a fresh hypothesis every ~quick_interval_s, not once a second
    assert [p.audio_ms for p in partials] == sorted(p.audio_ms for p in partials)
    assert normalize(partials[0].text)[:1] == ["tell"]  # whole hypotheses from the start
    assert normalize(partials[-1].text)[:4] == ["tell", "me", "about", "the"]


@pytest.mark.slow
def test_without_quick_partials_the_baseline_cadence_is_one_full_pass_a_second(voice) -> None:
    asr = WhisperASR(WhisperSettings(quick_partials=False))
    pcm = voice("Tell me about the moon and its phases please.")
    asr.start()
    partials: list[Partial] = []
    for f in frames(pcm, 1280):
        partials += asr.feed(f)
    asr.finish()
    assert partials and partials[0].audio_ms >= 1000


def _wait_for(worker: AsrWorker, pred, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ev in list(worker.results):
            if pred(ev):
                return ev
        time.sleep(0.01)
    return None


def test_worker_quick_answers_for_a_live_capture_and_not_for_a_cancelled_one(whisper, voice) -> None:
    worker = AsrWorker(lambda: whisper)
    worker.start()
    try:
        assert worker.ready.wait(30) and worker.error is None
        pcm = voice("What causes the tides?")
        worker.begin("u1")
        for f in frames(pcm, 1280):
            worker.feed("u1", f)
        worker.quick("u1")
        ev = _wait_for(worker, lambda e: isinstance(e, m.AsrPartial) and e.quick)
        assert ev is not None and ev.utterance_id == "u1"
        assert normalize(ev.text) == normalize("What causes the tides?"), ev.text
        assert ev.audio_ms == pytest.approx(len(pcm) / 16)
        regular = [e for e in worker.results if isinstance(e, m.AsrPartial) and not e.quick]
        assert all(0 < e.audio_ms <= ev.audio_ms for e in regular)  # regular partials carry audio_ms too
        worker.finish("u1")
        assert _wait_for(worker, lambda e: isinstance(e, m.AsrFinal)) is not None

        worker.results.clear()
        worker.begin("u2")
        worker.feed("u2", pcm)
        worker.cancel("u2")
        worker.quick("u2")
        worker.begin("u3")  # a marker: once u3's quick answers, u2's would have too
        worker.feed("u3", silence(300))
        worker.quick("u3")
        ev = _wait_for(worker, lambda e: isinstance(e, m.AsrPartial) and e.quick)
        assert ev is not None and ev.utterance_id == "u3" and ev.text == ""
        assert not [e for e in worker.results if getattr(e, "utterance_id", None) == "u2"]
    finally:
        worker.stop()


class _StreamingOnly:
    """A backend without a quick pass (as vosk): it streams partials as it goes."""
    backend, language = "stream", "en"

    def start(self) -> None:
        self.n = 0

    def feed(self, pcm):
        self.n += len(pcm)
        return [Partial(text=f"word{self.n // 1600}", audio_ms=self.n / 16)]

    def finish(self):
        raise AssertionError("not used")


def test_worker_quick_on_a_backend_without_quick_answers_with_its_latest_partial() -> None:
    worker = AsrWorker(_StreamingOnly)
    worker.start()
    try:
        worker.begin("u1")
        worker.feed("u1", np.zeros(3200, dtype=np.int16))
        worker.quick("u1")
        ev = _wait_for(worker, lambda e: isinstance(e, m.AsrPartial) and e.quick)
        assert ev == m.AsrPartial("u1", "word2", audio_ms=200.0, quick=True)
    finally:
        worker.stop()


def test_worker_prepared_final_is_the_final_only_when_told_nothing_was_said_since(whisper, voice) -> None:
    """`prepare` runs the final pass in the silence; `finish(prepared=True)` sends that pass (one pass in
    all), `finish()` makes its own over all the audio (the words said after the prepared pass count)."""
    passes: list[int] = []
    real = whisper._final_pass

    def counting(audio):
        passes.append(len(audio))
        return real(audio)

    whisper._final_pass = counting
    worker = AsrWorker(lambda: whisper)
    worker.start()
    try:
        assert worker.ready.wait(30) and worker.error is None
        question = voice("What causes the tides?")
        worker.begin("u1")
        worker.feed("u1", question)
        worker.prepare("u1")
        worker.feed("u1", silence(400))  # the rest of the silence that ends the turn
        worker.finish("u1", prepared=True)
        ev = _wait_for(worker, lambda e: isinstance(e, m.AsrFinal))
        assert ev is not None and normalize(ev.text) == normalize("What causes the tides?"), ev
        assert passes == [len(question)]  # the prepared pass was the final

        worker.results.clear()
        passes.clear()
        more = voice("and why are there two each day?")
        worker.begin("u2")
        worker.feed("u2", question)
        worker.prepare("u2")
        worker.feed("u2", np.concatenate([silence(300), more]))  # the user went on after the pass began
        worker.finish("u2")
        ev = _wait_for(worker, lambda e: isinstance(e, m.AsrFinal))
        assert ev is not None and "day" in normalize(ev.text), ev
        assert len(passes) == 2 and passes[1] > passes[0]  # a new pass over everything
    finally:
        worker.stop()
        del whisper._final_pass


def test_a_prepared_pass_with_sound_after_it_is_not_the_final_whatever_the_caller_says(whisper, voice) -> None:
    """The backend's own guard: `finish(prepared=True)` over audio that grew louder than the silence
    floor after `prepare()` passes again (a stale pass would lose the user's last words)."""
    question, more = voice("What causes the tides?"), voice("and why are there two each day?")
    whisper.start()
    whisper.feed(question, partials=False)
    whisper.prepare()
    whisper.feed(np.concatenate([silence(300), more]), partials=False)
    final = whisper.finish(prepared=True)
    assert "day" in normalize(final.text), final.text
    assert final.audio_ms == pytest.approx((len(question) + len(more)) / 16 + 300)
