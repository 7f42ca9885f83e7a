"""The reply process (server.reply_process): LLM streams and TTS in a child, results back to the engine.

Against the real parts: the real openai client in the child against the scripted OpenAI-compatible
server, espeak-ng, a real child interpreter killed with -9.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest

from evaluation.openai_server import ScriptedLLMServer
from icp import commands as C
from server.config import ServerSettings, load
from server.reply_process import ReplyProcess
from server.tts.base import TTSError
from tests.test_engine_defects import LONG


class Reports:
    """A ReplySink that keeps every report, in order, with a lock (the reader thread calls it)."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("items", "lock"):
            raise AttributeError(name)

        def report(*args: Any) -> None:
            with self.lock:
                self.items.append((name, *args))

        return report

    def of(self, name: str) -> list[tuple[Any, ...]]:
        with self.lock:
            return [item for item in self.items if item[0] == name]

    def wait(self, condition: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.02)
        return False


def settings_for(llm: ScriptedLLMServer) -> ServerSettings:
    settings = load(None, env={})
    return replace(settings, llm=replace(settings.llm, base_url=llm.base_url, model="scripted"),
                   tts=replace(settings.tts, backend="espeak"))


ASK = ({"role": "user", "content": "tell me about the tides"},)


@contextmanager
def child_with(rules: list[dict[str, str]], chunk_delay_s: float = 0.0,
               **kwargs: Any) -> Iterator[tuple[Any, ReplyProcess, Reports]]:
    """The scripted LLM, a started reply process against it, and what it reports."""
    with ScriptedLLMServer(rules, chunk_delay_s=chunk_delay_s) as llm:
        reports = Reports()
        replies = ReplyProcess(settings_for(llm), reports, **kwargs)
        try:
            replies.ready()
            yield llm, replies, reports
        finally:
            replies.close()


def test_a_reply_streams_and_its_segment_is_synthesised_in_the_child():
    with child_with([{"default": "It is noon."}]) as (llm, replies, reports):
        assert replies.tts_name == "espeak"
        replies.generate("dev1", C.StartGeneration("g1", ASK, 50))
        assert reports.wait(lambda: reports.of("finished"))
        assert "".join(r[3] for r in reports.of("text")).strip() == "It is noon."
        assert not replies.streams
        replies.synthesise("dev1", 22050, C.Synthesise(7, "It is noon."))
        assert reports.wait(lambda: reports.of("synthesised"))
        _, device, segment, synthesis = reports.of("synthesised")[0]
        assert (device, segment, synthesis.sample_rate) == ("dev1", 7, 22050)  # resampled for the device
        assert [w.word for w in synthesis.words] == ["It", "is", "noon."]
        assert {r[1] for r in reports.of("timing")} == {"first_token", "tts"}


def test_a_cancel_reaches_the_stream_in_the_child():
    with child_with([{"default": LONG}], chunk_delay_s=0.02) as (llm, replies, reports):
        replies.generate("dev1", C.StartGeneration("g1", ASK, 400))
        assert reports.wait(lambda: reports.of("text"))
        replies.cancel("dev1", "g1")
        assert llm.wait_for(lambda s: s.requests[0].cancelled, 10), "the stream ran on after the cancel"
        assert not replies.streams


def test_a_killed_child_fails_its_work_and_a_new_one_takes_the_next():
    """kill -9 of the reply process mid-reply: the reply in flight is reported failed (the core
    re-plans from the heard cursor), and the next reply works."""
    with child_with([{"match": "tides", "reply": LONG}, {"default": "It is noon."}],
                    chunk_delay_s=0.05) as (llm, replies, reports):
        replies.generate("dev1", C.StartGeneration("g1", ASK, 400))
        assert reports.wait(lambda: reports.of("text"))
        first_pid = replies._proc.pid
        os.kill(first_pid, signal.SIGKILL)
        assert reports.wait(lambda: reports.of("failed"))
        assert reports.of("failed")[0][1:3] == ("dev1", "g1")
        assert not reports.of("finished")
        assert reports.wait(lambda: replies.restarts == 1)
        assert replies._proc.pid != first_pid
        replies.generate("dev1", C.StartGeneration("g2", ({"role": "user", "content": "time?"},), 50))
        assert reports.wait(lambda: reports.of("finished"))
        assert reports.of("finished")[0][1:3] == ("dev1", "g2")


def test_a_hung_child_is_killed_and_its_work_failed():
    """A child that stops answering without dying (SIGSTOP here; a TTS stuck in C in the field): the
    watchdog kills it after `hang_s`, the synthesis it held is reported failed, and a new child
    takes the next one. Without the watchdog the synthesis would never be answered."""
    with child_with([{"default": "It is noon."}], hang_s=1.0) as (llm, replies, reports):
        first_pid = replies._proc.pid
        os.kill(first_pid, signal.SIGSTOP)
        try:
            replies.synthesise("dev1", 22050, C.Synthesise(3, "It is noon."))
            assert reports.wait(lambda: reports.of("synthesis_failed"), timeout=8.0), "a hung child went unnoticed"
        finally:
            try:
                os.kill(first_pid, signal.SIGCONT)  # if the watchdog missed it: let it end with the test
            except ProcessLookupError:
                pass  # killed and reaped, as it should be
        assert reports.of("synthesis_failed")[0][1:3] == ("dev1", 3)
        assert reports.wait(lambda: replies.restarts == 1)
        replies.synthesise("dev1", 22050, C.Synthesise(4, "It is noon."))
        assert reports.wait(lambda: reports.of("synthesised"))
        assert reports.of("synthesised")[0][1:3] == ("dev1", 4)


def test_a_busy_child_is_not_taken_for_hung():
    """Pings are answered while work runs: a long reply outlasting `hang_s` is not killed."""
    with child_with([{"default": LONG}], chunk_delay_s=0.02, hang_s=0.5) as (llm, replies, reports):
        started = time.monotonic()
        replies.generate("dev1", C.StartGeneration("g1", ASK, 100))
        assert reports.wait(lambda: reports.of("finished"), timeout=20.0)
        assert time.monotonic() - started > 3 * replies.hang_s  # it did outlast hang_s
        assert replies.restarts == 0 and not reports.of("failed")


def test_the_child_runs_at_the_configured_niceness_and_the_setting_is_checked():
    from server.config import ConfigError, from_dict

    with ScriptedLLMServer([{"default": "It is noon."}]) as llm:
        replies = ReplyProcess(replace(settings_for(llm), reply_niceness=7), Reports())
        try:
            replies.ready()
            child = os.getpriority(os.PRIO_PROCESS, replies._proc.pid)
            assert child - os.getpriority(os.PRIO_PROCESS, 0) == min(7, 19 - os.getpriority(os.PRIO_PROCESS, 0))
        finally:
            replies.close()
    assert from_dict({}).reply_niceness == 0
    with pytest.raises(ConfigError, match="reply_niceness"):
        from_dict({"reply_niceness": 25})


def test_the_child_ends_with_its_engine():
    """A worker killed with -9 leaves no reply process behind: the child sees its pipe close."""
    code = ("import sys, time\n"
            "from dataclasses import replace\n"
            "from server.config import load\n"
            "from server.reply_process import ReplyProcess\n"
            "s = load(None, env={}); s = replace(s, tts=replace(s.tts, backend='espeak'))\n"
            "r = ReplyProcess(s, object()); r.ready()\n"
            "print(r._proc.pid, flush=True)\n"
            "time.sleep(60)\n")
    engine = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        child = int(engine.stdout.readline())  # type: ignore[union-attr]
        os.kill(child, 0)  # alive
        engine.kill()
        engine.wait(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the reply process outlived its engine")
    finally:
        engine.kill()


def test_a_child_that_cannot_start_says_why():
    settings = load(None, env={})
    settings = replace(settings, tts=replace(settings.tts, backend="no-such-voice"))
    with pytest.raises(TTSError, match="unknown TTS backend"):
        ReplyProcess(settings, Reports()).ready()


def test_the_http_client_logs_no_line_per_request_unless_debugging():
    import logging

    from server.llm import quiet_http_client

    httpx_log = logging.getLogger("httpx")
    before = httpx_log.level
    try:
        httpx_log.setLevel(logging.NOTSET)
        quiet_http_client("DEBUG")
        assert httpx_log.level == logging.NOTSET
        quiet_http_client("INFO")
        assert httpx_log.level == logging.WARNING
    finally:
        httpx_log.setLevel(before)


def test_an_unreadable_report_restarts_the_child():
    """A message that cannot be unpickled leaves the stream out of step: the reader starts a new child
    instead of dying (which would silence every device's replies)."""
    import pickle

    with child_with([{"default": "It is noon."}]) as (llm, replies, reports):
        real = replies._conn

        class Garbled:
            def recv(self) -> Any:
                raise pickle.UnpicklingError("garbled")

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

        replies._conn = Garbled()  # type: ignore[assignment]  # the reader's next recv after this one
        replies.generate("dev1", C.StartGeneration("g1", ASK, 50))
        assert reports.wait(lambda: replies.restarts == 1)
        replies.generate("dev1", C.StartGeneration("g2", ASK, 50))
        assert reports.wait(lambda: ("finished", "dev1", "g2") in reports.items)
