"""Reply generation in a child process: `ReplyThreads` there, the same calls here, results over a pipe.

Why a process: at 500-850 talking devices a worker's event -> command tail (p99 25-90 ms) was the
reply work holding the GIL, not the protocol. The openai client parses every streamed chunk into
pydantic models and espeak-ng calls back into Python for every buffer of audio; the engine's loop
and the MQTT thread waited behind them. With both replaced by instant fakes in the same bench run
the p99 fell to 7-13 ms (docs/fleet-scale.md). In a process of their own they keep their GIL to
themselves; the engine's side only pickles requests and unpickles results.

The child is a new interpreter (`python -m server.reply_process FD`; not forked: the engine has
threads and sockets, and not multiprocessing's spawn, which re-runs the parent's `__main__`) on one
end of a socket pair. It gets the settings as its first message, builds its own LLM client and TTS, and says "ready" (or why it could not start: a missing voice, no
API key, which the engine raises at start as it did in-process). It exits when its pipe closes, so
a worker killed with -9 leaves no orphan. If the child dies, every generation and synthesis it had
is reported failed (the core re-plans from the heard cursor, as for any LLM or TTS failure) and a
new child is started.

A child can also hang without dying (a TTS stuck in its C code, a deadlock): then nothing would ever
fail and its devices would wait in `thinking` forever. A watchdog pings it and counts how long each
synthesis has been outstanding; no answer to a ping, or a synthesis older than `hang_s`, and the
child is killed, which takes the path of a death above.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from icp import commands as C
from server.config import ServerSettings
from server.llm import LLMError, quiet_http_client
from server.replies import Key, ReplySink, ReplyThreads, make_tts
from server.tts.base import Synthesis, TTSError

log = logging.getLogger("segue.replies")

# What the child may report: each is a `ReplySink` method of the same name and arguments.
_REPORTS = frozenset({"text", "finished", "failed", "closed", "synthesised", "synthesis_failed", "timing", "pong"})
HANG_S = 30.0  # a child silent this long (or one synthesis outstanding this long) is hung
_ERRORS: dict[str, type[Exception]] = {"TTSError": TTSError, "LLMError": LLMError}


class ReplyProcess:
    """The engine's handle on the child: the calls of `ReplyThreads`, carried out there."""

    def __init__(self, settings: ServerSettings, sink: ReplySink, start_timeout_s: float = 120.0,
                 hang_s: float = HANG_S) -> None:
        self.settings = settings
        self.sink = sink
        self.start_timeout_s = start_timeout_s
        self.hang_s = hang_s
        self.streams: dict[Key, bool] = {}  # generations asked for and not yet ended
        self._segments: dict[tuple[str, int], float] = {}  # syntheses asked for and not yet answered: when
        self._ping_at: float | None = None  # a ping not yet answered: when it went
        self._send_lock = threading.Lock()
        self._stopping = False
        self.tts_name = "?"
        self.restarts = 0
        self._conn, self._proc = self._launch()  # it starts while the engine loads the rest
        self._reader: threading.Thread | None = None

    def ready(self) -> None:
        """Wait for the child to say it is ready; raise what stopped it (TTSError, LLMError) if not."""
        if self._reader is not None:
            return
        self._handshake(self._conn, self._proc)
        self._reader = threading.Thread(target=self._read, name="replies-read", daemon=True)
        self._reader.start()
        threading.Thread(target=self._watch, name="replies-watch", daemon=True).start()

    # -- the engine's calls (its loop thread) -----------------------------------------------------------
    def generate(self, device_id: str, cmd: C.StartGeneration) -> None:
        key = (device_id, cmd.generation_id)
        self.streams[key] = True
        if not self._send(("generate", device_id, cmd)):
            if self.streams.pop(key, None):
                self.sink.failed(device_id, cmd.generation_id, "the reply process is restarting")

    def cancel(self, device_id: str, generation_id: str) -> None:
        if self.streams.pop((device_id, generation_id), None):
            self._send(("cancel", device_id, generation_id))

    def forget(self, device_id: str) -> None:
        for key in [k for k in list(self.streams) if k[0] == device_id]:  # list(): the reader pops
            self.cancel(*key)

    def synthesise(self, device_id: str, sample_rate: int, cmd: C.Synthesise) -> None:
        self._segments[(device_id, cmd.segment_id)] = time.monotonic()
        if not self._send(("synthesise", device_id, sample_rate, cmd)):
            self._segments.pop((device_id, cmd.segment_id), None)
            self.sink.synthesis_failed(device_id, cmd.segment_id, "the reply process is restarting")

    def close(self) -> None:
        self._stopping = True
        self._send(("stop",))
        try:
            self._proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(1.0)
        self._conn.close()

    # -- the pipe -----------------------------------------------------------------------------------------
    def _send(self, message: tuple[Any, ...]) -> bool:
        with self._send_lock:
            try:
                self._conn.send(message)
                return True
            except (OSError, ValueError):  # the child is gone (or being replaced)
                return False

    def _launch(self) -> tuple[Connection, subprocess.Popen[bytes]]:
        mine, theirs = socket.socketpair()
        # The child imports what this process imports (a test's or a checkout's path, not only site's).
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        proc = subprocess.Popen([sys.executable, "-m", "server.reply_process", str(theirs.fileno())],
                                pass_fds=(theirs.fileno(),), env=env)
        theirs.close()
        ours = Connection(mine.detach())
        try:
            ours.send(self.settings)
        except OSError:
            pass  # it died at once: the handshake says so
        return ours, proc

    def _handshake(self, ours: Connection, proc: subprocess.Popen[bytes]) -> None:
        try:
            if not ours.poll(self.start_timeout_s):
                raise TimeoutError(f"the reply process did not start within {self.start_timeout_s:.0f} s")
            reply = ours.recv()
        except EOFError:
            proc.kill()
            ours.close()
            raise ChildProcessError(f"the reply process exited at start (code {proc.wait(2.0)}); its log says why") from None
        except BaseException:
            proc.kill()
            ours.close()
            raise
        if reply[0] == "error":
            proc.wait(2.0)
            ours.close()
            raise _ERRORS.get(reply[1], RuntimeError)(reply[2])
        self.tts_name = reply[1]

    def _read(self) -> None:
        while True:
            try:
                name, *args = self._conn.recv()
            except (EOFError, OSError):
                if self._stopping:
                    return
                self._restart()
                continue
            except Exception:  # an unreadable message: the stream is out of step, so start afresh
                log.exception("unreadable report from the reply process; restarting it")
                self._proc.kill()
                self._restart()
                continue
            if name not in _REPORTS:
                log.warning("the reply process reported %r; ignored", name)
                continue
            if name == "pong":
                self._ping_at = None
                continue
            if name in ("finished", "failed", "closed"):
                self.streams.pop((args[0], args[1]), None)  # before the event: as the threads do
                if name == "closed":
                    continue
            elif name in ("synthesised", "synthesis_failed"):
                self._segments.pop((args[0], args[1]), None)
            try:
                getattr(self.sink, name)(*args)
            except Exception:  # a bug in the sink must not end every device's replies
                log.exception("reply report %s failed", name)

    def _restart(self) -> None:
        """The child died: what it had is failed (the core re-plans from the heard cursor); start another."""
        try:
            code: int | None = self._proc.wait(1.0)
        except subprocess.TimeoutExpired:  # its pipe broke, yet it lives: make sure
            self._proc.kill()
            code = self._proc.wait(1.0)
        log.error("the reply process died (exit code %s); %d replies and %d syntheses fail, restarting",
                  code, len(self.streams), len(self._segments))
        with self._send_lock:
            self._conn.close()
        for device_id, generation_id in list(self.streams):
            if self.streams.pop((device_id, generation_id), None):
                self.sink.failed(device_id, generation_id, "the reply process died")
        for device_id, segment_id in list(self._segments):
            self._segments.pop((device_id, segment_id), None)
            self.sink.synthesis_failed(device_id, segment_id, "the reply process died")
        self._ping_at = None
        while not self._stopping:
            try:
                conn, proc = self._launch()
                self._handshake(conn, proc)
            except Exception as exc:
                log.error("could not restart the reply process: %s; trying again in 1 s", exc)
                time.sleep(1.0)
                continue
            with self._send_lock:
                self._conn, self._proc = conn, proc
            self.restarts += 1
            return

    def _watch(self) -> None:
        """Ping the child every `hang_s / 4` (at most every second); kill it if it is hung (module doc).
        The kill closes its pipe: the reader then fails its work and starts another (`_restart`)."""
        period = min(1.0, self.hang_s / 4)
        while not self._stopping:
            time.sleep(period)
            now = time.monotonic()
            oldest = min(list(self._segments.values()), default=now)
            ping_at = self._ping_at
            if ping_at is not None and now - ping_at > self.hang_s:
                why = f"no answer to a ping for {now - ping_at:.0f} s"
            elif now - oldest > self.hang_s:
                why = f"a synthesis outstanding for {now - oldest:.0f} s"
            else:
                if ping_at is None:
                    self._ping_at = now
                    if not self._send(("ping",)):
                        self._ping_at = None  # being replaced: ping the next one
                continue
            if self._stopping:
                return
            log.error("the reply process is hung (%s): killing it", why)
            self._ping_at = None
            self._proc.kill()


class _PipeSink:
    """In the child: every report is one message up the pipe; a closed pipe means the engine is gone."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def _report(self, *message: Any) -> None:
        try:
            with self._lock:
                self._conn.send(message)
        except (OSError, ValueError):
            os._exit(0)  # the engine is gone: nobody will hear this reply

    def text(self, device_id: str, generation_id: str, delta: str) -> None:
        self._report("text", device_id, generation_id, delta)

    def finished(self, device_id: str, generation_id: str) -> None:
        self._report("finished", device_id, generation_id)

    def failed(self, device_id: str, generation_id: str, reason: str) -> None:
        self._report("failed", device_id, generation_id, reason)

    def closed(self, device_id: str, generation_id: str) -> None:
        self._report("closed", device_id, generation_id)

    def synthesised(self, device_id: str, segment_id: int, synthesis: Synthesis) -> None:
        self._report("synthesised", device_id, segment_id, synthesis)

    def synthesis_failed(self, device_id: str, segment_id: int, reason: str) -> None:
        self._report("synthesis_failed", device_id, segment_id, reason)

    def timing(self, kind: str, seconds: float) -> None:
        self._report("timing", kind, seconds)

    def pong(self) -> None:
        self._report("pong")


def serve(conn: Connection) -> None:
    """The child's main: settings first, build the LLM client and the TTS, say ready, then carry out requests."""
    settings: ServerSettings = conn.recv()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the engine stops us
    if settings.reply_niceness:
        os.nice(settings.reply_niceness)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s[replies]: %(message)s")
    quiet_http_client(settings.log_level)
    sink = _PipeSink(conn)
    try:
        threads = ReplyThreads(settings, make_tts(settings), sink)
    except Exception as exc:
        conn.send(("error", type(exc).__name__, str(exc)))
        return
    conn.send(("ready", threads.tts_name))
    gc.collect()
    gc.freeze()  # as the engine does: nothing made at start-up is garbage (server.cli)
    while True:
        try:
            op, *args = conn.recv()
        except (EOFError, OSError):  # the engine is gone
            break
        if op == "generate":
            threads.generate(*args)
        elif op == "cancel":
            threads.cancel(*args)
        elif op == "synthesise":
            threads.synthesise(*args)
        elif op == "ping":
            sink.pong()
        elif op == "stop":
            break
    threads.close()
    os._exit(0)  # not waiting for streams nobody will hear


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
