"""LLM interruption classifier over any OpenAI-compatible endpoint, and the local+LLM combination.

The LLM is only asked when the fast local classifier is unsure, because it costs a network round
trip while the device sits paused. Its answer must be strict JSON
`{"disposition": "...", "confidence": 0.x}` with a disposition legal for the situation; anything
else (bad JSON, wrong label, timeout, HTTP error) falls back to the local answer, so a flaky or
weak endpoint can only ever cost accuracy, never a stuck conversation.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace

import openai

from icp.dispositions import (
    INTERRUPTION_DISPOSITIONS,
    NAVIGATION_INTENTS,
    Classification,
    Classifier,
    ClassifyRequest,
    Disposition,
    Hint,
)

log = logging.getLogger(__name__)

INTERRUPTION_PROMPT = """\
You classify what a user said while a voice assistant was talking. The user's words are ASR text:
lowercase, fillers, misspellings of the word they ask about ("a sink function" for async function). Labels:
BRANCH: a side question or clarification about what was just said ("wait, what's attention?", "how do you spell that").
MODIFY: a correction or refinement of the original request, also as a constraint or a question ("no, I meant Python 3", "shorter please", "in metric", "i'm on linux", "didn't i ask for vegetarian?").
CANCEL: stop, abandon, or redirect to something unrelated ("stop", "never mind", "that's enough", "shut up", "what time is it" when the answer is about something else).
ABSORB: a backchannel or noise ("uh huh", "wow", "[cough]"), or speech to someone else in the room even with "stop" in it ("honey, dinner's ready", "max stop barking").
Answer with JSON only: {"disposition": "<LABEL>", "confidence": <0..1>}"""

NAVIGATION_PROMPT = """\
You classify what a user said to an idle voice assistant that holds an interrupted answer. Labels:
RESUME: go back to the interrupted answer ("okay go back", "continue", "where were you").
DROP: discard the interrupted answer ("never mind", "forget it").
NEW: a new request.
Answer with JSON only: {"disposition": "<LABEL>", "confidence": <0..1>}"""

_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class InvalidAnswer(ValueError):
    """The model's reply was not the strict JSON we asked for."""


def parse_answer(text: str, speaking: bool) -> tuple[Disposition, float]:
    """Validate `{"disposition": ..., "confidence": ...}`; tolerate only a ```json fence around it."""
    match = _FENCE_RE.match(text)
    body = match.group(1) if match else text.strip()
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidAnswer(f"not JSON: {exc.msg}") from None
    if not isinstance(obj, dict):
        raise InvalidAnswer("not a JSON object")
    label = obj.get("disposition")
    if not isinstance(label, str):
        raise InvalidAnswer("disposition missing or not a string")
    try:
        disposition = Disposition(label.strip().upper())
    except ValueError:
        raise InvalidAnswer(f"unknown disposition {label!r}") from None
    allowed = INTERRUPTION_DISPOSITIONS if speaking else NAVIGATION_INTENTS
    if disposition not in allowed:
        raise InvalidAnswer(f"{disposition} is not legal when speaking={speaking}")
    confidence = obj.get("confidence", 0.5)
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise InvalidAnswer("confidence is not a number")
    if not 0.0 <= float(confidence) <= 1.0:
        raise InvalidAnswer(f"confidence {confidence} outside 0..1")
    return disposition, float(confidence)


class LLMClassifier:
    """Asks a chat-completions endpoint; falls back to `fallback` on any failure."""

    source = "llm"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        fallback: Classifier,
        api_key: str = "not-needed",
        timeout: float = 3.0,
        json_mode: bool = True,
        client: openai.OpenAI | None = None,
    ) -> None:
        # max_retries=0: a retry would double the time the user waits in silence.
        self._client = client or openai.OpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0
        )
        self._model = model
        self._fallback = fallback
        self._json_mode = json_mode
        self.failures = 0  # counted for monitoring: a rising number means a bad endpoint

    def _messages(self, request: ClassifyRequest) -> list[dict[str, str]]:
        system = INTERRUPTION_PROMPT if request.speaking else NAVIGATION_PROMPT
        user = json.dumps(
            {"last_heard_sentence": request.last_heard_sentence, "user_said": request.utterance}
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def ask(self, request: ClassifyRequest) -> Classification:
        """One LLM call; raises on transport errors or `InvalidAnswer`."""
        kwargs: dict[str, object] = {}
        if self._json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        response = self._client.chat.completions.create(
            model=self._model,
            messages=self._messages(request),  # type: ignore[arg-type]
            temperature=0.0,
            max_tokens=40,
            **kwargs,  # type: ignore[arg-type]
        )
        if not response.choices or response.choices[0].message.content is None:
            raise InvalidAnswer("empty reply")
        disposition, confidence = parse_answer(response.choices[0].message.content, request.speaking)
        return Classification(disposition, confidence, self.source)

    def classify(self, request: ClassifyRequest) -> Classification:
        if request.hint is Hint.CANCEL:
            return Classification(Disposition.CANCEL, 1.0, "hint")
        try:
            return self.ask(request)
        except (openai.OpenAIError, InvalidAnswer) as exc:
            self.failures += 1
            log.warning("LLM classifier failed (%s: %s); using fallback", type(exc).__name__, exc)
            result = self._fallback.classify(request)
            return replace(result, source=f"{result.source}(llm-fallback)")


class AutoClassifier:
    """Local first; the LLM only when the local answer is below `threshold` and an LLM is set."""

    def __init__(self, *, local: Classifier, llm: LLMClassifier | None, threshold: float = 0.75) -> None:
        self._local = local
        self._llm = llm
        self._threshold = threshold

    def classify(self, request: ClassifyRequest) -> Classification:
        local = self._local.classify(request)
        if self._llm is None or local.confidence >= self._threshold or request.hint is not None:
            return local
        try:
            return self._llm.ask(request)
        except (openai.OpenAIError, InvalidAnswer) as exc:
            self._llm.failures += 1
            log.warning("LLM classifier failed (%s: %s); keeping local answer", type(exc).__name__, exc)
            return local


def make_classifier(
    backend: str = "local",
    *,
    base_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float = 3.0,
    threshold: float = 0.75,
) -> Classifier:
    """Build the classifier a server setting names: "local", "llm" or "auto".

    "local" is the embedding classifier, or the lexical one where its model cannot load; it is also
    what "auto" consults first and what "llm" falls back to."""
    from server.classify_embed import best_local_classifier

    local = best_local_classifier()
    if backend == "local" or (backend == "auto" and not base_url):
        return local
    if not base_url:
        raise ValueError(f"classifier backend {backend!r} needs an LLM base URL")
    llm = LLMClassifier(
        base_url=base_url,
        model=model or "default",
        fallback=local,
        api_key=api_key or "not-needed",
        timeout=timeout,
    )
    if backend == "llm":
        return llm
    if backend == "auto":
        return AutoClassifier(local=local, llm=llm, threshold=threshold)
    raise ValueError(f"unknown classifier backend {backend!r}")
