"""Speaker diarization end to end: the real server with the real CAM++ graph, through the official SDK."""

import base64
import io
import json
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from openai.types.audio import TranscriptionDiarized

from tests.support.audio import call_recording
from tests.support.diarization import SAMPLE, diarization_model, reference_turns
from tests.support.engines import FIXTURES
from tests.support.server import Server, start_server, stop
from tests.support.servers import sdk
from whisper_api.audio import decode_audio

DIARIZE = "gpt-4o-transcribe-diarize"


@pytest.fixture(scope="module")
def diarizing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    model = diarization_model()
    server = start_server(tmp_path_factory.mktemp("diarizing"), WHISPER_DIARIZATION_MODEL=str(model))
    yield server
    stop(server)


@pytest.fixture(scope="module")
def client(diarizing_server: Server) -> openai.OpenAI:
    return sdk(diarizing_server)


def _reference_speaker(start: float, end: float) -> str | None:
    """The reference speaker who talks most of [start, end], if one talks most of it alone."""
    overlap: dict[str, float] = {}
    for turn_start, turn_end, speaker in reference_turns():
        overlap[speaker] = overlap.get(speaker, 0.0) + max(0.0, min(end, turn_end) - max(start, turn_start))
    best = max(overlap, key=lambda name: overlap[name])
    return best if overlap[best] >= 0.6 * (end - start) else None


def _wav_data_url(samples: np.ndarray) -> str:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(16_000)
        file.writeframes(samples.astype(np.int16).tobytes())
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode()


def _sample_clip(start_s: float, end_s: float) -> str:
    with SAMPLE.open("rb") as file:
        audio = decode_audio(file, 60)
    return _wav_data_url(audio[round(start_s * 16_000) : round(end_s * 16_000)])


def _diarize(client: openai.OpenAI, path: Path, **extra: object) -> TranscriptionDiarized:
    with path.open("rb") as file:
        return client.audio.transcriptions.create(
            model=DIARIZE,
            file=file,
            response_format="diarized_json",
            **extra,  # type: ignore[call-overload]
        )


def test_two_speakers_are_found_with_their_turns(client: openai.OpenAI) -> None:
    result = _diarize(client, SAMPLE)
    assert isinstance(result, TranscriptionDiarized)
    assert result.task == "transcribe" and result.duration == pytest.approx(30.0, abs=0.05)
    assert {segment.speaker for segment in result.segments} == {"A", "B"}
    assert result.segments[0].speaker == "A"
    assert [segment.id for segment in result.segments] == [f"seg_{i}" for i in range(len(result.segments))]
    assert all(segment.type == "transcript.text.segment" and segment.text for segment in result.segments)
    assert result.text.startswith("Hello")
    # Each of our speakers is one reference speaker: the segments that one reference speaker
    # clearly holds carry one label, and the two labels differ.
    labels: dict[str, set[str]] = {}
    judged = 0.0
    for segment in result.segments:
        reference = _reference_speaker(segment.start, segment.end)
        if reference is not None and segment.end - segment.start >= 1.0:
            labels.setdefault(reference, set()).add(segment.speaker)
            judged += segment.end - segment.start
    assert labels.keys() == {"speaker90", "speaker91"}
    assert labels["speaker90"] | labels["speaker91"] == {"A", "B"}
    assert all(len(found) == 1 for found in labels.values()), labels
    assert judged >= 15.0  # most of the 23 s of speech was judged
    # Consecutive segments of one speaker come from one Whisper segment split at a change only.
    assert result.usage is not None and result.usage.type == "duration"


def test_a_known_speaker_names_that_speakers_segments(client: openai.OpenAI) -> None:
    sheila = _sample_clip(21.9, 27.8)  # speaker91 alone (the reference turns): "Well, there isn't ..."
    result = _diarize(client, SAMPLE, known_speaker_names=["Sheila"], known_speaker_references=[sheila])
    speakers = {segment.speaker for segment in result.segments}
    assert speakers == {"A", "Sheila"}
    for segment in result.segments:
        reference = _reference_speaker(segment.start, segment.end)
        if reference is not None and segment.end - segment.start >= 1.0:
            assert (segment.speaker == "Sheila") == (reference == "speaker91"), segment


def test_a_call_recorded_one_party_per_channel_has_both_parties(client: openai.OpenAI) -> None:
    """The right channel's reader speaks 4.0-10.6 s, all of it over the left's reader: mixed down
    that is one voice's stretch, and the second party was lost; each channel diarized alone, the
    words said at once go to the louder channel."""
    result = client.audio.transcriptions.create(
        model=DIARIZE,
        file=("call.wav", call_recording(delay_s=4.0)),
        response_format="diarized_json",
    )
    assert isinstance(result, TranscriptionDiarized)
    assert [segment.speaker for segment in result.segments][:1] == ["A"]
    assert {segment.speaker for segment in result.segments} == {"A", "B"}
    right = [segment for segment in result.segments if segment.speaker == "B"]
    assert all(segment.start >= 3.6 and segment.end <= 11.1 for segment in right), right
    assert "heaven" in result.segments[-1].text and result.segments[-1].speaker == "A"


def test_audio_without_speech_has_no_speakers_and_no_error(client: openai.OpenAI) -> None:
    """The gate leaves nothing to transcribe: diarized_json answers no segments, as does the stream."""
    with (FIXTURES / "silence.flac").open("rb") as file:
        result = client.audio.transcriptions.create(model=DIARIZE, file=file, response_format="diarized_json")
    assert isinstance(result, TranscriptionDiarized)
    assert (result.text, result.segments) == ("", []) and result.duration == pytest.approx(3.0)
    with (FIXTURES / "silence.flac").open("rb") as file:
        events = list(
            client.audio.transcriptions.create(
                model=DIARIZE, file=file, response_format="diarized_json", stream=True
            )
        )
    assert [(event.type, event.text) for event in events] == [("transcript.text.done", "")]


def test_server_timing_shows_the_diarization_step_after_inference(client: openai.OpenAI) -> None:
    with (FIXTURES / "short.wav").open("rb") as file:
        raw = client.audio.transcriptions.with_raw_response.create(
            model=DIARIZE, file=file, response_format="diarized_json"
        )
    steps = [part.split(";")[0].strip() for part in raw.headers["server-timing"].split(",")]
    assert steps.index("inference") < steps.index("diarization") < steps.index("format")
    assert {segment.speaker for segment in raw.parse().segments} == {"A"}  # type: ignore[union-attr]


def test_one_speaker_is_one_speaker(client: openai.OpenAI) -> None:
    result = _diarize(client, FIXTURES / "long.ogg")
    assert {segment.speaker for segment in result.segments} == {"A"}
    assert len(result.segments) >= 3 and result.duration > 40


def test_streaming_yields_a_segment_event_per_segment_then_done(client: openai.OpenAI) -> None:
    with SAMPLE.open("rb") as file:
        events = list(
            client.audio.transcriptions.create(
                model=DIARIZE, file=file, response_format="diarized_json", stream=True
            )
        )
    assert [event.type for event in events[:-1]] == ["transcript.text.segment"] * (len(events) - 1)
    assert events[-1].type == "transcript.text.done"
    segments = events[:-1]
    assert len(segments) >= 4
    assert {segment.speaker for segment in segments} == {"A", "B"}  # type: ignore[union-attr]
    assert events[-1].text.startswith("Hello")  # type: ignore[union-attr]


def test_json_and_text_keep_their_shapes_with_the_diarization_model(client: openai.OpenAI) -> None:
    with (FIXTURES / "short.wav").open("rb") as file:
        as_json = client.audio.transcriptions.create(model=DIARIZE, file=file)
    with (FIXTURES / "short.wav").open("rb") as file:
        as_text = client.audio.transcriptions.create(model=DIARIZE, file=file, response_format="text")
    fields = set(as_json.model_dump(exclude_none=True))
    assert as_json.text and fields == {"text", "languages", "usage"}  # as OpenAI's Transcription
    assert as_text.strip() == as_json.text


def test_the_diarization_model_is_listed(client: openai.OpenAI) -> None:
    assert DIARIZE in [model.id for model in client.models.list()]


def test_server_vad_fields_tune_the_turns_and_are_accepted(client: openai.OpenAI) -> None:
    result = _diarize(
        client,
        SAMPLE,
        chunking_strategy={
            "type": "server_vad",
            "threshold": 0.6,
            "silence_duration_ms": 500,
            "prefix_padding_ms": 100,
        },
    )
    assert {segment.speaker for segment in result.segments} == {"A", "B"}


def _refused(client: openai.OpenAI, **fields: object) -> openai.BadRequestError:
    with (FIXTURES / "short.wav").open("rb") as file, pytest.raises(openai.BadRequestError) as raised:
        client.audio.transcriptions.create(
            file=file, **{"model": DIARIZE, "response_format": "diarized_json", **fields}
        )  # type: ignore[call-overload]
    return raised.value


@pytest.mark.parametrize(
    ("fields", "param", "fragment"),
    [
        (
            {"known_speaker_names": ["a"], "known_speaker_references": ["https://x/a.wav"]},
            "known_speaker_references[]",
            "not a base64 data URL",
        ),
        (
            {
                "known_speaker_names": ["a"],
                "known_speaker_references": [
                    "data:audio/wav;base64," + base64.b64encode(b"no audio here" * 50).decode()
                ],
            },
            "known_speaker_references[]",
            "not usable audio",
        ),
        (
            {"known_speaker_names": ["a"], "known_speaker_references": ["short"]},
            "known_speaker_references[]",
            "not a base64 data URL",
        ),
        (
            {"known_speaker_names": list("abcde"), "known_speaker_references": ["x"] * 5},
            "known_speaker_names[]",
            "at most 4",
        ),
        (
            {"known_speaker_names": ["a", "b"], "known_speaker_references": ["x"]},
            "known_speaker_references[]",
            "one reference per name",
        ),
        ({"response_format": "verbose_json"}, "response_format", "diarized_json"),
        ({"model": "whisper-1"}, "response_format", DIARIZE),
        (
            {"chunking_strategy": {"type": "server_vad", "threshold": 2}},
            "chunking_strategy[threshold]",
            "from 0 to 1",
        ),
        (
            {"response_format": "json", "known_speaker_names": ["a"], "known_speaker_references": ["x"]},
            "known_speaker_names[]",
            "diarized_json",
        ),
    ],
)
def test_each_malformed_request_is_a_400_naming_its_field(
    client: openai.OpenAI, fields: dict[str, object], param: str, fragment: str
) -> None:
    error = _refused(client, **fields)
    body = error.body if isinstance(error.body, dict) else {}
    assert body.get("param") == param, body
    assert fragment in str(body.get("message")), body


def test_references_too_short_and_too_long_are_refused(client: openai.OpenAI) -> None:
    for seconds, fragment in ((1.0, "1.0 s long"), (11.5, "longer than 10 seconds")):
        clip = _wav_data_url(np.full(round(seconds * 16_000), 1000, dtype=np.int16))
        error = _refused(client, known_speaker_names=["a"], known_speaker_references=[clip])
        assert isinstance(error.body, dict) and fragment in error.body["message"]


def test_without_the_graph_the_diarization_model_is_unavailable(tmp_path: Path) -> None:
    server = start_server(tmp_path, WHISPER_DIARIZATION_MODEL=str(tmp_path / "missing.onnx"))
    try:
        with (FIXTURES / "short.wav").open("rb") as file:
            response = httpx.post(
                f"{server.url}/v1/audio/transcriptions",
                data={"model": DIARIZE, "response_format": "diarized_json"},
                files={"file": file},
                timeout=60,
            )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "diarization_unavailable"
        assert DIARIZE not in json.dumps(httpx.get(f"{server.url}/v1/models", timeout=10).json())
    finally:
        stop(server)


def test_translations_have_no_diarized_json(diarizing_server: Server) -> None:
    with (FIXTURES / "short.wav").open("rb") as file:
        response = httpx.post(
            f"{diarizing_server.url}/v1/audio/translations",
            data={"model": "whisper-1", "response_format": "diarized_json"},
            files={"file": file},
            timeout=60,
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "response_format"
