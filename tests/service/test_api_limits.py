"""The upload limit (413 before the body is read) and no temporary files left behind."""

import asyncio
import io
import os
import tempfile
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.support.apps import make_app, started_client
from tests.support.engines import engine_settings
from whisper_api.app import create_app
from whisper_api.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TRANSCRIPTIONS = "/v1/audio/transcriptions"
TRANSLATIONS = "/v1/audio/translations"
LIMIT_MB = 0.5
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def small_limit_api(engines) -> TestClient:
    client = started_client(make_app(engines, max_upload_mb=LIMIT_MB))
    yield client
    client.__exit__(None, None, None)


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "file_too_large"
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "file"
    assert f"{LIMIT_MB:g} MB" in error["message"]


@pytest.mark.parametrize("path", [TRANSCRIPTIONS, TRANSLATIONS])
def test_declared_content_length_over_the_limit_is_413(small_limit_api: TestClient, path: str) -> None:
    big = b"\0" * int(LIMIT_MB * MIB + 1)
    assert_too_large(
        small_limit_api.post(path, files={"file": ("big.wav", big)}, data={"model": "whisper-1"})
    )


def test_an_upload_under_the_limit_is_served(small_limit_api: TestClient) -> None:
    response = small_limit_api.post(
        TRANSCRIPTIONS,
        files={"file": ("short.mp3", (FIXTURES / "short.mp3").read_bytes())},
        data={"model": "whisper-1"},
    )
    assert response.status_code == 200


def test_other_routes_are_not_limited(small_limit_api: TestClient) -> None:
    response = small_limit_api.post("/v1/models", content=b"\0" * int(LIMIT_MB * MIB + 1))
    assert response.status_code == 405


@pytest.mark.anyio
async def test_a_chunked_upload_is_cut_off_at_the_limit_without_being_read_whole() -> None:
    """No Content-Length: the middleware counts the streamed bytes and stops reading at the limit."""
    app = create_app(
        _settings(max_upload_mb=LIMIT_MB), load_engine=lambda _settings: None
    )  # routes never run
    chunk = b"\0" * (64 * 1024)
    chunks_total = 200  # 12.5 MiB offered
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        boundary_head = (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\n"
        )
        yield boundary_head
        for _ in range(chunks_total):
            sent += 1
            yield chunk
        yield b"\r\n--b--\r\n"

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                TRANSCRIPTIONS, content=body(), headers={"Content-Type": "multipart/form-data; boundary=b"}
            )

    response = await post()
    assert_too_large(response)
    limit_chunks = LIMIT_MB * MIB / len(chunk)
    assert sent <= limit_chunks + 2, f"read {sent} chunks of {chunks_total}; the limit is {limit_chunks:g}"


def _settings(**overrides: object) -> Settings:
    return engine_settings("faster-whisper", **overrides)


def _open_files_under(folder: Path) -> list[str]:
    """Files this process holds open under `folder`, deleted ones included (SpooledTemporaryFile)."""
    prefix = os.path.realpath(folder) + "/"
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(prefix):
            held.append(target)
    return held


def _wav_bytes(seconds: float) -> bytes:
    """A 16 kHz mono wav of the short clip repeated: over 1 MB, so the upload spools to disk."""
    with wave.open(str(FIXTURES / "short.wav")) as source:
        frames = source.readframes(source.getnframes())
    samples = np.frombuffer(frames, dtype=np.int16)
    repeated = np.tile(samples, int(np.ceil(seconds * 16000 / samples.size)))
    out = io.BytesIO()
    with wave.open(out, "wb") as target:
        target.setnchannels(1)
        target.setsampwidth(2)
        target.setframerate(16000)
        target.writeframes(repeated.tobytes())
    return out.getvalue()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to list open files")
@pytest.mark.parametrize(
    "content",
    [_wav_bytes(40), b"\x01" * (3 * MIB)],
    ids=["valid-1.3MB-wav", "undecodable-3MB"],
)
def test_no_temporary_files_are_left_behind(
    fw_api: TestClient, content: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spooled upload goes to a private temp dir (the shared /tmp has other writers); after the
    request nothing is left there, neither as a name nor as a deleted file still held open."""
    assert len(content) > MIB  # over Starlette's 1 MB spool size: the part goes to a temp file
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool_dir))
    response = fw_api.post(TRANSCRIPTIONS, files={"file": ("big.wav", content)}, data={"model": "whisper-1"})
    assert response.status_code in (200, 400), response.text
    assert list(spool_dir.iterdir()) == []
    assert _open_files_under(spool_dir) == []


@pytest.mark.anyio
async def test_an_upload_trickling_past_the_deadline_is_cut_off_with_408() -> None:
    """A byte every 50 ms never trips the idle timeout, but the request deadline still ends it."""
    app = create_app(
        _settings(request_timeout_s=0.5, upload_idle_timeout_s=5), load_engine=lambda _settings: None
    )
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="slow.wav"\r\n\r\n'
        for _ in range(200):  # 10 s if it were read to the end
            sent += 1
            await asyncio.sleep(0.05)
            yield b"\0"

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                TRANSCRIPTIONS, content=body(), headers={"Content-Type": "multipart/form-data; boundary=b"}
            )

    started = time.monotonic()
    response = await post()
    assert response.status_code == 408, response.text
    error = response.json()["error"]
    assert error["code"] == "upload_timeout" and "WHISPER_REQUEST_TIMEOUT_S" in error["message"]
    assert time.monotonic() - started < 3 and sent < 60
