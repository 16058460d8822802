"""Shared fixtures for the service tests: the real engines on the bundled tiny.en, real clips.

Each engine loads once per test session (about a second each); tests that need only one ask
for `engines["faster-whisper"]` and never pay for the other.
"""

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
from faster_whisper import decode_audio

from whisper_api.engines.base import SAMPLE_RATE, Engine
from whisper_api.schemas import TranscribeOptions, Transcript
from whisper_api.settings import Settings

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
    return json.loads((FIXTURES / "expected.json").read_text())


@cache
def load_clip(name: str) -> np.ndarray:
    """A fixture file decoded to 16 kHz mono float32 (by PyAV, through faster-whisper)."""
    audio = decode_audio(str(FIXTURES / name), sampling_rate=SAMPLE_RATE)
    assert audio.dtype == np.float32 and audio.ndim == 1
    return audio


@pytest.fixture(scope="session")
def short_clip() -> np.ndarray:
    return load_clip("short.wav")


@pytest.fixture(scope="session")
def long_clip() -> np.ndarray:
    return load_clip("long.ogg")


@pytest.fixture(scope="session")
def silence_clip() -> np.ndarray:
    return load_clip("silence.flac")


# --- HTTP app fixtures (test_api*.py): one app per engine, reusing the session's loaded engine ---


def make_app(engines: LazyEngines, engine_name: str = "faster-whisper", **overrides: object):
    """The real app on an already-loaded engine (the lifespan still runs and sets readiness)."""
    from whisper_api.app import create_app

    settings = engine_settings(engine_name, **overrides)
    return create_app(settings, load_engine=lambda _settings: engines[engine_name])


def started_client(app):
    """A TestClient whose lifespan has run and whose engine is ready."""

    from fastapi.testclient import TestClient

    client = TestClient(app)
    client.__enter__()
    deadline = time.monotonic() + 120
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the app never became ready"
        time.sleep(0.01)
    return client


@pytest.fixture(scope="session", params=ENGINE_NAMES)
def api(request: pytest.FixtureRequest, engines: LazyEngines) -> Iterator[object]:
    """A ready TestClient per engine, shared by the session's API tests."""
    client = started_client(make_app(engines, request.param))
    yield client
    client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def fw_api(engines: LazyEngines) -> Iterator[object]:
    """A ready TestClient on faster-whisper, for tests that do not depend on the engine."""
    client = started_client(make_app(engines, "faster-whisper", max_prompt_chars=50))
    yield client
    client.__exit__(None, None, None)


# --- Decompression bombs, made here (a few kilobytes that decode to hours) ---


def wav_bytes(rate: int, samples: int, width: int = 1) -> bytes:
    """A WAV header declaring `samples` samples at `rate` Hz, then the (silent) samples."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(b"\x80" * samples * width)
    return out.getvalue()


def flac_of_silence(seconds: float, rate: int = 8_000) -> bytes:
    """A FLAC of digital silence: a few kilobytes per minute, encoded here with PyAV."""
    out = io.BytesIO()
    with av.open(out, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        frame_samples = 4096
        silence = np.zeros((1, frame_samples), dtype=np.int16)
        for start in range(0, int(seconds * rate), frame_samples):
            frame = av.AudioFrame.from_ndarray(silence, format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def long_recording(tmp_path: Path, repeats: int) -> bytes:
    """Real speech, minutes long: long.ogg said `repeats` times, as a 16 kHz 16-bit WAV."""
    samples = np.tile(load_clip("long.ogg"), repeats)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


# --- The real server (`python -m whisper_api`) in a subprocess on loopback, for socket-level tests ---

REPO = FIXTURES.parents[1]


class Server:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        assert match, f"{name} not in /metrics"
        return float(match.group(1))


def start_server(tmp_path: Path, **settings: str) -> Server:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith("WHISPER_")}
    env.update(
        {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "PYTHONPATH": f"{REPO / 'service'}{os.pathsep}{REPO}",
            "WHISPER_ENGINE": "faster-whisper",
            "WHISPER_MODEL": "tiny.en",
            "WHISPER_DEVICE": "cpu",
            "WHISPER_LOG_JSON": "true",
            **settings,
        }
    )
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "whisper_api"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, f"the server exited early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"the server never became ready:\n{log.read_text()}"
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
