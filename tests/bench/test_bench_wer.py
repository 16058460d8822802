"""scripts/bench-wer: the committed clips and their sources, the configurations, one real run."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.audio import SAMPLE_RATE
from bench.longform import align
from bench.wer import (
    DATA_DIR,
    OURS,
    PAUSE_S,
    SPEACHES,
    TRANSCRIPTS,
    WerConfig,
    default_configs,
    join,
    main,
    pooled,
    read_clips,
    run_config,
)
from whisper_api.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_every_committed_clip_has_a_reference_and_a_recorded_source() -> None:
    clips = read_clips(DATA_DIR)
    readme = (DATA_DIR / "README.md").read_text()
    assert len(clips) >= 10
    for clip, reference in clips:
        assert f"| {clip.path.name} |" in readme, f"{clip.path.name}: no source in the README"
        assert len(reference.split()) >= 5
    audio_files = {p.name for p in DATA_DIR.iterdir() if p.suffix in {".wav", ".flac"}}
    assert audio_files == {clip.path.name for clip, _ in clips}  # nothing committed without a reference


def test_configurations_flip_one_setting_of_ours_at_a_time() -> None:
    configs = {c.name: c for c in default_configs()}
    assert OURS in configs and set(SPEACHES) <= set(configs) and len(configs) == len(default_configs())
    assert configs[OURS].settings == {} and configs[OURS].temperature is None
    for name, config in configs.items():
        fields = {key.removeprefix("WHISPER_").lower(): value for key, value in config.settings.items()}
        assert set(fields) <= set(Settings.model_fields), name  # each override names a setting
        Settings.model_validate(fields)  # with a valid value
        if name != OURS and name not in SPEACHES:
            assert len(config.settings) + (config.temperature is not None) == 1, name
        if config.chunks_without_timestamps:  # a batched pipeline's option
            assert config.settings.get("WHISPER_BATCH_SIZE"), name
    # Every way speaches differs is also measured on its own.
    flipped = {key for c in configs.values() if c.name not in SPEACHES for key in c.settings}
    assert {key for name in SPEACHES for key in configs[name].settings} <= flipped
    assert any(c.temperature == 0 for c in configs.values() if c.name not in SPEACHES)


def test_errors_are_pooled_over_the_words_and_the_clips_joined_with_pauses() -> None:
    alignments = [align("red green blue black", "red green black"), align("cat dog", "cat dog cow")]
    total = pooled(alignments)
    assert total.reference_words == 6 and total.deletions == 1 and total.insertions == 1
    assert total.wer == pytest.approx(2 / 6)
    ones = [np.ones(SAMPLE_RATE, dtype=np.float32), np.ones(2 * SAMPLE_RATE, dtype=np.float32)]
    joined = join(ones)
    assert len(joined) == 3 * SAMPLE_RATE + 2 * int(PAUSE_S * SAMPLE_RATE)
    assert joined[SAMPLE_RATE : SAMPLE_RATE + int(PAUSE_S * SAMPLE_RATE)].max() == 0


def test_a_clip_without_a_reference_is_refused(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "short.flac", tmp_path / "a.flac")
    (tmp_path / TRANSCRIPTS).write_text("a\n")
    with pytest.raises(ValueError, match="needs one audio file and a reference"):
        read_clips(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["--data", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exited.value.code == 2 and not (tmp_path / "out").exists()


def test_one_configuration_runs_through_the_service_engine(tmp_path: Path) -> None:
    """The real engine on one committed LibriSpeech clip (3 s), in its own process."""
    clip = "251-137823-0002"
    shutil.copy(DATA_DIR / f"{clip}.wav", tmp_path)
    line = next(line for line in (DATA_DIR / TRANSCRIPTS).read_text().splitlines() if line.startswith(clip))
    (tmp_path / TRANSCRIPTS).write_text(line + "\n")
    config = WerConfig(name="beam-1", differs="beam 1", settings={"WHISPER_BEAM_SIZE": "1"}, temperature=0.0)
    result = run_config(config, tmp_path, runs=1)
    assert result.error is None and result.clips and result.joined
    assert result.clips.alignment.reference_words == 10 and result.clips.alignment.wer < 0.3
    assert result.joined.alignment.reference_words == 10 and result.clips.cpu_seconds > 0
    assert "testing routine" in result.per_clip[0].text.lower() and result.joined_text
