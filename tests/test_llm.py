"""The LLM streaming client against a real HTTP server speaking the OpenAI API (and llama.cpp)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from evaluation.openai_server import ScriptedLLMServer, split_chunks
from server.llama_server import DEFAULT_MODEL, LlamaServer, LlamaServerError, llama_cpp_installed
from server.llm import ChatStream, LLMError, complete

LONG = " ".join(f"word{i}" for i in range(300))
RULES = [
    {"match": "long", "reply": LONG},
    {"match": "weather", "reply": "It is sunny and warm today."},
    {"match": "explode", "error": 500, "reply": "scripted failure"},
    {"default": "Okay."},
]


@pytest.fixture
def srv():
    with ScriptedLLMServer(RULES, chunk_delay_s=0.002) as s:
        yield s


def user(text: str) -> list[dict]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def test_streams_deltas_and_records_the_request(srv) -> None:
    msgs = user("What's the WEATHER like?")
    with ChatStream(msgs, model="m1", max_tokens=64, base_url=srv.base_url) as stream:
        deltas = list(stream)
    assert "".join(deltas) == "It is sunny and warm today."
    assert len(deltas) == len(split_chunks("It is sunny and warm today.")) > 3
    assert stream.finish_reason == "stop" and stream.closed and stream.first_token_at is not None
    # the server records completion after its last write, which can be just after the client's last read
    assert srv.wait_for(lambda s: s.requests and s.requests[0].completed, timeout=5)
    (req,) = srv.requests
    assert req.messages == msgs and req.model == "m1" and req.max_tokens == 64 and req.stream
    assert req.completed and not req.cancelled and srv.cancelled_count == 0


def test_rules_match_only_the_last_user_message(srv) -> None:
    msgs = [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": "Sunny."},
            {"role": "user", "content": "thanks"}]
    assert complete(msgs, model="m", base_url=srv.base_url) == "Okay."
    assert complete([{"role": "user", "content": [{"type": "text", "text": "Weather now"}]}],
                    model="m", base_url=srv.base_url) == "It is sunny and warm today."


def test_max_tokens_cuts_the_reply(srv) -> None:
    with ChatStream(user("long please"), model="m", max_tokens=5, base_url=srv.base_url) as stream:
        text = "".join(stream)
    assert text == "".join(split_chunks(LONG)[:5]) and stream.finish_reason == "length"


def test_close_from_another_thread_cancels_the_http_stream(srv) -> None:
    stream = ChatStream(user("a long story"), model="m", base_url=srv.base_url)
    got: list[str] = []
    for delta in stream:
        got.append(delta)
        if len(got) == 10:
            threading.Thread(target=stream.close).start()
    assert stream.closed and 10 <= len(got) < 300
    assert srv.wait_for(lambda s: s.cancelled_count == 1)
    (req,) = srv.requests
    assert req.cancelled and not req.completed and req.chunks_sent < req.chunks_total


def test_close_wakes_a_reader_blocked_on_the_next_token() -> None:
    with ScriptedLLMServer([{"default": "one two three four"}], chunk_delay_s=5.0) as slow:
        stream = ChatStream(user("hi"), model="m", base_url=slow.base_url)
        done = threading.Event()
        got: list[str] = []

        def read() -> None:
            got.extend(stream)
            done.set()

        threading.Thread(target=read, daemon=True).start()
        time.sleep(0.2)
        t0 = time.monotonic()
        stream.close()
        assert done.wait(1.0), "the reader did not wake up"
        assert time.monotonic() - t0 < 0.5 and got == []
        assert slow.wait_for(lambda s: s.cancelled_count == 1, timeout=1)  # seen at once, not at the next write


def test_close_is_idempotent_and_safe_before_iterating(srv) -> None:
    stream = ChatStream(user("long"), model="m", base_url=srv.base_url)
    stream.close()
    stream.close()
    assert list(stream) == []


def test_errors_are_llm_errors_without_the_key(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk-secret-abc123"
    with ScriptedLLMServer(RULES, api_key="the-right-key") as s:
        with pytest.raises(LLMError) as err:
            ChatStream(user("hi"), model="m", base_url=s.base_url, api_key=secret)
        assert err.value.status_code == 401
        with pytest.raises(LLMError) as err:
            ChatStream(user("please explode"), model="m", base_url=s.base_url, api_key="the-right-key")
        assert err.value.status_code == 500 and "scripted failure" in str(err.value)
        ok = ChatStream(user("hi"), model="m", base_url=s.base_url, api_key="the-right-key")
        assert secret not in repr(ok) and "the-right-key" not in repr(ok)
        ok.close()
    with pytest.raises(LLMError, match="cannot reach"):
        ChatStream(user("hi"), model="m", base_url="http://127.0.0.1:9/v1", timeout=2)
    assert secret not in caplog.text and "the-right-key" not in caplog.text


def test_models_and_non_streaming_through_the_openai_client(srv) -> None:
    import openai

    client = openai.OpenAI(base_url=srv.base_url, api_key="x")
    assert [m.id for m in client.models.list()] == ["scripted"]
    reply = client.chat.completions.create(model="m", messages=user("weather"))
    assert reply.choices[0].message.content == "It is sunny and warm today."
    assert srv.requests[-1].stream is False


def test_llama_server_explains_what_is_missing(tmp_path) -> None:
    with pytest.raises(LlamaServerError, match="setup.sh"):
        LlamaServer(model_path=tmp_path / "missing.gguf", python="/bin/false").start()
    if llama_cpp_installed():
        with pytest.raises(LlamaServerError, match="setup.sh"):
            LlamaServer(model_path=tmp_path / "missing.gguf").start()


@pytest.mark.slow
@pytest.mark.skipif(not llama_cpp_installed(), reason="llama-cpp-python[server] not installed (scripts/setup.sh builds it)")
@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="SmolLM2 GGUF missing (scripts/setup.sh fetches it)")
def test_real_llama_cpp_server_with_smollm2() -> None:
    with LlamaServer() as llm:
        msgs = [{"role": "user", "content": "Name three colours."}]
        with ChatStream(msgs, model=llm.alias, max_tokens=40, base_url=llm.base_url, temperature=0) as stream:
            text = "".join(stream)
        assert text.strip(), "SmolLM2 answered nothing"
        assert stream.first_token_at is not None and stream.first_token_at - stream.started_at < 10
        # Cancellation against the real server: stop after a few deltas, and the server stays usable.
        stream = ChatStream([{"role": "user", "content": "Write a long story about a dragon."}],
                            model=llm.alias, max_tokens=400, base_url=llm.base_url)
        got = []
        for delta in stream:
            got.append(delta)
            if len(got) == 5:
                stream.close()
        assert len(got) == 5 and stream.closed
        assert complete(msgs, model=llm.alias, max_tokens=8, base_url=llm.base_url).strip()
