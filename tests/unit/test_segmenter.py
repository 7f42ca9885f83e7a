"""The segmenter: where the first and later segments end, and that cuts never lose or split words."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from icp.segmenter import SegmenterSettings, next_cut

FIRST = SegmenterSettings()


def first_segment(text: str, final: bool = False, settings: SegmenterSettings = FIRST) -> str | None:
    cut = next_cut(text, True, final, settings)
    return None if cut is None else text[:cut]


def test_first_segment_ends_at_a_clause() -> None:
    assert first_segment("The capital of France is Paris, which") == "The capital of France is Paris, "


def test_first_segment_ends_before_a_phrase_opener_after_enough_words() -> None:
    assert first_segment("That is a good question with a simple answer.") == "That is a good question "
    assert first_segment("The ocean covers most of our planet and holds") == "The ocean covers most of our planet "


def test_every_word_is_a_candidate_opener_not_every_second_one() -> None:
    """The word scan once consumed the space after each word, so the next word was never looked at."""
    assert first_segment("one two three four and five six") == "one two three four "
    assert first_segment("one two three four five and six seven") == "one two three four five "


def test_phrase_cut_waits_for_the_opener_to_be_a_whole_word() -> None:
    assert first_segment("That is a good question with") is None  # "with" may be "within"
    assert first_segment("That is a good question within") is None


def test_no_phrase_cut_with_too_few_words_or_when_off() -> None:
    assert first_segment("It is hard to say why") is None  # "to" after three words
    off = SegmenterSettings(first_phrase_words=0)
    assert first_segment("That is a good question with a simple answer. It", settings=off) == (
        "That is a good question with a simple answer. ")


def test_later_segments_never_cut_at_phrases() -> None:
    text = "Below the waves there are strong currents that carry warm water"
    assert next_cut(text, False, False) is None


WORDS = st.sampled_from("the ocean is deep and cold , with many animals because light . fades so fast ? yes".split())


@given(st.lists(WORDS, min_size=1, max_size=60), st.booleans())
def test_segments_concatenate_to_the_text(words: list[str], final: bool) -> None:
    """Cuts happen only at whitespace and every word of the text is in exactly one segment."""
    text = " ".join(words).replace(" ,", ",").replace(" .", ".").replace(" ?", "?")
    rest, segments, first = text, [], True
    while True:
        cut = next_cut(rest, first, final)
        if cut is None or cut == 0:
            break
        segments.append(rest[:cut])
        rest, first = rest[cut:], False
    assert "".join(segments) + rest == text
    assert sum(len(s.split()) for s in segments) + len(rest.split()) == len(text.split())
    if final:
        assert not rest.strip()
