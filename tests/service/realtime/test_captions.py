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


def test_a_long_utterance_is_captioned_window_after_window() -> None:
    captions = Captions()
    captions.interim("One two three. Four five")
    assert captions.interim("One two three. Four five six") == "One two three. Four five"
    # The window moves past its first segment; later passes cover only what follows it.
    assert captions.advance("One two three.") is None  # all of it was sent already
    assert captions.interim("Four five six seven") == " six"
    delta, transcript = captions.final("One two three. Four five six seven eight.")
    assert delta == " seven eight." and transcript == "One two three. Four five six seven eight."


def test_finished_words_not_yet_sent_are_sent_when_the_window_moves() -> None:
    captions = Captions()
    captions.interim("A b c. D e")
    assert captions.advance("A b c.") == "A b c."
    assert captions.interim("D e f") == " D e"  # agreeing with the pass before the move
    assert captions.interim("D e f g") == " f"
