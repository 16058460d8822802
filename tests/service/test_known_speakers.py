"""known_speaker_names[] / known_speaker_references[]: each malformed input a 400 naming its field."""

import base64
import io
import wave
from pathlib import Path

import numpy as np
import pytest

from whisper_api.errors import ApiError
from whisper_api.known_speakers import NAMES_PARAM, REFERENCES_PARAM, known_speakers

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def wav_data_url(seconds: float, media_type: str = "audio/wav") -> str:
    """A data URL of a real tone of `seconds` (a WAV, the simplest file every decoder knows)."""
    samples = (3000 * np.sin(2 * np.pi * 220 * np.arange(round(16_000 * seconds)) / 16_000)).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(16_000)
        file.writeframes(samples.tobytes())
    return f"data:{media_type};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def _refused(names: list[str], references: list[str]) -> ApiError:
    with pytest.raises(ApiError) as raised:
        known_speakers(names, references)
    assert raised.value.status_code == 400
    return raised.value


def test_valid_references_decode_in_order() -> None:
    speakers = known_speakers(["agent", " customer "], [wav_data_url(2.0), wav_data_url(10.0)])
    assert [speaker.name for speaker in speakers] == ["agent", "customer"]
    assert [len(speaker.audio) for speaker in speakers] == [32_000, 160_000]


def test_none_sent_is_none_known() -> None:
    assert known_speakers([], []) == []


def test_a_real_recording_in_another_format_is_accepted() -> None:
    ogg = (FIXTURES / "short.ogg").read_bytes()
    (speaker,) = known_speakers(["reader"], [f"data:audio/ogg;base64,{base64.b64encode(ogg).decode()}"])
    assert 2 * 16_000 <= len(speaker.audio) <= 10 * 16_000


@pytest.mark.parametrize(
    ("names", "references", "param", "fragment"),
    [
        (["a"], ["https://example.com/a.wav"], REFERENCES_PARAM, "not a base64 data URL"),
        (["a"], ["data:audio/wav,plain"], REFERENCES_PARAM, "not a base64 data URL"),
        (["a"], ["data:audio/wav;base64,@@@"], REFERENCES_PARAM, "not valid base64"),
        (["a"], ["data:text/plain;base64,aGVsbG8="], REFERENCES_PARAM, "must be audio"),
        (
            ["a"],
            ["data:audio/wav;base64," + base64.b64encode(b"not audio at all" * 64).decode()],
            REFERENCES_PARAM,
            "not usable audio",
        ),
        (["a"], [wav_data_url(1.5)], REFERENCES_PARAM, "1.5 s long"),
        (["a"], [wav_data_url(10.8)], REFERENCES_PARAM, "10.8 s long"),
        (["a"], [wav_data_url(12.0)], REFERENCES_PARAM, "longer than 10 seconds"),
        (list("abcde"), [wav_data_url(2.0)] * 5, NAMES_PARAM, "at most 4"),
        (["a", "b"], [wav_data_url(2.0)], REFERENCES_PARAM, "one reference per name"),
        (["a"], [wav_data_url(2.0)] * 2, NAMES_PARAM, "one reference per name"),
        ([" "], [wav_data_url(2.0)], NAMES_PARAM, "empty"),
        (["a", "a"], [wav_data_url(2.0)] * 2, NAMES_PARAM, "repeats a name"),
        (["x" * 65], [wav_data_url(2.0)], NAMES_PARAM, "longer than 64"),
    ],
)
def test_each_malformed_input_is_a_400_naming_its_field(
    names: list[str], references: list[str], param: str, fragment: str
) -> None:
    error = _refused(names, references)
    assert error.body.param == param
    assert fragment in error.body.message, error.body.message
