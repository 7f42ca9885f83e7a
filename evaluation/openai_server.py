"""A small local OpenAI-compatible server with scripted replies, for tests and the harness.

It speaks enough of the OpenAI HTTP API that the real `openai` client code path runs unchanged:
`POST /v1/chat/completions` (SSE streaming and plain), `GET /v1/models`, and `POST /v1/audio/speech`
(espeak-ng audio, so the OpenAI speech TTS backend is exercised for real). Replies stream in small
token-like chunks with a delay between them, so a client that closes the stream mid-reply is seen
(EOF on the socket while waiting, or a failed write): the request is marked cancelled and the
chunks sent are counted.

    with ScriptedLLMServer([{"match": "weather", "reply": "Sunny."}, {"default": "Okay."}]) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="x")
"""

from __future__ import annotations

import copy
import io
import json
import re
import select
import socket
import threading
import time
import uuid
import wave
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Rule = dict[str, Any]


@dataclass
class RecordedRequest:
    path: str
    model: str | None
    messages: list[dict[str, Any]]
    max_tokens: int | None
    stream: bool
    time: float  # time.monotonic() when received
    body: dict[str, Any] = field(default_factory=dict)
    reply: str = ""
    chunks_total: int = 0
    chunks_sent: int = 0
    completed: bool = False
    cancelled: bool = False  # the client closed the stream before the end
    speech_words: tuple[Any, ...] = ()  # /audio/speech: espeak's own word timings of the audio


def split_chunks(text: str) -> list[str]:
    """Token-like pieces: a word with its leading space, long words cut every 4 characters."""
    return re.findall(r"\s*\S{1,4}|\s+$", text)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


class ScriptedLLMServer:
    """Context manager running the server on 127.0.0.1 in a background thread."""

    def __init__(
        self,
        rules: list[Rule] | None = None,
        chunk_delay_s: float = 0.002,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        model_id: str = "scripted",
        first_token_delay_s: float | None = None,
    ) -> None:
        self.rules = list(rules or [{"default": "Okay."}])
        self.chunk_delay_s = chunk_delay_s
        # A fixed time to the first content token (a model's prefill, e.g. 50 ms in `segue-bench
        # turns`); None: the first token waits `chunk_delay_s` like the others.
        self.first_token_delay_s = first_token_delay_s
        self.api_key = api_key  # when set, requests must carry it (to test auth errors)
        self.model_id = model_id
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._tts: Any = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> ScriptedLLMServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="scripted-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    # -- what was seen ---------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def cancelled_count(self) -> int:
        with self._lock:
            return sum(r.cancelled for r in self._requests)

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> bool:
        """Poll until `predicate(self)` holds (the server notices a disconnect on its next write)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.005)
        return bool(predicate(self))

    def reply_for(self, messages: list[dict[str, Any]]) -> Rule:
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
        text = _content_text(last_user.get("content")).lower() if last_user else ""
        for rule in self.rules:
            if "match" in rule and str(rule["match"]).lower() in text:
                return rule
        for rule in self.rules:
            if "default" in rule:
                return {"reply": rule["default"], **{k: v for k, v in rule.items() if k != "default"}}
        return {"reply": ""}

    # -- handler ---------------------------------------------------------------------------------
    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(req)

    def _update(self, req: RecordedRequest, **changes: Any) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(req, k, v)

    def _speech(self, text: str, response_format: str) -> tuple[bytes, str, tuple[Any, ...]]:
        from server.tts.espeak import EspeakTTS

        with self._lock:
            if self._tts is None:
                self._tts = EspeakTTS(sample_rate=24000)
            tts = self._tts
        syn = tts.synthesise(text)
        if response_format == "wav":
            buf = io.BytesIO()
            with wave.open(buf, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(syn.sample_rate)
                w.writeframes(syn.pcm)
            return buf.getvalue(), "audio/wav", syn.words
        return syn.pcm, "audio/pcm", syn.words

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, message: str) -> None:
                self._json(status, {"error": {"message": message, "type": "invalid_request_error", "code": status}})

            def _peer_closed(self, wait_s: float) -> bool:
                """Wait up to `wait_s`; True if the client hung up meanwhile (EOF on our socket)."""
                readable, _, _ = select.select([self.connection], [], [], wait_s)
                if not readable:
                    return False
                try:
                    return self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

            def _authorised(self) -> bool:
                if server.api_key is None:
                    return True
                if self.headers.get("Authorization") == f"Bearer {server.api_key}":
                    return True
                self._error(401, "invalid api key")
                return False

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                if self.path.rstrip("/") == "/v1/models":
                    self._json(200, {"object": "list", "data": [
                        {"id": server.model_id, "object": "model", "created": 0, "owned_by": "segue"}]})
                else:
                    self._error(404, f"no route {self.path}")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if not self._authorised():
                    return
                try:
                    body = json.loads(raw or b"{}")
                    if not isinstance(body, dict):
                        raise ValueError("body is not an object")
                except ValueError as exc:
                    self._error(400, f"bad JSON: {exc}")
                    return
                path = self.path.rstrip("/")
                if path == "/v1/chat/completions":
                    self._chat(body)
                elif path == "/v1/audio/speech":
                    self._audio(body)
                else:
                    self._error(404, f"no route {self.path}")

            def _audio(self, body: dict[str, Any]) -> None:
                req = RecordedRequest(self.path, body.get("model"), [], None, False, time.monotonic(), body)
                server._record(req)
                text = str(body.get("input", ""))
                fmt = str(body.get("response_format") or "mp3")
                if fmt not in ("pcm", "wav"):
                    self._error(400, f"response_format {fmt!r} not supported here (use pcm or wav)")
                    return
                data, ctype, words = server._speech(text, fmt)
                server._update(req, speech_words=words, completed=True)
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _chat(self, body: dict[str, Any]) -> None:
                messages = body.get("messages")
                if not isinstance(messages, list):
                    self._error(400, "messages must be a list")
                    return
                max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
                stream = bool(body.get("stream"))
                req = RecordedRequest(self.path, body.get("model"), copy.deepcopy(messages),
                                      max_tokens, stream, time.monotonic(), body)
                server._record(req)
                rule = server.reply_for(messages)
                if "error" in rule:
                    self._error(int(rule["error"]), str(rule.get("reply", "scripted error")))
                    return
                chunks = split_chunks(str(rule.get("reply", "")))
                finish = "stop"
                if isinstance(max_tokens, int) and max_tokens < len(chunks):
                    chunks, finish = chunks[:max_tokens], "length"
                reply = "".join(chunks)
                server._update(req, reply=reply, chunks_total=len(chunks))
                ident = f"chatcmpl-{uuid.uuid4().hex[:12]}"
                model = body.get("model") or server.model_id
                if not stream:
                    self._json(200, {
                        "id": ident, "object": "chat.completion", "created": int(time.time()), "model": model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                     "finish_reason": finish}],
                        "usage": {"prompt_tokens": 0, "completion_tokens": len(chunks), "total_tokens": len(chunks)},
                    })
                    server._update(req, chunks_sent=len(chunks), completed=True)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                delay = float(rule.get("chunk_delay_s", server.chunk_delay_s))
                first = server.first_token_delay_s

                def event(delta: dict[str, Any], finish_reason: str | None) -> bytes:
                    payload = {"id": ident, "object": "chat.completion.chunk", "created": int(time.time()),
                               "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
                    return f"data: {json.dumps(payload)}\n\n".encode()

                try:
                    self.wfile.write(event({"role": "assistant", "content": ""}, None))
                    self.wfile.flush()
                    for i, piece in enumerate(chunks):
                        if self._peer_closed(first if i == 0 and first is not None else delay):
                            raise ConnectionResetError("client closed the stream")
                        self.wfile.write(event({"content": piece}, None))
                        self.wfile.flush()
                        server._update(req, chunks_sent=i + 1)
                    self.wfile.write(event({}, finish))
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                    server._update(req, completed=True)
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                    server._update(req, cancelled=True)

        return Handler


def main() -> None:
    """Serve scripted replies on a port until interrupted: `python -m evaluation.openai_server RULES.json`."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("rules", nargs="?", help="JSON file with [{match, reply}, {default}]")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--chunk-delay", type=float, default=0.02)
    args = parser.parse_args()
    rules = json.load(open(args.rules)) if args.rules else None
    with ScriptedLLMServer(rules, chunk_delay_s=args.chunk_delay, port=args.port) as srv:
        print(f"serving {srv.base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
