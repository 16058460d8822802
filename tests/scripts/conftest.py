"""Fixtures for the benchmark tools' tests: generated audio, never /work/shared."""

import wave
from pathlib import Path

import numpy as np
import pytest


def write_tone(path: Path, seconds: float, rate: int = 16_000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    return write_tone(tmp_path / "tone.wav", 2.0)
