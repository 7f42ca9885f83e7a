"""A recording pass-through in front of an OpenAI-compatible endpoint (`--llm-base-url` in live mode).

The engine's real `openai` client talks to this proxy as to the endpoint itself; every request is
forwarded unchanged (headers, body) and the response streamed back as it arrives, so the engine
sees the endpoint's own timing. What passes is recorded: the request body and its arrival time,
and the reply text (from the SSE deltas or the plain JSON), as `RecordedRequest`s of the scripted
server, so phantom/lost words are computed the same way whichever endpoint answered.
"""

from __future__ import annotations

import copy
import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from evaluation.openai_server import RecordedRequest

HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
       "transfer-encoding", "upgrade", "host", "content-length"}


def _reply_text(body: bytes, streamed: bool) -> str:
    if not streamed:
        try:
            return str(json.loads(body)["choices"][0]["message"].get("content") or "")
        except (ValueError, KeyError, IndexError, TypeError):
            return ""
    out = []
    for line in body.decode(errors="replace").splitlines():
        if not line.startswith("data:") or line.strip() == "data: [DONE]":
            continue
        try:
            delta = json.loads(line[5:])["choices"][0].get("delta") or {}
        except (ValueError, KeyError, IndexError, TypeError):
            continue
        out.append(str(delta.get("content") or ""))
    return "".join(out)


class RecordingProxy:
    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        u = urlsplit(upstream.rstrip("/"))
        self.scheme, self.netloc, self.prefix = u.scheme, u.netloc, u.path  # prefix: e.g. /v1
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._httpd = ThreadingHTTPServer((host, 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{self.prefix}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def start(self) -> "RecordingProxy":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="llm-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.netloc, timeout=300)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                now = time.monotonic()
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {}
                rec = None
                if method == "POST" and isinstance(body, dict):
                    msgs = body.get("messages") if isinstance(body.get("messages"), list) else []
                    rec = RecordedRequest(self.path, body.get("model"), copy.deepcopy(msgs),
                                          body.get("max_tokens"), bool(body.get("stream")), now, body)
                    with proxy._lock:
                        proxy._requests.append(rec)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                conn = proxy._connection()
                try:
                    conn.request(method, self.path, body=raw or None, headers=headers)
                    resp = conn.getresponse()
                except OSError as exc:
                    msg = json.dumps({"error": {"message": f"proxy: upstream unreachable: {exc}"}}).encode()
                    self.send_response(502)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP:
                        self.send_header(k, v)
                self.send_header("Connection", "close")
                self.close_connection = True
                self.end_headers()
                got = bytearray()
                try:
                    while True:
                        chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                        if not chunk:
                            break
                        got += chunk
                        self.wfile.write(chunk)
                        self.wfile.flush()
                    if rec is not None:
                        rec.completed = True
                except (BrokenPipeError, ConnectionResetError):
                    if rec is not None:
                        rec.cancelled = True
                finally:
                    conn.close()
                    if rec is not None:
                        streamed = "event-stream" in (resp.getheader("Content-Type") or "")
                        rec.reply = _reply_text(bytes(got), streamed)

            def do_POST(self) -> None:
                self._forward("POST")

            def do_GET(self) -> None:
                self._forward("GET")

        return Handler
