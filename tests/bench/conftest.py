"""Fixtures for the benchmark tools' tests: generated audio (never /work/shared), stand-in servers."""

import socket
import threading
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI


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


@pytest.fixture
def serve_app() -> Iterator[Callable[[FastAPI], str]]:
    """Serves an app on a free loopback port in a thread (a stand-in server for a client's accounting);
    returns its URL, and stops every app it served after the test."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: FastAPI) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=5)
