"""The real server (`python -m whisper_api`, uvicorn on a free loopback port) called by the official
`openai` SDK, as a user would: every response format, translations, and errors as SDK exceptions."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
UPLOAD_LIMIT_MB = 0.25


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server as `make run` starts it; its output goes to a file (a pipe could fill and block it)."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "output.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("WHISPER_")} | {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PYTHONPATH": f"{ROOT / 'service'}{os.pathsep}{ROOT}",
        "WHISPER_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB),
        "WHISPER_DEVICE": "cpu",
    }
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "whisper_api"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_ready(process, url, log)
        yield Server(url, log)
    finally:
        _stop(process)


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail("the server was not ready in time")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="not-needed-locally", max_retries=0, timeout=120
    )


def test_startup_prints_the_url_and_the_docs_link(server: Server) -> None:
    output = server.log.read_text()
    assert f"{server.url}/v1" in output and f"{server.url}/docs" in output, output


def test_transcription_json(client: openai.OpenAI) -> None:
    with (FIXTURES / "short.mp3").open("rb") as audio:
        transcript = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert "lazy dog" in transcript.text.lower()


def test_transcription_verbose_json_with_words(client: openai.OpenAI) -> None:
    with (FIXTURES / "long.ogg").open("rb") as audio:
        transcript = client.audio.transcriptions.create(
            model="whisper-1",
            file=audio,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
            language="en",
        )
    assert transcript.duration > 35
    assert transcript.segments and transcript.segments[-1].end > 30
    assert transcript.words and transcript.words[-1].end > 30
    assert "hard work this month" in transcript.text.lower()


@pytest.mark.parametrize(("response_format", "marker"), [("text", ""), ("srt", "-->"), ("vtt", "WEBVTT")])
def test_transcription_text_formats_are_strings(
    client: openai.OpenAI, response_format: str, marker: str
) -> None:
    with (FIXTURES / "short.wav").open("rb") as audio:
        transcript = client.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format=response_format, temperature=0.0
        )
    assert isinstance(transcript, str)
    assert marker in transcript
    assert "fox" in transcript.lower()


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks translations so
@pytest.mark.parametrize("response_format", ["json", "text"])
def test_translation(client: openai.OpenAI, response_format: str) -> None:
    with (FIXTURES / "short.webm").open("rb") as audio:
        translation = client.audio.translations.create(
            model="whisper-1", file=audio, response_format=response_format
        )
    text = translation if isinstance(translation, str) else translation.text
    assert "fox" in text.lower()


def test_models_list(client: openai.OpenAI) -> None:
    assert {"whisper-1", "tiny.en"} <= {model.id for model in client.models.list()}


def test_non_audio_is_a_bad_request(client: openai.OpenAI) -> None:
    with (FIXTURES / "not_audio.wav").open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert caught.value.code == "invalid_audio"
    assert caught.value.param == "file"


def test_unknown_language_is_a_bad_request(client: openai.OpenAI) -> None:
    with (FIXTURES / "short.wav").open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=audio, language="klingon")
    assert caught.value.param == "language"


def test_an_upload_over_the_limit_is_413(client: openai.OpenAI) -> None:
    too_big = ("big.wav", b"\0" * int(UPLOAD_LIMIT_MB * 1024 * 1024 * 1.5))
    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=too_big)
    assert caught.value.status_code == 413
    assert caught.value.code == "file_too_large"
