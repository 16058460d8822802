"""The real engines on the bundled tiny.en, and the fixture clips: what most service tests run on."""

import json
from functools import cache
from pathlib import Path

import numpy as np
from faster_whisper import decode_audio

from whisper_api.engines.base import SAMPLE_RATE, Engine
from whisper_api.settings import Settings

__all__ = [
    "ENGINE_NAMES",
    "FIXTURES",
    "SAMPLE_RATE",
    "LazyEngines",
    "engine_settings",
    "expected_texts",
    "load_clip",
]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ENGINE_NAMES = ("faster-whisper", "openai-whisper")


def engine_settings(engine: str, **overrides: object) -> Settings:
    """Settings for tests: explicit values, so that WHISPER_* variables in the shell do not leak in."""
    values: dict[str, object] = {
        "engine": engine,
        "model": "tiny.en",
        "model_dir": None,
        "device": "cpu",
        "compute_type": "auto",
        "beam_size": 5,
        "vad_filter": True,
        "batch_size": 0,
    }
    values.update(overrides)
    return Settings(**values)


class LazyEngines(dict[str, Engine]):
    """Engines by name, each loaded (and warmed) on first use."""

    def __missing__(self, name: str) -> Engine:
        from whisper_api.engines import load_engine

        engine = load_engine(engine_settings(name))
        engine.warmup()
        self[name] = engine
        return engine


@cache
def load_clip(name: str) -> np.ndarray:
    """A fixture file decoded to 16 kHz mono float32 (by PyAV, through faster-whisper)."""
    audio = decode_audio(str(FIXTURES / name), sampling_rate=SAMPLE_RATE)
    assert audio.dtype == np.float32 and audio.ndim == 1
    return audio


def expected_texts() -> dict[str, str]:
    return json.loads((FIXTURES / "expected.json").read_text())
