"""Streaming chat completions from any OpenAI-compatible endpoint, cancellable from another thread.

The engine stops generation the moment the user interrupts, and generation runs on a worker
thread. `ChatStream.close()` therefore shuts the HTTP connection's socket down at once (which
also wakes a reader blocked waiting for the next token), so the server sees the disconnect and
stops producing tokens nobody will hear. Iteration then simply ends, no exception.

Errors (connection, timeout, HTTP status, a broken stream that was not closed by us) become
`LLMError`. The API key is never logged and never appears in reprs or error messages.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


class LLMError(RuntimeError):
    """The LLM endpoint failed: could not connect, timed out, refused, or broke the stream."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


def quiet_http_client(level: str) -> None:
    """httpx logs every request at INFO ("HTTP Request: POST .../chat/completions 200"): one line per
    reply, ~17 a second per worker at 500 devices. segue logs the failures itself; DEBUG keeps them."""
    if level != "DEBUG":
        logging.getLogger("httpx").setLevel(logging.WARNING)


def make_client(base_url: str | None = None, api_key: str | None = None, timeout: float = 30.0) -> Any:
    """An `openai.OpenAI` client; a local base_url needs no key. No retries: latency is the point."""
    import openai

    key = api_key or os.environ.get("OPENAI_API_KEY")
    if key is None:
        if base_url is None:
            raise LLMError("no API key: set OPENAI_API_KEY, pass api_key, or set base_url to a local server")
        key = "not-needed"
    client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=0)
    client.chat.completions  # its lazily imported API (~40k objects) now, before server.cli freezes the heap
    return client


def _describe(exc: BaseException) -> LLMError:
    import openai

    if isinstance(exc, openai.APIStatusError):
        return LLMError(f"LLM endpoint answered HTTP {exc.status_code}: {exc.message}", exc.status_code)
    if isinstance(exc, openai.APITimeoutError):
        return LLMError("LLM endpoint timed out")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        return LLMError(f"cannot reach the LLM endpoint: {cause or exc}")
    return LLMError(f"LLM stream failed: {type(exc).__name__}: {exc}")


class ChatStream:
    """One streamed chat completion: iterate for text deltas; `close()` cancels it.

    The request is sent on construction (so a refused request raises `LLMError` right there).
    Iterate from one thread; `close()` may be called from any thread, any number of times.
    """

    def __init__(
        self,
        messages: list[dict[str, Any]],
        model: str,
        max_tokens: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        temperature: float | None = None,
        client: Any = None,
    ) -> None:
        self.model = model
        self.finish_reason: str | None = None
        self.started_at = time.monotonic()
        self.first_token_at: float | None = None
        self._parts: list[str] = []
        self._lock = threading.Lock()
        self._closed = False
        self._owns_client = client is None
        self._client = client if client is not None else make_client(base_url, api_key, timeout)
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        if temperature is not None:
            kwargs["temperature"] = temperature
        try:
            self._stream = self._client.chat.completions.create(**kwargs)
        except Exception as exc:
            self._close_client()
            raise _describe(exc) from exc
        log.debug("chat stream opened: model=%s base_url=%s", model, self._client.base_url)

    def __repr__(self) -> str:
        return f"ChatStream(model={self.model!r}, base_url={str(self._client.base_url)!r}, closed={self._closed})"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def text(self) -> str:
        """Everything received so far."""
        return "".join(self._parts)

    def __iter__(self) -> Iterator[str]:
        try:
            for chunk in self._stream:
                if self._closed:
                    break
                for choice in chunk.choices or ():
                    if choice.finish_reason:
                        self.finish_reason = choice.finish_reason
                    delta = choice.delta.content if choice.delta is not None else None
                    if delta:
                        if self.first_token_at is None:
                            self.first_token_at = time.monotonic()
                        self._parts.append(delta)
                        yield delta
        except Exception as exc:
            if self._closed:  # we cut it: a read on a shut-down socket fails, as it should
                return
            raise _describe(exc) from exc
        finally:
            self.close()

    def close(self) -> None:
        """Cancel: shut the socket down now (wakes a blocked read), then release the connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        sock = self._socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self._stream.close()
        except Exception:  # closing a half-read response on a dead socket may complain
            pass
        self._close_client()

    def _socket(self) -> socket.socket | None:
        try:
            network_stream = self._stream.response.extensions["network_stream"]
            sock = network_stream.get_extra_info("socket")
        except (AttributeError, KeyError):
            return None
        return sock if isinstance(sock, socket.socket) else None

    def _close_client(self) -> None:
        if self._owns_client:
            try:
                self._client.close()
            except Exception:
                pass

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PendingStream:
    """A generation's place from before its request is sent: `close()` cancels it at whatever stage.

    `ChatStream` sends its request in its constructor, which blocks until the response headers come;
    a cancel in that window has no stream to close. Register one of these *before* opening, then
    `open()` on the worker: it refuses to open once closed, and closes a stream that was opened while
    the cancel arrived, so the endpoint stops generating at once instead of running to max_tokens.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stream: ChatStream | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def open(self, messages: list[dict[str, Any]], model: str, **settings: Any) -> ChatStream | None:
        """The open stream, or None when cancelled first (before or while the request was sent)."""
        if self._closed:
            return None
        stream = ChatStream(messages, model, **settings)
        with self._lock:
            cancelled = self._closed
            if not cancelled:
                self._stream = stream
        if cancelled:
            stream.close()
            return None
        return stream

    def close(self) -> None:
        with self._lock:
            self._closed = True
            stream = self._stream
        if stream is not None:
            stream.close()


def complete(messages: list[dict[str, Any]], model: str, **settings: Any) -> str:
    """Convenience: the whole reply as one string (still streamed underneath)."""
    with ChatStream(messages, model, **settings) as stream:
        return "".join(stream)
