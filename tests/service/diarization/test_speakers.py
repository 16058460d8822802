"""Words → speakers: one speaker per segment, labels in order of first appearance, known names."""

import numpy as np

from whisper_api.diarization.diarizer import Diarization, Turn, turns, windows
from whisper_api.diarization.speakers import (
    match_known_speakers,
    rttm,
    speaker_of,
    speaker_segments,
    with_speakers,
)
from whisper_api.schemas import Segment, SpeakerTurn, Transcript, Word


def _segment(words: list[tuple[str, float, float]], index: int = 0) -> Segment:
    return Segment(
        id=index,
        seek=0,
        start=words[0][1],
        end=words[-1][2],
        text="".join(word for word, _, _ in words),
        tokens=[],
        temperature=0.0,
        avg_logprob=0.0,
        compression_ratio=1.0,
        no_speech_prob=0.0,
        words=[Word(word=word, start=start, end=end) for word, start, end in words],
    )


TURNS = [Turn(0.0, 2.0, 7), Turn(2.0, 4.0, 3), Turn(5.0, 6.0, 7)]


def test_a_word_goes_to_the_turn_it_overlaps_most_or_the_nearest() -> None:
    assert speaker_of(1.5, 2.4, TURNS) == 7
    assert speaker_of(1.8, 2.6, TURNS) == 3
    assert speaker_of(4.2, 4.4, TURNS) == 3  # in the gap, nearer the turn that ended at 4.0
    assert speaker_of(4.7, 4.9, TURNS) == 7
    assert speaker_of(1.0, 1.2, []) is None


def test_a_segment_is_split_where_the_speaker_changes() -> None:
    segment = _segment([(" Hello", 0.2, 0.6), (" there.", 0.7, 1.9), (" Hi", 2.2, 2.5), (" you.", 2.6, 3.0)])
    result = speaker_segments([segment], Diarization(TURNS, np.zeros((8, 192))))
    assert [(s.speaker, s.text, s.start, s.end) for s in result.segments] == [
        ("A", " Hello there.", 0.2, 1.9),
        ("B", " Hi you.", 2.2, 3.0),
    ]
    assert result.labels == {7: "A", 3: "B"}


def test_names_replace_letters_and_others_keep_letters_in_order() -> None:
    segments = [
        _segment([(" One.", 0.5, 1.0)]),
        _segment([(" Two.", 2.5, 3.0)], 1),
        _segment([(" Three.", 5.2, 5.8)], 2),
    ]
    result = speaker_segments(segments, Diarization(TURNS, np.zeros((8, 192))), {7: "Ada"})
    assert [s.speaker for s in result.segments] == ["Ada", "A", "Ada"]


def test_known_speakers_match_best_first_and_only_above_the_threshold() -> None:
    centroids = np.eye(3)
    references = {
        "Ada": np.array([0.1, 0.99, 0.0]),
        "Bo": np.array([0.0, 0.9, 0.43]),
        "Cy": np.array([0.5, 0.5, 0.7]),
    }
    references = {name: vector / np.linalg.norm(vector) for name, vector in references.items()}
    # Ada takes speaker 1 (0.99); Bo's best is also 1, taken: its next (0.43) is below 0.6; Cy: 2 (0.7).
    assert match_known_speakers(centroids, references) == {1: "Ada", 2: "Cy"}


def test_windows_cover_each_region_and_turns_cut_between_window_centres() -> None:
    spans = windows([(0.0, 3.0), (4.0, 4.3), (5.0, 5.8)])
    assert spans == [(0.0, 1.5), (0.75, 2.25), (1.5, 3.0), (5.0, 5.8)]
    labels = np.array([0, 1, 1, 0])
    found = turns([(0.0, 3.0), (4.0, 4.3), (5.0, 5.8)], spans, labels)
    # The 0.3 s region has no window: it goes to the nearest window centre's speaker (5.4 s: 0).
    assert found == [Turn(0.0, 1.125, 0), Turn(1.125, 3.0, 1), Turn(4.0, 4.3, 0), Turn(5.0, 5.8, 0)]


def test_with_speakers_labels_the_turns_as_the_segments() -> None:
    transcript = Transcript(
        task="transcribe", language="en", duration=6.0, segments=[_segment([(" Hi.", 2.2, 2.5)])]
    )
    labelled = with_speakers(transcript, Diarization(TURNS, np.zeros((8, 192))), {7: "Ada"})
    assert labelled.speakers is not None
    assert [(s.speaker, s.text) for s in labelled.speakers.segments] == [("A", " Hi.")]
    assert [t.speaker for t in labelled.speakers.turns] == ["Ada", "A", "Ada"]


def test_rttm_lines() -> None:
    turns = [SpeakerTurn(start=0.5, end=1.75, speaker="Ada Lovelace")]
    expected = "SPEAKER team_meeting 1 0.500 1.250 <NA> <NA> Ada_Lovelace <NA> <NA>\n"
    assert rttm(turns, "team meeting") == expected
