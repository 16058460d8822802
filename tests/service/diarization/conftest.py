"""The real diarizer, loaded once for the session."""

from pathlib import Path

import pytest

from tests.support.diarization import diarization_model as exported_model
from whisper_api.diarization.diarizer import Diarizer


@pytest.fixture(scope="session")
def diarization_model() -> Path:
    return exported_model()


@pytest.fixture(scope="session")
def diarizer(diarization_model: Path) -> Diarizer:
    return Diarizer(diarization_model)
