"""`keywords[]` through the SDK: faster-whisper's hotwords put a product name into the transcript."""

import openai
import pytest

from tests.support.engines import FIXTURES


def _transcribe(client: openai.OpenAI, **extra: object) -> str:
    with (FIXTURES / "keywords.flac").open("rb") as audio:
        return client.audio.transcriptions.create(model="whisper-1", file=audio, **extra).text  # type: ignore[call-overload]


def test_keywords_spell_the_words_they_name(client: openai.OpenAI) -> None:
    assert "ComfyUI" not in _transcribe(client)  # tiny.en hears "comfy UI" on its own
    assert _transcribe(client, keywords=["ComfyUI"]).count("ComfyUI") == 2


def test_too_many_or_too_long_keywords_are_a_400_naming_them(client: openai.OpenAI) -> None:
    for keywords in (["word"] * 101, ["x" * 101]):
        with (
            (FIXTURES / "keywords.flac").open("rb") as audio,
            pytest.raises(openai.BadRequestError) as caught,
        ):
            client.audio.transcriptions.create(model="whisper-1", file=audio, keywords=keywords)
        assert (caught.value.param, caught.value.code) == ("keywords[]", "invalid_value")
