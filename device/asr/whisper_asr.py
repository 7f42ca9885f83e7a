"""Streaming ASR with faster-whisper: the fallback where no vosk model for the language is at hand.

Whisper is not a streaming model, so streaming is emulated: the whole buffer so far is re-transcribed
greedily for each partial, and `finish()` runs one proper pass with beam search and word timestamps.

Partials come from the quick pass (`quick()`, `quick_partials`): faster-whisper's `transcribe()` pads
every window to 30 s of mel frames, so each call costs ~300 ms on two cores however short the audio;
the quick pass hands CTranslate2 a mel of just the audio plus `quick_pad_s` of zeros and decodes
greedily with a token budget by audio length and a repetition penalty (20-100 ms for a few seconds of
speech). Such a short decode runs on by repeating itself, which `device.asr.repeats` cuts. The first
partial comes `quick_first_s` after the first sound, then every `quick_interval_s` of audio fed, or
later when the last one took longer than that to compute (at most half the CPU on a live mic).
With `quick_partials=False` partials are the old full passes every `partial_interval_s` (the
baseline). Past `max_partial_audio_s` partials stop and only the final pass runs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from device.asr.base import SAMPLE_RATE, Final, NotStarted, Partial, as_int16
from device.asr.repeats import cut_repeats
from device.models import ModelSettings, whisper_model_path
from icp.words import WordTiming

_models: dict[tuple[str, str, int], Any] = {}
_models_lock = threading.Lock()


def load_whisper_model(path: Path, compute_type: str, cpu_threads: int) -> Any:
    """Load (once per process per configuration) a faster-whisper model from a local dir."""
    from faster_whisper import WhisperModel

    key = (str(Path(path).resolve()), compute_type, cpu_threads)
    with _models_lock:
        if key not in _models:
            _models[key] = WhisperModel(key[0], device="cpu", compute_type=compute_type, cpu_threads=cpu_threads,
                                        local_files_only=True)
        return _models[key]


@dataclass(frozen=True)
class WhisperSettings:
    model_path: Path | None = None  # None: device.models.whisper_model_path() (bundled tiny.en)
    model_settings: ModelSettings = ModelSettings()
    language: str = "en"
    compute_type: str = "int8"
    cpu_threads: int = 2
    partials: bool = True
    quick_partials: bool = True  # partials from the quick pass; False: full passes (the baseline)
    quick_first_s: float = 0.18  # first quick partial after this much audio since the first sound (a
    #                            backchannel is resumed from it: "Yeah,", "Okay," and "Right," are heard at 0.2 s;
    #                            an opening alone such as "I" or "Uh" is never resumed on, icp.engine.partials)
    quick_interval_s: float = 0.25  # audio between quick partials
    # ... and during a barge-in, while the sound is short (a backchannel's length): the engine lets the
    # reply go on from the first partial that reads as one, and a word half heard at the first look
    # ("I say-" for "I see", "Cheer" for "Sure") costs a whole interval of paused reply
    quick_interval_over_speech_s: float = 0.1
    quick_over_speech_window_s: float = 0.6
    quick_lead_s: float = 0.2  # zeros before the audio (an abrupt first consonant is heard better)
    quick_pad_s: float = 1.0  # zeros after the audio in the quick pass's mel
    quick_tokens_per_s: float = 8.0  # token budget of a quick decode: this per second of audio ...
    quick_tokens_min: int = 8  # ... plus this
    quick_repetition_penalty: float = 1.3  # > 1 curbs the short decode's loops
    quick_max_audio_s: float = 25.0  # longer captures: quick() runs the full pass (the mel window is 30 s)
    partial_interval_s: float = 1.0  # audio between full-pass partials (quick_partials=False)
    min_partial_audio_s: float = 0.5  # no full-pass partial before this much audio
    max_partial_audio_s: float = 10.0  # no partials past this much audio (each costs more); final covers all
    beam_size: int = 5  # for the final pass; partials are greedy
    # The final pass: "window" is faster-whisper's own pass over a 30 s window with word timestamps
    # (~400-700 ms on 2 cores); "short" decodes (beam search) a mel as long as the audio, like `quick()`,
    # in ~100-200 ms but misreads hums ("Mm hmm" -> "I'm Anton." one time in two in audio mode). A
    # question ended by complete words skips this pass (its quick transcript is the final), so the
    # answer's path does not wait for it; backchannels and interruptions are read by it.
    final_pass: str = "window"
    vad_filter: bool = False  # the device's own VAD already cut the utterance
    # Text Whisper is told came before a barge-in over the agent's speech (its "previous text" prompt),
    # in every pass. Hums are what the user most often makes there, and tiny.en unprompted writes them as
    # words ("Mm hmm" -> "And then, then.", "Uh huh" -> "I have a question." at 0.2 s), so the engine
    # could not let them pass. With the prompt it writes "Mm-hmm."/"Uh-huh."; words are unchanged on our
    # own utterances (evaluation/quick_asr.py), but a bare "Huh?" or "Mm, no." may read as a hum at first:
    # the final pass, prompted alike but hearing the whole, is what the engine keeps. "" turns it off.
    over_speech_prompt: str = " Mm-hmm. Uh-huh."
    # ... only while the capture's sound is this short: a hum is, and on longer speech the prompt only
    # hurts (the quick pass wrote "Wait- what's that? What..." for "Wait, what's that?").
    over_speech_prompt_max_s: float = 1.0
    silence_peak: int = 64  # int16 peak below which audio is silence: Whisper says "You" to silence


class WhisperASR:
    backend = "faster-whisper"

    def __init__(self, settings: WhisperSettings = WhisperSettings()) -> None:
        self.settings = settings
        self.language = settings.language
        path = Path(settings.model_path) if settings.model_path else whisper_model_path(settings.model_settings)
        self._model = load_whisper_model(path, settings.compute_type, settings.cpu_threads)
        if settings.language != "en" and not self._model.model.is_multilingual:
            raise ValueError(f"whisper model at {path} is English-only; language {settings.language!r} "
                             "needs a multilingual whisper model or a vosk model")
        self._tokenizer: Any = None
        self._chunks: list[np.ndarray] | None = None
        self._samples = 0
        self._next_partial = 0
        self._last_partial = ""
        self._peak = 0
        self._first_sound: int | None = None  # sample index of the first sound in this capture
        self._prompt = ""  # over_speech_prompt during a barge-in, else nothing
        self._chunk_peaks: list[tuple[int, int]] = []  # (end sample, int16 peak) per chunk fed

    def start(self, over_speech: bool = False) -> None:
        self._prompt = self.settings.over_speech_prompt if over_speech else ""
        self._chunk_peaks = []
        self._chunks, self._samples, self._last_partial, self._peak = [], 0, "", 0
        self._first_sound = None
        self._prepared: tuple[int, Final] | None = None  # (audio it covers, the pass)
        self._decoded_to = 0  # audio the last partial or quick pass covered
        first = max(self.settings.min_partial_audio_s, self.settings.partial_interval_s)
        self._next_partial = int(first * SAMPLE_RATE)

    def feed(self, pcm: np.ndarray | bytes, partials: bool = True) -> list[Partial]:
        """Add audio; returns a partial when one was due and changed. `partials=False` only adds
        (the worker passes it when a quick pass is queued right behind this audio)."""
        if self._chunks is None:
            raise NotStarted("WhisperASR.feed() before start()")
        data = as_int16(pcm)
        if not len(data):
            return []
        self._chunks.append(data.copy())
        magnitude = np.abs(data.astype(np.int32))
        peak = int(magnitude.max())
        self._chunk_peaks.append((self._samples + len(data), peak))
        if self._first_sound is None:
            loud = np.flatnonzero(magnitude >= self.settings.silence_peak)
            if len(loud):
                self._first_sound = self._samples + int(loud[0])
                if self.settings.quick_partials:
                    self._next_partial = self._first_sound + int(self.settings.quick_first_s * SAMPLE_RATE)
        self._samples += len(data)
        self._peak = max(self._peak, peak)
        s = self.settings
        too_long = self._samples > s.max_partial_audio_s * SAMPLE_RATE
        if not (s.partials and partials) or too_long or self._first_sound is None \
                or self._samples < self._next_partial or not self._sound_since(self._decoded_to):
            return []  # (nothing but quiet since the last look: the words cannot have changed)
        self._decoded_to = self._samples
        if s.quick_partials:
            t0 = time.monotonic()
            text = self.quick().text
            # the next one is due after quick_interval_s of audio, and never before this one is older
            # (in audio fed, which is wall time on a live mic) than it took: at most half the CPU
            cost_s = time.monotonic() - t0
            interval = s.quick_interval_s
            if self._prompt and self._samples - self._first_sound < s.quick_over_speech_window_s * SAMPLE_RATE:
                interval = s.quick_interval_over_speech_s
            self._next_partial = self._samples + int(max(interval, cost_s) * SAMPLE_RATE)
        else:
            text = self._full_greedy(self._audio())
            self._next_partial = self._samples + int(s.partial_interval_s * SAMPLE_RATE)
        if text and text != self._last_partial:
            self._last_partial = text
            return [Partial(text=text, audio_ms=self._samples * 1000 / SAMPLE_RATE)]
        return []

    def finish(self, prepared: bool = False) -> Final:
        """The final pass over the whole capture, which ends. `prepared`: the caller knows nothing but
        silence came after the last `prepare()`, whose pass is then the final (no second pass)."""
        if self._chunks is None:
            raise NotStarted("WhisperASR.finish() before start()")
        ready = None
        if prepared and self._prepared is not None and not self._sound_since(self._prepared[0]):
            ready = self._prepared[1]  # (a sound after it, by this backend's own measure: pass again)
        final = ready if ready is not None else self._final_pass(self._audio())
        audio_ms = self._samples * 1000 / SAMPLE_RATE
        self._chunks, self._prepared = None, None
        return replace(final, audio_ms=audio_ms)

    def prepare(self) -> None:
        """Run the final pass over the capture so far and keep it for `finish(prepared=True)`."""
        if self._chunks is None:
            raise NotStarted("WhisperASR.prepare() before start()")
        self._prepared = (self._samples, self._final_pass(self._audio()))

    def _final_pass(self, audio: np.ndarray) -> Final:
        words: list[WordTiming] = []
        texts: list[str] = []
        short = self.settings.final_pass == "short" and len(audio) <= self.settings.quick_max_audio_s * SAMPLE_RATE
        if len(audio) and self._peak >= self.settings.silence_peak and short and self._first_sound is not None:
            sound_s = (self._samples - self._first_sound) / SAMPLE_RATE
            texts.append(cut_repeats(self._short_decode(audio, self.settings.beam_size), sound_s))
        elif len(audio) and self._peak >= self.settings.silence_peak:
            segments, _ = self._model.transcribe(
                audio, language=self.language, beam_size=self.settings.beam_size, word_timestamps=True,
                condition_on_previous_text=False, vad_filter=self.settings.vad_filter,
                initial_prompt=self._prompt_now() or None,
            )
            for seg in segments:
                texts.append(seg.text.strip())
                for w in seg.words or []:
                    if w.word.strip():
                        start, end = float(w.start) * 1000, float(w.end) * 1000
                        words.append(WordTiming(word=w.word.strip(), start_ms=start, end_ms=end))
        return Final(text=" ".join(t for t in texts if t), words=tuple(words),
                     audio_ms=len(audio) * 1000 / SAMPLE_RATE, backend=self.backend, language=self.language)

    def quick(self) -> Partial:
        """The whole capture so far, transcribed now by the short-context greedy pass, repetition cut:
        the words an end-of-turn decision looks at. Silence (peak below `silence_peak`) gives ""."""
        if self._chunks is None:
            raise NotStarted("WhisperASR.quick() before start()")
        audio_ms = self._samples * 1000 / SAMPLE_RATE
        if self._first_sound is None or self._peak < self.settings.silence_peak:
            return Partial(text="", audio_ms=audio_ms)
        audio = self._audio()
        self._decoded_to = self._samples
        if len(audio) > self.settings.quick_max_audio_s * SAMPLE_RATE:
            return Partial(text=self._full_greedy(audio), audio_ms=audio_ms)
        sound_s = (self._samples - self._first_sound) / SAMPLE_RATE
        return Partial(text=cut_repeats(self._short_decode(audio), sound_s), audio_ms=audio_ms)

    def _short_decode(self, audio: np.ndarray, beam_size: int = 1) -> str:
        """Decode of a mel as long as the audio plus `quick_pad_s` (not faster-whisper's 30 s); greedy
        for partials, beam search for the final."""
        import ctranslate2

        s = self.settings
        tk = self._quick_tokenizer()
        zeros = lambda secs: np.zeros(int(secs * SAMPLE_RATE), dtype=np.float32)  # noqa: E731
        padded = np.concatenate([zeros(s.quick_lead_s), audio, zeros(s.quick_pad_s)])
        feats = self._model.feature_extractor(padded, padding=0)
        mel = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None].astype(np.float32)))
        prompt = [*tk.sot_sequence, tk.no_timestamps]
        if self._prompt_now():  # as faster-whisper puts an initial prompt: previous-text marker, its tokens
            prompt = [tk.sot_prev, *tk.encode(self._prompt)] + prompt
        budget = len(prompt) + s.quick_tokens_min + int(s.quick_tokens_per_s * len(audio) / SAMPLE_RATE)
        result = self._model.model.generate(mel, [prompt], beam_size=beam_size, max_length=budget,
                                            repetition_penalty=s.quick_repetition_penalty)
        return tk.decode([t for t in result[0].sequences_ids[0] if t < tk.eot]).strip()

    def _sound_since(self, sample: int) -> bool:
        """Is there sound after `sample`: a chunk within 18 dB of the capture's loudest (as `_prompt_now`
        counts it; the silence that ends a turn and a canceller's faint residue are not)? A partial
        over silence only costs a decode (100-200 ms of a Pi core each quarter second of the end-of-turn
        silence, delaying the final pass behind it)."""
        floor = max(self.settings.silence_peak, self._peak // 8)
        for end, peak in reversed(self._chunk_peaks):
            if end <= sample:
                return False
            if peak >= floor:
                return True
        return False

    def _prompt_now(self) -> str:
        """The barge-in prompt, while the capture's sound is still short enough to be a hum: from the
        first sound to the end of the last chunk within 18 dB of the loudest (the silence that ends a
        turn, and a canceller's faint residue, do not count)."""
        if not self._prompt or self._first_sound is None:
            return ""
        floor = max(self.settings.silence_peak, self._peak // 8)
        last = max((end for end, peak in self._chunk_peaks if peak >= floor), default=self._samples)
        sound_s = (last - self._first_sound) / SAMPLE_RATE
        return self._prompt if sound_s <= self.settings.over_speech_prompt_max_s else ""

    def _quick_tokenizer(self) -> Any:
        if self._tokenizer is None:
            from faster_whisper.tokenizer import Tokenizer

            self._tokenizer = Tokenizer(self._model.hf_tokenizer, self._model.model.is_multilingual,
                                        task="transcribe", language=self.language)
        return self._tokenizer

    def _full_greedy(self, audio: np.ndarray) -> str:
        """faster-whisper's own greedy pass (30 s window): the baseline partial."""
        segments, _ = self._model.transcribe(
            audio, language=self.language, beam_size=1, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=self.settings.vad_filter,
            initial_prompt=self._prompt_now() or None,
        )
        return " ".join(seg.text.strip() for seg in segments).strip()

    def audio(self) -> np.ndarray:
        """The capture so far (float32 in [-1, 1], 16 kHz): what an audio end-of-turn model listens to."""
        return self._audio()

    def _audio(self) -> np.ndarray:
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0

