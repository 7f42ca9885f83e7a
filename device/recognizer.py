"""The ASR worker: runs the streaming recogniser off the device loop, one capture at a time.

`StreamingASR.feed()`/`finish()` block for up to about a second (faster-whisper re-transcribes the
whole buffer), so they never run in the audio callback or the device loop: the loop hands commands
(`start`, `feed`, `quick`, `finish`, `cancel`) to this worker's queue and drains results
(`AsrPartial`, `AsrFinal`, `AsrFailed` machine events) from `results` in `DeviceApp.process()`. Feeds
queued while the model was busy are joined into one call. `quick` answers the machine's
`QuickTranscript` at a pause with `AsrPartial(quick=True)` over all audio fed so far: the backend's
short-context pass where it has one (`QuickASR`), else its latest partial, so the machine never waits
on a question nobody answers. `prepare` (the machine's `PrepareFinal`, in a silence that has not ended
the turn yet) runs the final pass early where the backend can; a `finish` that says the user has not
spoken since then takes that pass as the final. A cancelled capture's audio is dropped unread and its
late results never surface (the machine also ignores results for captures it no longer has).

The model is built on the worker thread at `start()` (loading takes seconds); `ready` is set when
it is loaded, `error` holds the reason when it could not be.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Optional

import numpy as np

from device import machine as m
from device.asr.base import PreparedFinalASR

log = logging.getLogger(__name__)


class AsrWorker:
    def __init__(self, factory: Callable[[], object], name: str = "asr",
                 turn_factory: Optional[Callable[[], object]] = None) -> None:
        self._factory = factory
        # An audio end-of-turn model (`device.turn_audio.SmartTurn`), asked at each quick transcript;
        # optional: without it (or when it cannot load) the machine judges the words alone.
        self._turn_factory = turn_factory
        self.turn_model = None
        self._turn_pool: Optional[ThreadPoolExecutor] = None  # runs turn_model beside the quick pass
        self._q: "queue.Queue[tuple]" = queue.Queue()
        self.results: deque[m.Event] = deque()
        self.ready = threading.Event()
        self.error: Optional[str] = None
        self.asr = None
        self._current: Optional[str] = None
        self._cancelled: set[str] = set()
        self._busy = False
        self._fed_ms = 0.0  # audio fed to the current capture
        self._partial = ""  # the current capture's latest partial text
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.timings: deque[tuple[str, float, float]] = deque(maxlen=200)  # (op, audio_ms, wall_ms)

    # ---- the device loop's side ----
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._q.put(("stop",))
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._turn_pool is not None:
            self._turn_pool.shutdown(wait=False)

    def begin(self, uid: str, over_speech: bool = False) -> None:
        self._q.put(("start", uid, over_speech))

    def feed(self, uid: str, pcm: np.ndarray) -> None:
        self._q.put(("feed", uid, pcm))

    def finish(self, uid: str, prepared: bool = False) -> None:
        """The final of `uid`; `prepared`: the pass a `prepare()` started heard every word (the machine
        saw no speech since), so it is the final, without a second pass."""
        self._q.put(("finish", uid, prepared))

    def prepare(self, uid: str) -> None:
        """Run the final pass over the capture so far now (the backend's `prepare()`, if it has one)."""
        self._q.put(("prepare", uid))

    def quick(self, uid: str) -> None:
        """Ask for an `AsrPartial(uid, ..., quick=True)` over the capture so far (none if cancelled)."""
        self._q.put(("quick", uid))

    def cancel(self, uid: str) -> None:
        self._cancelled.add(uid)
        self._q.put(("cancel", uid))

    @property
    def busy(self) -> bool:
        """Work queued or running (a harness may let simulated time wait for it)."""
        return self._busy or not self._q.empty()

    # ---- the worker thread ----
    def _run(self) -> None:
        try:
            t0 = time.monotonic()
            self.asr = self._factory()
            if self._turn_factory is not None:
                try:
                    self.turn_model = self._turn_factory()
                except Exception as exc:  # the words alone still judge the end of a turn
                    log.warning("audio end-of-turn model unavailable (%s: %s); judging turns by their words",
                                type(exc).__name__, exc)
            # Until now speech is heard but cannot be transcribed; loading competes with the audio for
            # the CPU (seconds on a cold Pi), so an operator (and a test) wants to know when it is over.
            log.info("recogniser ready: %s%s (%.1f s)", getattr(self.asr, "backend", type(self.asr).__name__),
                     " + audio end-of-turn model" if self.turn_model is not None else "", time.monotonic() - t0)
        except Exception as exc:  # a missing model must not kill the device: it runs without ASR
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("ASR unavailable: %s", self.error)
        finally:
            self.ready.set()
        while True:
            item = self._q.get()
            if item[0] == "stop":
                return
            self._busy = True
            try:
                self._handle(item)
            except Exception as exc:  # one bad utterance must not end recognition
                uid = item[1]
                log.exception("ASR failed on %s", uid)
                self.results.append(m.AsrFailed(uid, f"{type(exc).__name__}: {exc}"))
                self._current = None
            finally:
                self._busy = False

    def _listen_for_turn_end(self, uid: str) -> Optional["Future[Optional[float]]"]:
        """Start the audio end-of-turn model on the capture so far, beside the quick transcript: it
        needs the audio, not the words, and run after the decode it added its 50-240 ms (the latter
        under load: `segue-bench turns` traces) to every end of turn. None: no model or no audio."""
        audio = getattr(self.asr, "audio", None)
        if self.turn_model is None or audio is None:
            return None
        if self._turn_pool is None:
            self._turn_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turn-audio")
        return self._turn_pool.submit(self._turn_audio, uid, audio(), self._fed_ms)

    def _turn_audio(self, uid: str, pcm: np.ndarray, fed_ms: float) -> Optional[float]:
        """P(the turn is over) from the audio end-of-turn model, or None (failure)."""
        t0 = time.monotonic()
        try:
            p = float(self.turn_model.probability(pcm))  # type: ignore[union-attr]
        except Exception:  # the words still decide
            log.exception("audio end-of-turn model failed on %s", uid)
            return None
        self.timings.append(("turn_audio", fed_ms, (time.monotonic() - t0) * 1000))
        return min(1.0, max(0.0, p))

    def _handle(self, item: tuple) -> None:
        op, uid = item[0], item[1]
        if uid in self._cancelled:
            if op == "cancel":
                self._cancelled.discard(uid)
                if self._current == uid:
                    self._current = None
            return
        if self.asr is None:
            if op == "finish":
                self.results.append(m.AsrFailed(uid, self.error or "no recogniser"))
            elif op == "quick":  # nothing to hear with: say so at once rather than leave the machine waiting
                self.results.append(m.AsrPartial(uid, "", quick=True))
            return
        if op == "start":
            if item[2]:  # a barge-in over the agent's speech
                self.asr.start(over_speech=True)
            else:
                self.asr.start()
            self._current, self._fed_ms, self._partial = uid, 0.0, ""
        elif op == "feed":
            if self._current != uid:
                return
            pcm = self._joined_feeds(uid, item[2])
            # a quick pass queued right behind this audio covers it: no partial of its own first
            quick_next = self._next_is(("quick", uid)) and hasattr(self.asr, "quick")
            t0 = time.monotonic()
            partials = self.asr.feed(pcm, partials=False) if quick_next else self.asr.feed(pcm)
            self.timings.append(("feed", len(pcm) / 16.0, (time.monotonic() - t0) * 1000))
            self._fed_ms += len(pcm) / 16.0
            for p in partials:
                self._partial = p.text
                if uid not in self._cancelled:
                    self.results.append(m.AsrPartial(uid, p.text, audio_ms=p.audio_ms))
        elif op == "quick":
            if self._current != uid:
                return  # finished already (its final is on the way) or never started
            text, audio_ms = self._partial, self._fed_ms  # a backend without a quick pass: its latest
            turn_end = self._listen_for_turn_end(uid)
            quick = getattr(self.asr, "quick", None)
            if quick is not None:
                t0 = time.monotonic()
                try:
                    p = quick()
                except Exception:  # a failed quick look must not fail the capture: the final still comes
                    log.exception("quick transcript failed on %s", uid)
                else:
                    self.timings.append(("quick", p.audio_ms, (time.monotonic() - t0) * 1000))
                    text, audio_ms = p.text, p.audio_ms
            if turn_end is not None and text and uid not in self._cancelled:
                # The words go out now as an ordinary partial (the engine may start the answer on them);
                # the audio model's verdict, if it is still running, comes with the end-of-turn look.
                self.results.append(m.AsrPartial(uid, text, audio_ms=audio_ms))
            if uid not in self._cancelled:
                turn_audio = turn_end.result() if turn_end is not None else None
                self.results.append(m.AsrPartial(uid, text, audio_ms=audio_ms, quick=True, turn_audio=turn_audio))
        elif op == "prepare":
            if self._current == uid and isinstance(self.asr, PreparedFinalASR):
                t0 = time.monotonic()
                try:
                    self.asr.prepare()
                except Exception:  # an early pass that fails must not fail the capture: finish() passes again
                    log.exception("early final pass failed on %s", uid)
                    return
                self.timings.append(("prepare", self._fed_ms, (time.monotonic() - t0) * 1000))
        elif op == "finish":
            if self._current != uid:
                self.results.append(m.AsrFailed(uid, "finish without start"))
                return
            t0 = time.monotonic()
            early = item[2] and isinstance(self.asr, PreparedFinalASR)
            final = self.asr.finish(prepared=True) if early else self.asr.finish()
            self.timings.append(("finish", final.audio_ms, (time.monotonic() - t0) * 1000))
            self._current = None
            if uid not in self._cancelled:
                self.results.append(m.AsrFinal(uid, final.text, tuple(final.words)))

    def _next_is(self, op: tuple) -> bool:
        try:
            return tuple(self._q.queue[0][:2]) == op
        except IndexError:
            return False

    def _joined_feeds(self, uid: str, first: np.ndarray) -> np.ndarray:
        """`first` and every feed for `uid` queued right behind it (what piled up while busy)."""
        chunks = [first]
        while self._next_is(("feed", uid)):
            chunks.append(self._q.get_nowait()[2])
        return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
