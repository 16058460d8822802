"""Shared fixtures for the service tests: the real engines on the bundled tiny.en, real clips.

Each engine loads once per test session (about a second each); tests that need only one ask
for `engines["faster-whisper"]` and never pay for the other.
"""

from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.support.apps import make_app, started_client
from tests.support.engines import ENGINE_NAMES, LazyEngines, engine_settings, expected_texts, load_clip
from whisper_api.engines.base import Engine
from whisper_api.schemas import TranscribeOptions, Transcript
from whisper_api.settings import Settings


@pytest.fixture(scope="session")
def engines() -> Iterator[LazyEngines]:
    yield LazyEngines()


@pytest.fixture(scope="session", params=ENGINE_NAMES)
def engine(request: pytest.FixtureRequest, engines: LazyEngines) -> Engine:
    return engines[request.param]


@pytest.fixture(scope="session")
def make_settings() -> Callable[..., Settings]:
    """`make_settings("openai-whisper", beam_size=1)`: test settings, WHISPER_* variables ignored."""
    return engine_settings


@pytest.fixture(scope="session")
def transcribed(engines: LazyEngines) -> Callable[..., Transcript]:
    """`transcribed("openai-whisper", "long.ogg", word_timestamps=True)`, computed once per session:
    several tests check different facts of the same (slow) transcription."""

    @cache
    def run(engine_name: str, clip_name: str, **options: Any) -> Transcript:
        return engines[engine_name].transcribe(load_clip(clip_name), TranscribeOptions(**options))

    return run


@pytest.fixture(scope="session")
def expected_text() -> dict[str, str]:
    return expected_texts()


@pytest.fixture(scope="session")
def short_clip() -> np.ndarray:
    return load_clip("short.wav")


@pytest.fixture(scope="session")
def long_clip() -> np.ndarray:
    return load_clip("long.ogg")


@pytest.fixture(scope="session")
def silence_clip() -> np.ndarray:
    return load_clip("silence.flac")


@pytest.fixture(scope="session", params=ENGINE_NAMES)
def api(request: pytest.FixtureRequest, engines: LazyEngines) -> Iterator[TestClient]:
    """A ready TestClient per engine, shared by the session's API tests."""
    client = started_client(make_app(engines, request.param))
    yield client
    client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def fw_api(engines: LazyEngines) -> Iterator[TestClient]:
    """A ready TestClient on faster-whisper, for tests that do not depend on the engine."""
    client = started_client(make_app(engines, "faster-whisper", max_prompt_chars=50))
    yield client
    client.__exit__(None, None, None)
