"""Interim deltas only ever append: words are sent once two passes agree, never the last word."""

from whisper_api.realtime.captions import Captions


def test_words_are_sent_once_two_passes_agree_and_the_final_pass_adds_the_rest() -> None:
    captions = Captions()
    assert captions.interim("The quick") is None  # nothing to agree with yet
    assert captions.interim("The quick brow") == "The quick"  # "brow" is the pass's last word
    assert captions.interim("The quick brown fox") is None  # "brow" became "brown": not stable yet
    assert captions.interim("The quick brown fox jumps") == " brown fox"
    delta, transcript = captions.final("The quick brown fox jumps over the lazy dog.")
    assert delta == " jumps over the lazy dog."
    assert transcript == "The quick brown fox jumps over the lazy dog."


def test_a_revision_of_a_sent_word_is_left_to_completed() -> None:
    captions = Captions()
    captions.interim("I scream for")
    assert captions.interim("I scream for ice") == "I scream for"
    assert captions.interim("Ice cream for ice") is None
    delta, transcript = captions.final("Ice cream for ice cream.")
    assert delta is None and transcript == "Ice cream for ice cream."
