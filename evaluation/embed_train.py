"""Training the embedding classifier's head, with augmentation: redirects made from side questions.

The labelling rule that hurts most is "a question that has nothing to do with the current answer is
a redirect (CANCEL)". Hand-written data has few such pairs, so a head learns "question -> BRANCH".
Every hand-written side question that names what its own context is about ("which tournaments count
as grand slams" after a sentence about Grand Slams) becomes a redirect when it is moved under a
sentence of another topic that shares none of its content words. Clarification requests ("wait,
what's a vector?", "sorry what does X mean") are not moved: the heard sentence is only the last one,
and asking what a word means is a side question about the answer even when that word was said
earlier. Echoes with a backchannel ("sixty
three wow") are the ABSORB counterpart: a repeated fragment of the heard sentence plus an
acknowledgement is not a question. Deterministic for a given seed; only ever used for training.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from icp.classifier import LexicalClassifier
from icp.classifier.features import context_overlap
from icp.classifier.cues import matches
from icp.classifier.lexicon import CLARIFY_CUES
from icp.classifier.text import content_tokens, tokens
from icp.classifier.train import INTERRUPTION_LABELS, Example, train_model
from icp.dispositions import Disposition
from server.classify_embed import EmbeddingClassifier, SentenceEncoder, cue_vector, features
from server.embed_head import SoftmaxHead, fit

# Chosen on data/classifier/validation/ (see data/classifier/README.md).
HEAD_L2 = 0.1

_DEICTIC = frozenset("that it this those them there he she they these his her its".split())
_ECHO_TAILS = ("wow", "huh", "really", "oh", "okay", "no way", "ha", "hm", "right", "yeah", "cool")
_OPENERS = frozenset("wait sorry hold hang pardon huh excuse".split())
_STOP = frozenset("the a an of to in and is are was were be for on at by with it that this".split())


def redirects(examples: Sequence[Example], *, per_item: int = 1, seed: int = 0) -> list[Example]:
    """CANCEL examples: on-topic side questions moved under contexts that share nothing with them."""
    rng = random.Random(seed)
    contexts = sorted({e.context for e in examples if e.context})
    out: list[Example] = []
    for example in examples:
        if example.label is not Disposition.BRANCH:
            continue
        ws = content_tokens(tokens(example.utterance))
        if len(ws) < 3 or any(w in _DEICTIC for w in ws) or context_overlap(ws, example.context) <= 0:
            continue
        if ws[0] in _OPENERS or matches(" " + " ".join(ws) + " ", CLARIFY_CUES):
            continue
        made = 0
        for _ in range(20):
            context = rng.choice(contexts)
            own = content_tokens(tokens(example.context))
            if context_overlap(ws, context) > 0 or context_overlap(own, context) > 0.15:
                continue
            out.append(Example(example.utterance, context, Disposition.CANCEL))
            made += 1
            if made >= per_item:
                break
    return out


def echoes(examples: Sequence[Example], *, seed: int = 0, limit: int = 150) -> list[Example]:
    """ABSORB examples: two or three words of the heard sentence, then a backchannel."""
    rng = random.Random(seed)
    out: list[Example] = []
    for example in examples:
        words = tokens(example.context)
        ends = [i for i, w in enumerate(words) if w not in _STOP and len(w) > 3]
        if len(words) < 4 or not ends:
            continue
        end = rng.choice(ends)
        fragment = " ".join(words[max(0, end - rng.choice((0, 1, 2))) : end + 1])
        out.append(Example(f"{fragment} {rng.choice(_ECHO_TAILS)}", example.context, Disposition.ABSORB))
        if len(out) >= limit:
            break
    return out


def truncated(examples: Sequence[Example], *, share: float = 0.3, seed: int = 0) -> list[Example]:
    """Copies with the heard sentence cut short, or empty: the engine passes the heard part of the
    sentence being spoken ("Tomorrow will be"), not a whole one. A side question keeps its label
    only while its link to the context survives the cut (else it would teach "unrelated -> BRANCH")."""
    rng = random.Random(seed)
    out: list[Example] = []
    for example in examples:
        if rng.random() >= share:
            continue
        ws = example.context.split()
        context = " ".join(ws[: rng.randrange(0, max(1, len(ws)))])
        if example.label is Disposition.BRANCH:
            utterance = content_tokens(tokens(example.utterance))
            clarify = matches(" " + " ".join(utterance) + " ", CLARIFY_CUES)
            if not clarify and context_overlap(utterance, context) <= 0:
                continue
        out.append(Example(example.utterance, context, example.label))
    return out


def augmented(examples: Sequence[Example], *, seed: int = 0) -> list[Example]:
    """The examples plus the synthetic redirects, echoes and cut-short contexts made from them."""
    return [*examples, *redirects(examples, seed=seed), *echoes(examples, seed=seed),
            *truncated(examples, seed=seed)]


def train_head(examples: Sequence[Example], encoder: SentenceEncoder, *, l2: float = HEAD_L2) -> SoftmaxHead:
    """Encode every utterance and heard sentence (each distinct text once) and fit the head."""
    texts = sorted({t or " " for e in examples for t in (e.utterance, e.context)})
    vectors: dict[str, np.ndarray] = {}
    for i in range(0, len(texts), 32):
        batch = texts[i : i + 32]
        for text, vec in zip(batch, encoder.encode(batch), strict=True):
            vectors[text] = vec
    x = np.stack([features(vectors[e.utterance or " "], vectors[e.context or " "], cue_vector(e.utterance, e.context))
                  for e in examples])
    return fit(x, [str(e.label) for e in examples], INTERRUPTION_LABELS, l2=l2)


def train_classifier(examples: Sequence[Example], encoder: SentenceEncoder) -> EmbeddingClassifier:
    """A fresh embedding classifier (head and lexical partner) trained on `examples` only."""
    data = augmented(examples)
    lexical = LexicalClassifier(interruption=train_model(examples))
    return EmbeddingClassifier(encoder, train_head(data, encoder), lexical)
