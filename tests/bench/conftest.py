"""Fixtures for the benchmark tools' tests: generated audio, never /work/shared."""

import asyncio
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    """Two seconds of a 440 Hz tone, 16 kHz mono 16-bit WAV."""
    rate = 16_000
    t = np.arange(2 * rate) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


@pytest.fixture(autouse=True)
def event_loop_left_for_later_tests() -> Iterator[None]:
    """The CLIs under test call asyncio.run(), which leaves the thread without an event loop; Pulumi's
    mock runtime, in the test directories collected after this one, still asks for the current loop."""
    yield
    policy = asyncio.get_event_loop_policy()
    try:
        policy.get_event_loop()
    except RuntimeError:
        policy.set_event_loop(policy.new_event_loop())
