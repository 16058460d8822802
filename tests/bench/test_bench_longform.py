"""scripts/bench-longform: the word alignment, the long recording, and one real configuration run."""

import shutil
from pathlib import Path

import pytest

from bench.audio import SAMPLE_RATE
from bench.longform import (
    PAUSES_S,
    PIECES,
    LongformConfig,
    align,
    build_long_audio,
    default_configs,
    run_config,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    """The two recordings with references, stood in for by the test fixtures (never /work/shared)."""
    shutil.copy(FIXTURES / "short.flac", tmp_path / "jfk.flac")
    shutil.copy(FIXTURES / "long.ogg", tmp_path / "multilingual.mp3")
    return tmp_path


def test_alignment_counts_a_dropped_sentence() -> None:
    reference = "ask not what your country can do for you ask what you can do for your country"
    hypothesis = "ask not what your country can do for you"
    alignment = align(reference, hypothesis)
    assert alignment.reference_words == 17
    assert alignment.deletions == 8 and alignment.longest_deletion_words == 8
    assert alignment.insertions == alignment.substitutions == 0
    assert alignment.wer == pytest.approx(8 / 17)
    assert align(reference, "").deletions == 16  # nothing decoded: all lost but one substitution


def test_the_long_recording_repeats_every_piece_with_its_pauses(audio_dir: Path) -> None:
    audio, reference = build_long_audio(audio_dir, cycles=2)
    one, _ = build_long_audio(audio_dir, cycles=1)
    assert len(audio) > 2 * len(one) - len(PAUSES_S) * SAMPLE_RATE * max(PAUSES_S)
    assert reference.count("ask not what your country") == 2 and "Permission is hereby granted" in reference


def test_configurations_cover_every_decode_option_under_study() -> None:
    configs = default_configs()
    assert {c.engine for c in configs} == {"service", "faster-whisper", "openai-whisper"}
    fw = [c for c in configs if c.engine == "faster-whisper"]
    assert {c.vad for c in fw} == {c.condition_on_previous_text for c in fw} == {True, False}
    assert any(c.hallucination_silence_threshold for c in fw) and any(c.temperature == 0 for c in fw)
    assert len({c.name for c in configs}) == len(configs) and len(PIECES) == 2


def test_one_configuration_runs_in_its_own_process(audio_dir: Path) -> None:
    config = LongformConfig(
        name="fw-b1", engine="faster-whisper", beam_size=1, condition_on_previous_text=False
    )
    result = run_config(config, audio_dir, cycles=1)
    assert result.error is None and result.alignment is not None
    assert result.alignment.reference_words > 80 and result.seconds and result.cpu_seconds
    assert result.peak_rss_mib and result.peak_rss_mib > 50 and result.text
