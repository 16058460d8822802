"""Every user error gets a 4xx in OpenAI's envelope; the unexpected gets a generic 500; never a trace."""

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from whisper_api import contract
from whisper_api.app import create_app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TRANSCRIPTIONS = "/v1/audio/transcriptions"
TRANSLATIONS = "/v1/audio/translations"


def short_wav() -> dict[str, tuple[str, bytes]]:
    return {"file": ("short.wav", (FIXTURES / "short.wav").read_bytes())}


def assert_envelope(response, status: int, param: str | None = None, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and "Traceback" not in error["message"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


def test_missing_file_names_the_file(fw_api: TestClient) -> None:
    error = assert_envelope(fw_api.post(TRANSCRIPTIONS, data={"model": "whisper-1"}), 400, "file")
    assert error["code"] == "missing_required_parameter"
    assert error["type"] == "invalid_request_error"
    assert "'file'" in error["message"]


def test_file_sent_as_text_field(fw_api: TestClient) -> None:
    response = fw_api.post(TRANSCRIPTIONS, data={"file": "not an upload", "model": "whisper-1"})
    assert_envelope(response, 400, "file")
    assert response.json()["error"]["message"] == (
        "The 'file' field must be an uploaded file (a form part with a filename), not a text value."
    )


def test_json_body_instead_of_multipart(fw_api: TestClient) -> None:
    assert_envelope(fw_api.post(TRANSCRIPTIONS, json={"model": "whisper-1"}), 400, "file")


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("empty.wav", b"", "empty_file"),
        ("not_audio.wav", (FIXTURES / "not_audio.wav").read_bytes(), "invalid_audio"),
        ("noise.mp3", bytes(range(256)) * 64, "invalid_audio"),
        ("truncated.mp3", (FIXTURES / "short.mp3").read_bytes()[:200], "invalid_audio"),
        ("truncated.m4a", (FIXTURES / "short.m4a").read_bytes()[:4000], "invalid_audio"),
        ("header-only.wav", (FIXTURES / "short.wav").read_bytes()[:44], "empty_audio"),
    ],
)
@pytest.mark.parametrize("path", [TRANSCRIPTIONS, TRANSLATIONS])
def test_unusable_files_are_a_400_naming_the_problem(
    fw_api: TestClient, path: str, name: str, content: bytes, code: str
) -> None:
    error = assert_envelope(
        fw_api.post(path, files={"file": (name, content)}, data={"model": "whisper-1"}), 400, "file", code
    )
    assert "audio" in error["message"].lower() or "empty" in error["message"].lower()


@pytest.mark.parametrize("path", [TRANSCRIPTIONS, TRANSLATIONS])
def test_unsupported_response_format(fw_api: TestClient, path: str) -> None:
    error = assert_envelope(
        fw_api.post(path, files=short_wav(), data={"model": "whisper-1", "response_format": "xml"}),
        400,
        "response_format",
    )
    assert "verbose_json" in error["message"]


@pytest.mark.parametrize("temperature", ["1.5", "-0.1", "hot"])
def test_temperature_out_of_range(fw_api: TestClient, temperature: str) -> None:
    response = fw_api.post(
        TRANSCRIPTIONS, files=short_wav(), data={"model": "whisper-1", "temperature": temperature}
    )
    assert_envelope(response, 400, "temperature", "invalid_value")


def test_unknown_language(fw_api: TestClient) -> None:
    response = fw_api.post(TRANSCRIPTIONS, files=short_wav(), data={"model": "whisper-1", "language": "xx"})
    error = assert_envelope(response, 400, "language", "unsupported_language")
    assert "'xx'" in error["message"]


def test_non_english_language_on_an_english_only_model(fw_api: TestClient) -> None:
    response = fw_api.post(TRANSCRIPTIONS, files=short_wav(), data={"model": "whisper-1", "language": "de"})
    error = assert_envelope(response, 400, "language", "unsupported_language")
    assert "English-only" in error["message"]


def test_language_code_is_case_insensitive(fw_api: TestClient) -> None:
    assert (
        fw_api.post(
            TRANSCRIPTIONS, files=short_wav(), data={"model": "whisper-1", "language": "EN"}
        ).status_code
        == 200
    )


def test_unknown_model_lists_what_is_served(fw_api: TestClient) -> None:
    response = fw_api.post(TRANSCRIPTIONS, files=short_wav(), data={"model": "gpt-4"})
    error = assert_envelope(response, 400, "model", "model_not_found")
    assert "tiny.en" in error["message"] and "whisper-1" in error["message"]


def test_timestamp_granularities_need_verbose_json(fw_api: TestClient) -> None:
    response = fw_api.post(
        TRANSCRIPTIONS, files=short_wav(), data={"model": "whisper-1", "timestamp_granularities[]": "word"}
    )
    assert_envelope(response, 400, "timestamp_granularities[]")


def test_unknown_timestamp_granularity(fw_api: TestClient) -> None:
    response = fw_api.post(
        TRANSCRIPTIONS,
        files=short_wav(),
        data={"model": "whisper-1", "response_format": "verbose_json", "timestamp_granularities[]": "char"},
    )
    assert_envelope(response, 400, "timestamp_granularities[]", "invalid_value")


def test_unknown_route_is_a_404_envelope(fw_api: TestClient) -> None:
    assert_envelope(fw_api.get("/v1/audio/speech"), 404, code="not_found")


def test_wrong_method_is_a_405_envelope(fw_api: TestClient) -> None:
    assert_envelope(fw_api.get(TRANSCRIPTIONS), 405, code="method_not_allowed")


def test_audio_longer_than_the_limit(engines) -> None:
    from tests.support.apps import make_app, started_client

    client = started_client(make_app(engines, max_audio_seconds=10))
    try:
        response = client.post(
            TRANSCRIPTIONS,
            files={"file": ("long.ogg", (FIXTURES / "long.ogg").read_bytes())},
            data={"model": "whisper-1"},
        )
        error = assert_envelope(response, 400, "file", "audio_too_long")
        assert "10 seconds" in error["message"]
    finally:
        client.__exit__(None, None, None)


class BrokenEngine:
    """Loads fine, fails on every transcription: a bug, not the user's fault."""

    name = "faster-whisper"
    model = "tiny.en"
    device = "cpu"
    compute_type = "int8"
    multilingual = False

    def transcribe(self, audio: np.ndarray, options: object, **_: object) -> object:
        raise RuntimeError("secret internal detail /opt/model/weights.bin")

    def warmup(self) -> None:
        return None


def test_an_unexpected_error_is_a_generic_500_and_is_logged(
    caplog: pytest.LogCaptureFixture, make_settings
) -> None:
    app = create_app(make_settings("faster-whisper"), load_engine=lambda _settings: BrokenEngine())
    with TestClient(app, raise_server_exceptions=False) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.01)
        with caplog.at_level(logging.ERROR):
            response = client.post(TRANSCRIPTIONS, files=short_wav(), data={"model": "whisper-1"})
    error = assert_envelope(response, 500, code="internal_error")
    assert error["type"] == "server_error"
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert any(
        record.exc_info and "secret internal detail" in str(record.exc_info[1]) for record in caplog.records
    )


def test_readyz_is_503_until_the_model_is_loaded(make_settings) -> None:
    """The server answers at once; /readyz and the audio routes wait for the engine."""
    release = threading.Event()

    def slow_loader(_settings):
        release.wait(timeout=30)
        return BrokenEngine()

    app = create_app(make_settings("faster-whisper"), load_engine=slow_loader)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        loading = client.get("/readyz")
        assert loading.status_code == 503
        assert loading.json()["ready"] is False
        error = assert_envelope(
            client.post(TRANSCRIPTIONS, files=short_wav(), data={"model": "whisper-1"}),
            503,
            code="model_not_ready",
        )
        assert error["type"] == "server_error"
        # The realtime handshake says the same, before any WebSocket is accepted.
        with (
            pytest.raises(WebSocketDenialResponse) as denied,
            client.websocket_connect(f"{contract.REALTIME_PATH}?intent=transcription"),
        ):
            pass
        assert denied.value.status_code == 503 and denied.value.headers["retry-after"] == "5"
        assert denied.value.json()["error"]["code"] == "model_not_ready"
        release.set()
        deadline = time.monotonic() + 10
        while (ready := client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert ready.json()["ready"] is True and ready.json()["engine"] == "faster-whisper"


def test_readyz_reports_a_failed_load(make_settings) -> None:
    def failing_loader(_settings):
        raise RuntimeError("WHISPER_MODEL=nope is not a model folder")

    app = create_app(make_settings("faster-whisper"), load_engine=failing_loader)
    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while not app.state.load_finished.is_set():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "WHISPER_MODEL=nope" in response.json()["error"]
