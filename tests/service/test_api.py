"""Every endpoint and response format, on both engines, through the real app and the real model."""

import re
from pathlib import Path

import jiwer
import pytest
from fastapi.testclient import TestClient

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TRANSCRIPTIONS = "/v1/audio/transcriptions"
TRANSLATIONS = "/v1/audio/translations"
SRT_TIME = r"\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d"
VTT_TIME = r"^\d\d:\d\d:\d\d\.\d\d\d --> \d\d:\d\d:\d\d\.\d\d\d$"


def upload(name: str, filename: str | None = None) -> dict[str, tuple[str, bytes]]:
    return {"file": (filename or name, (FIXTURES / name).read_bytes())}


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation, to compare transcripts."""
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(expected: str, actual: str) -> float:
    return jiwer.wer(" ".join(normalise(expected)), " ".join(normalise(actual)))


def test_healthz(api: TestClient) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_engine_model_and_hardware(api: TestClient) -> None:
    response = api.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    engine = api.app.state.engine
    assert body["ready"] is True
    assert (body["engine"], body["model"], body["device"]) == (engine.name, "tiny.en", "cpu")
    assert body["compute_type"] == engine.compute_type
    assert isinstance(body["cuda_available"], bool)
    assert {"service", "python", engine.name} <= body["versions"].keys()


def test_models_lists_the_served_model_and_its_openai_aliases(api: TestClient) -> None:
    body = api.get("/v1/models").json()
    assert body["object"] == "list"
    ids = [card["id"] for card in body["data"]]
    assert ids == ["tiny.en", "whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"]
    assert all(card["object"] == "model" and isinstance(card["created"], int) for card in body["data"])


def test_json_is_the_default_format(api: TestClient, expected_text: dict[str, str]) -> None:
    response = api.post(TRANSCRIPTIONS, files=upload("short.wav"), data={"model": "whisper-1"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["usage"] == {"type": "duration", "seconds": 6}  # 5.17 s, rounded up as OpenAI bills
    assert set(body) == {"text", "languages", "usage"}  # as OpenAI's Transcription
    assert body["languages"] == [{"code": "en"}]
    assert word_error_rate(expected_text["short"], body["text"]) <= 0.2


def test_text_format(api: TestClient, expected_text: dict[str, str]) -> None:
    response = api.post(
        TRANSCRIPTIONS, files=upload("short.mp3"), data={"model": "whisper-1", "response_format": "text"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert word_error_rate(expected_text["short"], response.text) <= 0.2


def test_srt_format(api: TestClient) -> None:
    response = api.post(
        TRANSCRIPTIONS, files=upload("short.ogg"), data={"model": "whisper-1", "response_format": "srt"}
    )
    assert response.status_code == 200
    lines = response.text.strip().splitlines()
    assert lines[0] == "1"
    assert re.fullmatch(SRT_TIME, lines[1])
    assert "fox" in response.text.lower()


def test_vtt_format(api: TestClient) -> None:
    response = api.post(
        TRANSCRIPTIONS, files=upload("short.webm"), data={"model": "whisper-1", "response_format": "vtt"}
    )
    assert response.status_code == 200
    assert response.text.startswith("WEBVTT")
    assert re.search(VTT_TIME, response.text, re.MULTILINE)
    assert "fox" in response.text.lower()


def test_verbose_json_has_segments_with_every_field(api: TestClient, expected_text: dict[str, str]) -> None:
    response = api.post(
        TRANSCRIPTIONS,
        files=upload("short.flac"),
        data={"model": "whisper-1", "response_format": "verbose_json", "language": "en"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["task"] == "transcribe"
    assert body["language"] == "english"
    assert body["duration"] == pytest.approx(5.17, abs=0.05)
    assert word_error_rate(expected_text["short"], body["text"]) <= 0.2
    assert "words" not in body
    segment_fields = {"id", "start", "end", "text", "tokens", "temperature", "avg_logprob"}
    segment_fields |= {"compression_ratio", "no_speech_prob"}
    for segment in body["segments"]:
        assert segment_fields <= segment.keys()
        assert 0 <= segment["start"] < segment["end"] <= body["duration"] + 0.5
        assert segment["tokens"] and all(isinstance(token, int) for token in segment["tokens"])


def test_verbose_json_with_word_timestamps(api: TestClient) -> None:
    response = api.post(
        TRANSCRIPTIONS,
        files=upload("short.wav"),
        data={
            "model": "whisper-1",
            "response_format": "verbose_json",
            "timestamp_granularities[]": ["word", "segment"],
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["segments"]
    words = [word["word"].strip().lower().strip(".,") for word in body["words"]]
    assert "fox" in words and "lazy" in words
    starts = [word["start"] for word in body["words"]]
    assert starts == sorted(starts)
    assert all(word["start"] <= word["end"] for word in body["words"])


def test_word_granularity_alone_leaves_segments_out(api: TestClient) -> None:
    response = api.post(
        TRANSCRIPTIONS,
        files=upload("short.wav"),
        data={"model": "whisper-1", "response_format": "verbose_json", "timestamp_granularities[]": "word"},
    )
    assert response.status_code == 200
    assert "words" in response.json() and "segments" not in response.json()


@pytest.mark.slow
def test_a_clip_longer_than_30_seconds_is_transcribed_whole(
    api: TestClient, expected_text: dict[str, str]
) -> None:
    response = api.post(
        TRANSCRIPTIONS,
        files=upload("long.ogg"),
        data={"model": "whisper-1", "response_format": "verbose_json"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["duration"] > 35
    assert body["segments"][-1]["end"] > 30
    assert word_error_rate(expected_text["long"], body["text"]) <= 0.15
    assert normalise(body["text"])[-4:] == normalise(expected_text["long"])[-4:]


def test_stereo_44k_upload(api: TestClient, expected_text: dict[str, str]) -> None:
    response = api.post(TRANSCRIPTIONS, files=upload("stereo_44k.mp3"), data={"model": "whisper-1"})
    assert response.status_code == 200
    assert word_error_rate(expected_text["stereo_44k"], response.json()["text"]) <= 0.2


@pytest.mark.parametrize("response_format", ["json", "text", "srt", "vtt", "verbose_json"])
def test_translations_in_every_format(api: TestClient, response_format: str) -> None:
    response = api.post(
        TRANSLATIONS, files=upload("short.wav"), data={"response_format": response_format, "model": "tiny.en"}
    )
    assert response.status_code == 200, response.text
    assert "fox" in response.text.lower()
    if response_format == "verbose_json":
        assert response.json()["task"] == "translate"


def test_prompt_and_temperature_are_accepted(api: TestClient) -> None:
    response = api.post(
        TRANSCRIPTIONS,
        files=upload("short.wav"),
        data={"model": "whisper-1", "prompt": "A sentence about a fox.", "temperature": "0.2"},
    )
    assert response.status_code == 200
    assert "fox" in response.json()["text"].lower()


# Container handling does not depend on the engine: these run on faster-whisper only.


@pytest.mark.parametrize(
    ("name", "filename"),
    [
        ("short.flac", None),
        ("short.mp3", None),
        ("short.mp3", "short.mpeg"),
        ("short.mp3", "short.mpga"),
        ("short.mpeg", None),  # an MPEG program stream (video and mp2 audio)
        ("short.mp4", None),
        ("short.m4a", None),
        ("short.ogg", None),
        ("short.wav", None),
        ("short.webm", None),
        ("short.ogg", "recording.wav"),  # a misleading name: the content decides
        ("short.mp3", "no-extension"),
    ],
)
def test_every_accepted_container(fw_api: TestClient, name: str, filename: str | None) -> None:
    response = fw_api.post(
        TRANSCRIPTIONS, files=upload(name, filename), data={"model": "whisper-1", "response_format": "text"}
    )
    assert response.status_code == 200, response.text
    assert "lazy dog" in response.text.lower()


def test_silence_gives_no_invented_words(fw_api: TestClient) -> None:
    """faster-whisper's VAD (on by default) keeps tiny.en from hallucinating on silence."""
    response = fw_api.post(
        TRANSCRIPTIONS,
        files=upload("silence.flac"),
        data={"model": "whisper-1", "response_format": "verbose_json"},
    )
    assert response.status_code == 200
    assert response.json()["text"] == ""
    assert response.json()["duration"] == pytest.approx(3.0)


def test_the_request_timer_has_the_route_steps(fw_api: TestClient) -> None:
    response = fw_api.post(TRANSCRIPTIONS, files=upload("short.wav"), data={"model": "whisper-1"})
    assert response.status_code == 200
    steps = {entry.split(";")[0].strip() for entry in response.headers["server-timing"].split(",")}
    assert {"read", "decode", "inference", "format"} <= steps


def test_openapi_documents_fields_formats_and_errors(fw_api: TestClient) -> None:
    assert fw_api.get("/docs").status_code == 200
    schema = fw_api.get("/openapi.json").json()
    operation = schema["paths"][TRANSCRIPTIONS]["post"]
    form_ref = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    form = schema["components"]["schemas"][form_ref.rsplit("/", 1)[1]]
    fields = {"file", "model", "language", "prompt", "response_format", "temperature"}
    assert fields | {"timestamp_granularities[]"} <= form["properties"].keys()
    formats = ["json", "text", "srt", "vtt", "verbose_json", "diarized_json"]
    assert form["properties"]["response_format"]["enum"] == formats
    assert {"200", "400", "413", "500"} <= operation["responses"].keys()
    assert "422" not in operation["responses"]
    assert {"TranscriptionJson", "TranscriptionVerbose", "TranscriptionDiarized", "ErrorResponse"} <= schema[
        "components"
    ]["schemas"].keys()
    ok = operation["responses"]["200"]["content"]
    assert {"application/json", "text/plain"} <= ok.keys()


def test_cors_is_off_by_default(fw_api: TestClient) -> None:
    preflight = fw_api.options(
        TRANSCRIPTIONS, headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert (
        "access-control-allow-origin"
        not in fw_api.get("/v1/models", headers={"Origin": "https://app.example"}).headers
    )


def test_list_settings_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    from whisper_api.settings import Settings

    monkeypatch.setenv("WHISPER_MODEL_ALIASES", "whisper-1, my-asr ,")
    monkeypatch.setenv("WHISPER_CORS_ORIGINS", "https://a.example,https://b.example")
    settings = Settings()
    assert settings.model_aliases == ["whisper-1", "my-asr"]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
