"""Deciding on ASR partials, so the engine can start work before the user finishes talking.

A decision is offered once the partial has at least `min_words` words and the classifier is at
least `threshold` confident; it is provisional, and `final()` always re-classifies the full text
(the engine revises if the final disagrees). A device hint decides at once.
"""

from __future__ import annotations

from icp.dispositions import Classification, Classifier, ClassifyRequest, Hint

from .cues import words


class StreamingClassifier:
    def __init__(
        self,
        classifier: Classifier,
        *,
        last_heard_sentence: str,
        speaking: bool = True,
        hint: Hint | None = None,
        min_words: int = 3,
        threshold: float = 0.85,
    ) -> None:
        self._classifier = classifier
        self._context = last_heard_sentence
        self._speaking = speaking
        self._hint = hint
        self._min_words = min_words
        self._threshold = threshold
        self.decision: Classification | None = None  # the first confident partial decision
        self.revised = False  # set by final(): the partial decision turned out wrong

    def _request(self, text: str) -> ClassifyRequest:
        return ClassifyRequest(text, self._context, self._speaking, self._hint)

    def update(self, partial: str) -> Classification | None:
        """The provisional decision once one is confident enough, else None."""
        if self.decision is not None:
            return self.decision
        if self._hint is None and len(words(partial)) < self._min_words:
            return None
        result = self._classifier.classify(self._request(partial))
        if self._hint is not None or result.confidence >= self._threshold:
            self.decision = result
        return self.decision

    def final(self, text: str) -> Classification:
        """Classify the final transcript; it supersedes any partial decision.

        `revised` tells the engine whether it acted on a partial decision that was wrong.
        """
        result = self._classifier.classify(self._request(text))
        self.revised = self.decision is not None and self.decision.disposition != result.disposition
        return result
