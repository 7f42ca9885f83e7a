"""Reply generation out of the engine's loop: LLM streams and synthesis, on threads, reporting to a sink.

The engine's loop hands over `StartGeneration`, `CancelGeneration` and `Synthesise`; what comes of
them (text, the end of a stream, a failure, a segment's audio) goes to a `ReplySink`, which turns it
into events for the core. `ReplyThreads` does the work on thread pools of whatever process it is in:
the engine's own (`replies = "threads"`) or a child process's (`server.reply_process`,
the default), where the openai client's stream parsing and the TTS stop competing with the engine's
loop and its MQTT thread for one GIL (measured in docs/fleet-scale.md).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from icp import commands as C
from server.config import ServerSettings
from server.llm import LLMError, PendingStream, make_client
from server.tts.base import Synthesis, TTSBackend, resample, to_pcm16
from server.tts.factory import create_tts

log = logging.getLogger("segue.engine")

Key = tuple[str, str]  # (device, generation)


class ReplySink(Protocol):
    """Where reply work reports; every method is called from a worker thread."""

    def text(self, device_id: str, generation_id: str, delta: str) -> None: ...
    def finished(self, device_id: str, generation_id: str) -> None: ...
    def failed(self, device_id: str, generation_id: str, reason: str) -> None: ...
    def closed(self, device_id: str, generation_id: str) -> None: ...  # ended by a cancel: nothing to report
    def synthesised(self, device_id: str, segment_id: int, synthesis: Synthesis) -> None: ...
    def synthesis_failed(self, device_id: str, segment_id: int, reason: str) -> None: ...
    def timing(self, kind: str, seconds: float) -> None: ...  # "first_token" or "tts", for the metrics


class Replies(Protocol):
    """What the engine's loop calls: `ReplyThreads` here, or `server.reply_process.ReplyProcess`."""

    streams: dict[Key, Any]  # generations asked for and not yet ended
    restarts: int  # times the reply process died and was replaced (0 on threads)

    @property
    def tts_name(self) -> str: ...

    def ready(self) -> None: ...
    def generate(self, device_id: str, cmd: C.StartGeneration) -> None: ...
    def cancel(self, device_id: str, generation_id: str) -> None: ...
    def forget(self, device_id: str) -> None: ...
    def synthesise(self, device_id: str, sample_rate: int, cmd: C.Synthesise) -> None: ...
    def close(self) -> None: ...


def make_tts(settings: ServerSettings) -> TTSBackend:
    options: dict[str, Any] = {"sample_rate": settings.tts.sample_rate}
    if settings.tts.backend == "openai":
        options.update(base_url=settings.llm.base_url, api_key=settings.llm.api_key)
        if settings.tts.voice:
            options["voice"] = settings.tts.voice
        if settings.tts.model:
            options["model"] = settings.tts.model
    return create_tts(settings.tts.backend, **options)


class ReplyThreads:
    """LLM streams on a pool of `[llm] max_streams` threads, synthesis on two; cancellable by key."""

    def __init__(self, settings: ServerSettings, tts: TTSBackend, sink: ReplySink, llm_client: Any = None) -> None:
        self.settings = settings
        self.tts = tts
        self.sink = sink
        self.llm = llm_client or make_client(settings.llm.base_url, settings.llm.api_key, settings.llm.timeout_s)
        self.streams: dict[Key, PendingStream] = {}  # registered before the request is sent
        self._tts_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tts")
        # Threads reused, not started per reply (starting one made the engine's loop wait for it).
        self._gen_pool = ThreadPoolExecutor(max_workers=settings.llm.max_streams, thread_name_prefix="gen")

    restarts = 0  # (the child process version counts its child's)

    @property
    def tts_name(self) -> str:
        return str(getattr(self.tts, "name", "?"))

    def ready(self) -> None:
        """Nothing to wait for here (the child process version waits for its child)."""

    def generate(self, device_id: str, cmd: C.StartGeneration) -> None:
        # Registered here, on the caller's thread, before the worker sends the request: a cancel that
        # comes while the request is being opened finds it and closes the stream the moment it exists.
        key = (device_id, cmd.generation_id)
        pending = self.streams[key] = PendingStream()
        try:
            self._gen_pool.submit(self._stream, key, pending, list(cmd.messages), cmd.max_tokens)  # queued past max_streams
        except RuntimeError:  # the pool is shut down: stopping
            self.streams.pop(key, None)

    def cancel(self, device_id: str, generation_id: str) -> None:
        pending = self.streams.pop((device_id, generation_id), None)
        if pending is not None:
            pending.close()  # also when its request is still being opened

    def forget(self, device_id: str) -> None:
        """Cancel every stream of a device (its ownership moved)."""
        for key in [k for k in list(self.streams) if k[0] == device_id]:  # list(): workers pop
            self.cancel(*key)

    def synthesise(self, device_id: str, sample_rate: int, cmd: C.Synthesise) -> None:
        try:
            self._tts_pool.submit(self._synthesise, device_id, sample_rate, cmd.segment_id, cmd.text)
        except RuntimeError:
            pass  # stopping

    def close(self) -> None:
        for pending in list(self.streams.values()):
            pending.close()
        self._tts_pool.shutdown(wait=False, cancel_futures=True)
        self._gen_pool.shutdown(wait=False, cancel_futures=True)

    # -- on the pools' threads --------------------------------------------------------------------------
    def _stream(self, key: Key, pending: PendingStream, messages: list[dict[str, Any]], max_tokens: int) -> None:
        device_id, generation_id = key
        started = time.monotonic()
        try:
            stream = pending.open(messages, self.settings.llm.model, max_tokens=max_tokens,
                                  temperature=self.settings.llm.temperature, client=self.llm)
        except LLMError as exc:
            self.streams.pop(key, None)
            log.warning("device=%s generation %s failed to start: %s", device_id, generation_id, exc)
            self.sink.failed(device_id, generation_id, str(exc))
            return
        if stream is None:  # cancelled before or while the request was sent; the core knows
            self.streams.pop(key, None)
            self.sink.closed(device_id, generation_id)
            return
        try:
            first = True
            for delta in stream:
                if first:
                    self.sink.timing("first_token", time.monotonic() - started)
                    first = False
                self.sink.text(device_id, generation_id, delta)
        except LLMError as exc:
            log.warning("device=%s generation %s failed: %s", device_id, generation_id, exc)
            self.streams.pop(key, None)
            self.sink.failed(device_id, generation_id, str(exc))
            return
        self.streams.pop(key, None)
        # After a cancel the core has already closed this generation; the event is then a no-op.
        self.sink.finished(device_id, generation_id)

    def _synthesise(self, device_id: str, sample_rate: int, segment_id: int, text: str) -> None:
        try:
            started = time.monotonic()
            synthesis = self.tts.synthesise(text)
            self.sink.timing("tts", time.monotonic() - started)
            if synthesis.sample_rate != sample_rate:
                pcm = to_pcm16(resample(synthesis.samples(), synthesis.sample_rate, sample_rate))
                synthesis = Synthesis(pcm, sample_rate, synthesis.words)
        except Exception as exc:  # any backend failure is a failed segment, never a dead worker
            log.warning("device=%s synthesis of segment %d failed: %s", device_id, segment_id, exc)
            self.sink.synthesis_failed(device_id, segment_id, str(exc))
            return
        self.sink.synthesised(device_id, segment_id, synthesis)
