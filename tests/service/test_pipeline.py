"""The transcription path's memory policy, as the API and the batch worker both apply it: after a
long recording the heap's free pages go back to the system, after a short one nothing happens.

The API's side runs on the real server in test_memory.py; here the batch worker runs on the real
model over real speech, and the release it asks for is the real one (counted on its way through).
"""

import os
from pathlib import Path

import pytest

from tests.support.audio import long_recording
from tests.support.engines import FIXTURES
from tests.support.gcs import run_task
from whisper_api import pipeline
from whisper_api.memory import RELEASE_AFTER_AUDIO_S


def _glibc() -> bool:
    return bool(os.confstr("CS_GNU_LIBC_VERSION")) if hasattr(os, "confstr") else False


def test_memory_goes_back_after_long_audio_only() -> None:
    assert pipeline.release_memory_after(None) is False
    assert pipeline.release_memory_after(RELEASE_AFTER_AUDIO_S - 0.1) is False
    assert pipeline.release_memory_after(RELEASE_AFTER_AUDIO_S) is _glibc()


def test_the_batch_worker_gives_memory_back_after_a_long_recording(
    tmp_path: Path, engines, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "long.wav").write_bytes(long_recording(tmp_path, repeats=2))  # 82 s of speech
    (source / "short.wav").write_bytes((FIXTURES / "short.wav").read_bytes())
    released: list[bool] = []
    release = pipeline.release_freed_memory

    def counted_release() -> bool:
        released.append(release())
        return released[-1]

    monkeypatch.setattr(pipeline, "release_freed_memory", counted_release)
    summary = run_task(engines, str(source), str(tmp_path / "out"))
    assert summary.done == 2 and summary.failed == 0, summary.describe()
    assert released == [_glibc()]  # once: after the long recording, not after the short one
