"""The real server (`python -m whisper_api`, uvicorn on a free loopback port) called by the official
`openai` SDK, as a user would: every response format, translations, and errors as SDK exceptions."""

import numpy as np
import openai
import pytest

from tests.support.audio import pcm_wav
from tests.support.engines import FIXTURES, SAMPLE_RATE, load_clip
from tests.support.server import Server
from tests.support.servers import UPLOAD_LIMIT_MB


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
    assert {"whisper-1", "tiny.en", "gpt-4o-transcribe"} <= {model.id for model in client.models.list()}


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


def _fox_then_a_loop() -> bytes:
    """short.ogg, a second's pause, then repetition.ogg: a voice saying what a decoder that lost
    its way writes ("on the rest of the rest of the rest..."), which must not reach a transcript."""
    pause = np.zeros(SAMPLE_RATE, dtype=np.float32)
    audio = np.concatenate([load_clip("short.ogg"), pause, load_clip("repetition.ogg")])
    return pcm_wav(audio)


@pytest.mark.parametrize("path", ["json", "verbose_json with words", "stream"])
def test_a_repetition_loop_never_reaches_the_transcript(client: openai.OpenAI, path: str) -> None:
    upload = ("loop.wav", _fox_then_a_loop())
    if path == "stream":
        events = list(client.audio.transcriptions.create(model="whisper-1", file=upload, stream=True))
        text = events[-1].text
        assert "the rest" not in "".join(event.delta for event in events[:-1]).lower()
    elif path == "json":
        text = client.audio.transcriptions.create(model="whisper-1", file=upload).text
    else:
        verbose = client.audio.transcriptions.create(
            model="whisper-1", file=upload, response_format="verbose_json", timestamp_granularities=["word"]
        )
        text = verbose.text
        assert not any(word.word.strip(" ,.").lower() == "rest" for word in verbose.words or [])
    assert "fox" in text.lower()
    assert "the rest" not in text.lower(), text
