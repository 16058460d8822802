"""Bad input over HTTP, on the real app and model: every mistake a client can make is a 4xx in
OpenAI's envelope, never a 5xx or a stack trace; silence gives no invented sentences."""

import struct
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.apps import make_app, started_client
from tests.support.engines import FIXTURES, LazyEngines

TRANSCRIPTIONS = "/v1/audio/transcriptions"
TRANSLATIONS = "/v1/audio/translations"


def clip(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def wav_header(declared_data_bytes: int, sample_rate: int = 16_000) -> bytes:
    """A 16-bit mono PCM WAV header whose size fields declare `declared_data_bytes` of samples."""
    riff_size = min(36 + declared_data_bytes, 0xFFFFFFFF)
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVE"
        + fmt
        + b"data"
        + struct.pack("<I", declared_data_bytes)
    )


def assert_envelope(response: Any, status: int | None = None) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if status is not None:
        assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and "Traceback" not in error["message"]
    return error


@pytest.fixture(scope="module")
def strict_api(engines: LazyEngines) -> Iterator[TestClient]:
    """faster-whisper with small limits, so that limit errors are cheap to provoke."""
    client = started_client(make_app(engines, "faster-whisper", max_prompt_chars=100, max_audio_seconds=20))
    yield client
    client.__exit__(None, None, None)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        (clip("short.mp3")[:300], "invalid_audio"),
        (clip("short.m4a")[:4000], "invalid_audio"),
        (clip("short.wav")[:44], "empty_audio"),
        (clip("not_audio.wav"), "invalid_audio"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(range(200)), "invalid_audio"),
        (bytes(range(256)) * 40, "invalid_audio"),
    ],
    ids=[
        "zero-length",
        "truncated-mp3",
        "truncated-m4a",
        "header-only-wav",
        "text-named-wav",
        "corrupt-wav",
        "noise-bytes",
    ],
)
def test_unusable_files_are_400_naming_the_file(strict_api: TestClient, data: bytes, code: str) -> None:
    response = strict_api.post(
        TRANSCRIPTIONS, files={"file": ("audio.wav", data)}, data={"model": "whisper-1"}
    )
    error = assert_envelope(response, 400)
    assert error["param"] == "file" and error["code"] == code


def test_a_file_cut_in_the_middle_is_transcribed_as_far_as_it_goes(strict_api: TestClient) -> None:
    data = clip("short.flac")
    response = strict_api.post(
        TRANSCRIPTIONS,
        files={"file": ("cut.flac", data[: len(data) // 2])},
        data={"model": "whisper-1", "response_format": "json"},
    )
    # Half a clip is still audio: either its first words, or a clear 400; never a 5xx.
    if response.status_code == 200:
        assert "lazy dog" not in response.json()["text"].lower()
    else:
        assert_envelope(response, 400)


def test_a_header_declaring_hours_of_audio_is_judged_by_what_it_contains(strict_api: TestClient) -> None:
    """A WAV header that declares 3 hours over 1 s of samples: neither an allocation of hours nor a 5xx."""
    three_hours = 3 * 3600 * 16_000 * 2
    data = wav_header(three_hours) + b"\x00\x00" * 16_000
    response = strict_api.post(
        TRANSCRIPTIONS,
        files={"file": ("long.wav", data)},
        data={"model": "whisper-1", "response_format": "verbose_json"},
    )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert response.json()["duration"] == pytest.approx(1.0, abs=0.1)
    else:
        assert_envelope(response)


def test_audio_longer_than_the_limit_is_refused_naming_the_limit(strict_api: TestClient) -> None:
    response = strict_api.post(
        TRANSCRIPTIONS, files={"file": ("long.ogg", clip("long.ogg"))}, data={"model": "whisper-1"}
    )
    error = assert_envelope(response)
    assert error["code"] == "audio_too_long" and "20 seconds" in error["message"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": "1.5"}, "temperature"),
        ({"temperature": "-0.1"}, "temperature"),
        ({"temperature": "nan"}, "temperature"),
        ({"response_format": "xml"}, "response_format"),
        (
            {"timestamp_granularities[]": "minute", "response_format": "verbose_json"},
            "timestamp_granularities[]",
        ),
        ({"language": "klingon"}, "language"),
        ({"model": "gpt-4"}, "model"),
        ({"prompt": "word " * 300_000}, "prompt"),
    ],
    ids=[
        "temperature-text",
        "temperature-high",
        "temperature-negative",
        "temperature-nan",
        "format",
        "granularity",
        "language",
        "model",
        "prompt-over-the-part-limit",
    ],
)
def test_wrong_fields_are_400_naming_the_field(
    strict_api: TestClient, fields: dict[str, str], param: str
) -> None:
    response = strict_api.post(
        TRANSCRIPTIONS,
        files={"file": ("short.wav", clip("short.wav"))},
        data={"model": "whisper-1", **fields},
    )
    error = assert_envelope(response, 400)
    assert error["param"] == param, error


def test_a_file_field_sent_as_text_is_400(strict_api: TestClient) -> None:
    response = strict_api.post(TRANSCRIPTIONS, data={"file": "not an upload", "model": "whisper-1"})
    error = assert_envelope(response, 400)
    assert error["param"] == "file"


def test_missing_file_and_non_multipart_bodies_are_400(strict_api: TestClient) -> None:
    assert (
        assert_envelope(strict_api.post(TRANSCRIPTIONS, data={"model": "whisper-1"}), 400)["param"] == "file"
    )
    assert_envelope(strict_api.post(TRANSCRIPTIONS, json={"file": "x"}))
    assert_envelope(
        strict_api.post(
            TRANSCRIPTIONS, content=b"--nope\r\n", headers={"Content-Type": "multipart/form-data"}
        )
    )
    assert_envelope(
        strict_api.post(
            TRANSCRIPTIONS, content=b"garbage", headers={"Content-Type": "multipart/form-data; boundary=xyz"}
        )
    )


def test_translations_refuse_the_same_mistakes(strict_api: TestClient) -> None:
    assert_envelope(
        strict_api.post(TRANSLATIONS, files={"file": ("a.wav", b"")}, data={"model": "whisper-1"}), 400
    )
    error = assert_envelope(
        strict_api.post(
            TRANSLATIONS,
            files={"file": ("a.wav", clip("short.wav"))},
            data={"model": "whisper-1", "temperature": "2"},
        ),
        400,
    )
    assert error["param"] == "temperature"


@pytest.mark.parametrize("engine_name", ["faster-whisper", "openai-whisper"])
def test_pure_silence_gives_no_invented_sentences(engines: LazyEngines, engine_name: str) -> None:
    client = started_client(make_app(engines, engine_name))
    try:
        response = client.post(
            TRANSCRIPTIONS,
            files={"file": ("silence.flac", clip("silence.flac"))},
            data={"model": "whisper-1", "response_format": "json"},
        )
    finally:
        client.__exit__(None, None, None)
    assert response.status_code == 200, response.text
    # At most a stray token, never a sentence (tiny.en's classic: "Thank you." on silence).
    assert len(response.json()["text"].split()) <= 1, response.json()
