"""scripts/bench-all (`make bench`): without the shared recordings it stops at once, saying which."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bench_all(audio: str | None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "AUDIO"}
    if audio is not None:
        env["AUDIO"] = audio
    return subprocess.run(
        [str(REPO / "scripts" / "bench-all")], env=env, capture_output=True, text=True, timeout=30
    )


def test_without_audio_it_names_the_setting_and_an_example() -> None:
    result = bench_all(None)
    assert result.returncode == 2 and result.stdout == ""
    assert "AUDIO is not set" in result.stderr and "make bench AUDIO=../shared/audio" in result.stderr


@pytest.mark.parametrize("missing", ["jfk.flac", "multilingual.mp3"])
def test_a_folder_without_a_recording_names_the_one_missing(tmp_path: Path, missing: str) -> None:
    for recording in {"jfk.flac", "multilingual.mp3"} - {missing}:
        (tmp_path / recording).write_bytes(b"")
    result = bench_all(str(tmp_path))
    assert result.returncode == 2 and result.stdout == ""
    assert f"AUDIO={tmp_path} has no {missing}" in result.stderr
