"""The interruption classifier: rules, model, streaming, LLM backend (real client, local server), CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation.classify import DataError, evaluate, load_examples, train_and_test
from icp.classifier import LexicalClassifier, StreamingClassifier, is_bare_stop
from icp.classifier.cues import is_backchannel
from icp.dispositions import Classification, ClassifyRequest, Disposition, Hint

ROOT = Path(__file__).resolve().parent.parent
DEV_SET = Path(__file__).resolve().parents[1] / "data" / "classifier" / "interruptions-dev.jsonl"
OWN_SET = ROOT / "data" / "classifier" / "interruptions-train.jsonl"
NAV_SET = ROOT / "data" / "classifier" / "navigation.jsonl"



@pytest.fixture(scope="module")
def clf() -> LexicalClassifier:
    return LexicalClassifier()


def speaking(utterance: str, context: str = "The sauce should simmer for twenty minutes.") -> ClassifyRequest:
    return ClassifyRequest(utterance, context, speaking=True)


def idle(utterance: str) -> ClassifyRequest:
    return ClassifyRequest(utterance, "The sauce should simmer for twenty minutes.", speaking=False)


# --- rules -----------------------------------------------------------------------------------


@given(st.text(max_size=60), st.booleans())
@settings(max_examples=100, deadline=None)
def test_hint_cancel_short_cuts_everything(utterance: str, is_speaking: bool) -> None:
    result = LexicalClassifier().classify(
        ClassifyRequest(utterance, "anything", speaking=is_speaking, hint=Hint.CANCEL)
    )
    assert result == Classification(Disposition.CANCEL, 1.0, "hint")


@given(st.text(max_size=80), st.text(max_size=80), st.booleans())
@settings(max_examples=200, deadline=None)
def test_any_text_gets_a_legal_answer(utterance: str, context: str, is_speaking: bool) -> None:
    result = LexicalClassifier().classify(ClassifyRequest(utterance, context, speaking=is_speaking))
    legal = {"BRANCH", "MODIFY", "CANCEL", "ABSORB"} if is_speaking else {"RESUME", "DROP", "NEW"}
    assert result.disposition in legal
    assert 0.0 <= result.confidence <= 1.0


@pytest.mark.parametrize(
    "text",
    ["stop", "Stop.", "um stop", "stop stop stop", "cancel", "shut up", "uh shut up please",
     "that's enough", "okay that's enough thanks", "never mind", "nevermind", "forget it",
     "oh forget it", "no no no stop", "enough already"],
)
def test_bare_stops(text: str) -> None:
    assert is_bare_stop(text)


@pytest.mark.parametrize(
    "text",
    ["forget it what's the weather tomorrow", "stop and tell me a joke",
     "never mind play some jazz", "cancel that and set a timer", "what's the weather",
     "uh huh", "", "[cough]", "let's talk about something else"],
)
def test_not_bare_stops(text: str) -> None:
    assert not is_bare_stop(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Mm hmm", True), ("Mm-m-m.", True), ("Hm.", True), ("and m-m-m-m.", True), ("so yeah", True),
     ("and", False), ("and then?", False), ("but what about Paris", False), ("so what", False)],
)
def test_backchannels_with_a_leading_conjunction(text: str, expected: bool) -> None:
    """Audio mode heard a hummed "Mm hmm" as "and m-m-m-m." (the echo's last word in front)."""
    assert is_backchannel(text) is expected


# --- every label on clear examples -------------------------------------------------------------

CLEAR: list[tuple[ClassifyRequest, Disposition]] = [
    (speaking("wait what does simmer mean"), Disposition.BRANCH),
    (speaking("how do you spell that", "Turn left onto Tchoupitoulas Street."), Disposition.BRANCH),
    (speaking("no i meant celsius not fahrenheit", "Preheat to four hundred degrees."), Disposition.MODIFY),
    (speaking("make it shorter please"), Disposition.MODIFY),
    (speaking("stop"), Disposition.CANCEL),
    (speaking("forget it what's the weather tomorrow"), Disposition.CANCEL),
    (speaking("set a timer for ten minutes", "The Roman Republic had two consuls."), Disposition.CANCEL),
    (speaking("uh huh"), Disposition.ABSORB),
    (speaking("[cough]"), Disposition.ABSORB),
    (speaking("max stop barking"), Disposition.ABSORB),
    (speaking("right", "You'll pass a big red barn on your right."), Disposition.ABSORB),
    (idle("okay go back"), Disposition.RESUME),
    (idle("continue"), Disposition.RESUME),
    (idle("where were you"), Disposition.RESUME),
    (idle("never mind"), Disposition.DROP),
    (idle("forget it"), Disposition.DROP),
    (idle("what's the weather tomorrow"), Disposition.NEW),
    (idle("set an alarm for seven"), Disposition.NEW),
]


@pytest.mark.parametrize(("request_", "expected"), CLEAR, ids=[r.utterance for r, _ in CLEAR])
def test_clear_examples(clf: LexicalClassifier, request_: ClassifyRequest, expected: Disposition) -> None:
    assert clf.classify(request_).disposition is expected


# --- streaming ---------------------------------------------------------------------------------


def test_streaming_decides_after_a_few_words_and_final_can_revise(clf: LexicalClassifier) -> None:
    stream = StreamingClassifier(clf, last_heard_sentence="Preheat the oven to 350 degrees Fahrenheit.")
    assert stream.update("no") is None  # too few words to commit
    assert stream.update("no i meant") is None or stream.decision is not None
    decision = stream.update("no i meant celsius please")
    assert decision is not None and decision.disposition is Disposition.MODIFY
    assert stream.update("no i meant celsius please thanks") is decision  # stable once decided
    final = stream.final("no i meant celsius please")
    assert final.disposition is Disposition.MODIFY and not stream.revised


def test_streaming_hint_decides_at_once(clf: LexicalClassifier) -> None:
    stream = StreamingClassifier(clf, last_heard_sentence="x", hint=Hint.CANCEL)
    decision = stream.update("")
    assert decision is not None and decision.disposition is Disposition.CANCEL


def test_streaming_marks_revision(clf: LexicalClassifier) -> None:
    stream = StreamingClassifier(clf, last_heard_sentence="The war ended in 1918.", threshold=0.0)
    first = stream.update("stop it max stop")
    assert first is not None
    final = stream.final("what's the weather tomorrow" if first.disposition is not Disposition.CANCEL else "uh huh")
    assert stream.revised == (final.disposition != first.disposition)


# --- accuracy on the dev set, through the real eval function -----------------------------------


def test_dev_set_accuracy(clf: LexicalClassifier) -> None:
    report = evaluate(load_examples(DEV_SET), clf)
    assert report.n == 160
    assert report.accuracy >= 0.90
    for label in ("BRANCH", "MODIFY", "CANCEL", "ABSORB"):
        assert report.recall(label) >= 0.85, label
    assert report.percentile_ms(0.95) <= 20.0


def test_trained_only_on_own_data_generalises_to_dev() -> None:
    """The honest number: the dev set is never seen by this model."""
    report = train_and_test(load_examples(OWN_SET), load_examples(DEV_SET))
    assert report.accuracy >= 0.90
    for label in ("BRANCH", "MODIFY", "CANCEL", "ABSORB"):
        assert report.recall(label) >= 0.85, label


def test_navigation_set(clf: LexicalClassifier) -> None:
    report = evaluate(load_examples(NAV_SET), clf)
    assert report.labels == ["RESUME", "DROP", "NEW"]
    assert report.accuracy >= 0.90


def test_core_stays_stdlib_only() -> None:
    code = (
        "import sys, icp.classifier; from icp.classifier import LexicalClassifier;"
        "LexicalClassifier();"
        "mods = {m.split('.')[0] for m in sys.modules};"
        "print(sorted(mods & {'numpy', 'openai', 'httpx', 'sklearn', 'evaluation', 'server'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# --- LLM backend through a real local HTTP server ----------------------------------------------

Reply = Callable[[dict[str, object]], str]  # request body -> message content


class _ChatServer:
    def __init__(self, reply: Reply, delay: float = 0.0) -> None:
        self.requests: list[dict[str, object]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                if not self.path.endswith("/chat/completions"):
                    self.send_error(404)
                    return
                if delay:
                    time.sleep(delay)
                payload = json.dumps(
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model", "m"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply(body)},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                ).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up: that is the point of the test

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> _ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server() -> Iterator[Callable[..., _ChatServer]]:
    servers: list[_ChatServer] = []

    def start(reply: Reply, delay: float = 0.0) -> _ChatServer:
        server = _ChatServer(reply, delay)
        server.__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


def _llm(server: _ChatServer, timeout: float = 5.0):  # noqa: ANN202
    from server.classify_llm import LLMClassifier

    return LLMClassifier(base_url=server.base_url, model="test-model", fallback=LexicalClassifier(), timeout=timeout)


def test_llm_valid_json(chat_server: Callable[..., _ChatServer]) -> None:
    server = chat_server(lambda body: '{"disposition": "BRANCH", "confidence": 0.8}')
    result = _llm(server).classify(speaking("stop"))  # the LLM answer wins even against the rules
    assert result == Classification(Disposition.BRANCH, 0.8, "llm")
    sent = server.requests[0]
    assert sent["model"] == "test-model"
    assert sent["response_format"] == {"type": "json_object"}
    assert "stop" in json.dumps(sent["messages"])


def test_llm_fenced_json_is_accepted(chat_server: Callable[..., _ChatServer]) -> None:
    server = chat_server(lambda body: '```json\n{"disposition": "resume", "confidence": 0.9}\n```')
    assert _llm(server).classify(idle("take me back")).disposition is Disposition.RESUME


@pytest.mark.parametrize(
    "content",
    [
        "BRANCH",
        '{"disposition": "BRANCH"',
        '{"disposition": "MAYBE", "confidence": 0.9}',
        '{"disposition": "RESUME", "confidence": 0.9}',  # not legal while speaking
        '{"disposition": "CANCEL", "confidence": 7}',
        '{"disposition": "CANCEL", "confidence": "high"}',
        '["CANCEL"]',
    ],
)
def test_llm_invalid_json_falls_back(chat_server: Callable[..., _ChatServer], content: str) -> None:
    server = chat_server(lambda body: content)
    llm = _llm(server)
    result = llm.classify(speaking("uh huh"))
    assert result.disposition is Disposition.ABSORB
    assert result.source.endswith("(llm-fallback)")
    assert llm.failures == 1


def test_llm_timeout_falls_back(chat_server: Callable[..., _ChatServer]) -> None:
    server = chat_server(lambda body: '{"disposition": "BRANCH", "confidence": 0.9}', delay=2.0)
    llm = _llm(server, timeout=0.3)
    start = time.monotonic()
    result = llm.classify(speaking("stop"))
    assert time.monotonic() - start < 1.5
    assert result.disposition is Disposition.CANCEL and "fallback" in result.source


def test_llm_unreachable_falls_back() -> None:
    from server.classify_llm import LLMClassifier

    llm = LLMClassifier(base_url="http://127.0.0.1:9/v1", model="m", fallback=LexicalClassifier(), timeout=0.5)
    assert llm.classify(speaking("yeah")).disposition is Disposition.ABSORB


def test_auto_asks_llm_only_when_local_is_unsure(chat_server: Callable[..., _ChatServer]) -> None:
    from server.classify_llm import AutoClassifier

    server = chat_server(lambda body: '{"disposition": "MODIFY", "confidence": 0.7}')
    auto = AutoClassifier(local=LexicalClassifier(), llm=_llm(server), threshold=0.75)
    sure = auto.classify(speaking("uh huh"))  # a rule: confidence 0.97
    assert sure.disposition is Disposition.ABSORB and server.requests == []
    hinted = auto.classify(ClassifyRequest("blah", "x", speaking=True, hint=Hint.CANCEL))
    assert hinted.source == "hint" and server.requests == []
    always = AutoClassifier(local=LexicalClassifier(), llm=_llm(server), threshold=1.01)
    assert always.classify(speaking("uh huh")) == Classification(Disposition.MODIFY, 0.7, "llm")
    assert len(server.requests) == 1


def test_auto_keeps_local_answer_when_llm_is_broken(chat_server: Callable[..., _ChatServer]) -> None:
    from server.classify_llm import AutoClassifier

    server = chat_server(lambda body: "I think it is a branch")
    auto = AutoClassifier(local=LexicalClassifier(), llm=_llm(server), threshold=1.01)
    result = auto.classify(speaking("stop"))
    assert result.disposition is Disposition.CANCEL and result.source == "rules"


# --- CLI -----------------------------------------------------------------------------------------


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_cli_json_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evaluation.cli import main

    rows = [
        {"id": "t1", "context": "Simmer for ten minutes.", "utterance": "stop", "label": "CANCEL"},
        {"id": "t2", "context": "Simmer for ten minutes.", "utterance": "uh huh", "label": "ABSORB"},
        {"id": "t3", "context": "Simmer for ten minutes.", "utterance": "what does simmer mean", "label": "BRANCH"},
        {"id": "t4", "context": "Simmer for ten minutes.", "utterance": "make it vegan", "label": "MODIFY"},
    ]
    out = tmp_path / "out.json"
    assert main(["classify", str(_write(tmp_path / "set.jsonl", rows)), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data) == {"accuracy", "per_label", "confusion", "latency_ms", "n"}
    assert data["n"] == 4 and 0.0 <= data["accuracy"] <= 1.0
    assert set(data["per_label"]) == {"BRANCH", "MODIFY", "CANCEL", "ABSORB"}
    assert all(set(v) == {"precision", "recall"} for v in data["per_label"].values())
    assert set(data["confusion"]) == set(data["per_label"])
    assert sum(sum(row.values()) for row in data["confusion"].values()) == 4
    assert set(data["latency_ms"]) == {"p50", "p95"}
    assert "accuracy" in capsys.readouterr().out


def test_cli_navigation_file_is_classified_idle(tmp_path: Path) -> None:
    from evaluation.cli import main

    rows = [
        {"context": "Whisk the eggs.", "utterance": "okay go back", "label": "RESUME"},
        {"context": "Whisk the eggs.", "utterance": "never mind", "label": "DROP"},
        {"context": "Whisk the eggs.", "utterance": "tell me a joke", "label": "NEW"},
    ]
    out = tmp_path / "nav.json"
    assert main(["classify", str(_write(tmp_path / "nav.jsonl", rows)), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["per_label"]) == {"RESUME", "DROP", "NEW"} and data["accuracy"] == 1.0


def test_cli_cv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evaluation.cli import main

    assert main(["classify", str(NAV_SET), "--cv", "3", "--train-data"]) == 0
    assert "3-fold CV (file only): accuracy=" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: not valid JSON"),
        ('{"context": "c", "label": "ABSORB"}', "line 2: field 'utterance' is missing"),
        ('{"context": "c", "utterance": 3, "label": "ABSORB"}', "line 2: field 'utterance' must be a string"),
        ('{"context": "c", "utterance": "u", "label": "MAYBE"}', "line 2: field 'label' is 'MAYBE'"),
    ],
)
def test_malformed_lines_are_rejected_with_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    from evaluation.cli import main

    path = tmp_path / "bad.jsonl"
    path.write_text('{"context": "c", "utterance": "u", "label": "ABSORB"}\n' + line + "\n")
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        load_examples(path)
    assert main(["classify", str(path)]) == 2
    assert message in capsys.readouterr().err
